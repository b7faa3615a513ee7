"""The pieces of sft, rm and rl on their own: the chat format and its loss mask, packing, the
Bradley–Terry loss, group advantages, the policy-gradient loss, KV-cache sampling, the task data."""

from __future__ import annotations

import json
import math
import os
import re

import pytest

from helpers import need

torch = need("torch")

from tokenmill.tokenize import train_bpe  # noqa: E402
from tokenmill.train import rl, sft, tasks  # noqa: E402
from tokenmill.train.chat import (  # noqa: E402
    ASSISTANT, END, USER, ChatFormat, DataError, add_chat_tokens, read_conversations, read_preferences)
from tokenmill.train.model import GPT, GPTConfig  # noqa: E402
from tokenmill.train.rm import bradley_terry_loss  # noqa: E402
from tokenmill.train.sample import generate_batch  # noqa: E402


@pytest.fixture(scope="module")
def chat():
    tok = train_bpe(["What is 3 + 5? The answer is 8. cat dog red"] * 20, vocab_size=300)
    base = tok.get_vocab_size(with_added_tokens=True)
    tok = add_chat_tokens(add_chat_tokens(tok))  # twice: idempotent
    assert tok.get_vocab_size(with_added_tokens=True) == base + 3
    assert [tok.token_to_id(t) for t in (USER, ASSISTANT, END)] == [base, base + 1, base + 2]
    return ChatFormat(tok, bos_id=tok.token_to_id("<|bos|>"))


def test_render_masks_only_assistant_tokens_and_their_end(chat):
    msgs = [{"role": "user", "content": "What is 3 + 5?"}, {"role": "assistant", "content": "8"},
            {"role": "user", "content": "<|user|> cat"}, {"role": "assistant", "content": "dog red"}]
    ids, mask = chat.render(msgs)
    assert len(ids) == len(mask) and ids[:2] == [chat.bos, chat.user]
    # the masked tokens are exactly each assistant reply followed by <|end|>
    spans, cur = [], []
    for i, m in zip(ids, mask):
        if m:
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    spans.append(cur)
    assert spans == [chat.encode("8") + [chat.end], chat.encode("dog red") + [chat.end]]
    assert ids.count(chat.user) == 2  # the literal "<|user|>" in a message stays text
    assert chat.prompt("What is 3 + 5?") == ids[: ids.index(chat.assistant) + 1]
    assert chat.reply(chat.encode("8") + [chat.end] + chat.encode("junk")) == "8"


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_conversations(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="holds no conversations"):
        read_conversations(str(tmp_path / "empty.jsonl"))
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    (tmp_path / "bad.jsonl").write_text(good + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not JSON"):
        read_conversations(str(tmp_path / "bad.jsonl"))
    (tmp_path / "role.jsonl").write_text(json.dumps({"messages": [{"role": "system", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match="role.jsonl:1: each message needs a role"):
        read_conversations(str(tmp_path / "role.jsonl"))
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(DataError, match=r'p.jsonl:1: expected \{"prompt"'):
        read_preferences(str(tmp_path / "p.jsonl"))


def test_packing_keeps_conversations_whole_and_apart():
    """Two sequences packed in one row give the same features as each alone (own positions, no cross attention)."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    a, b = [1, 5, 6, 7, 8], [1, 9, 3, 2]
    examples = [(a, [0, 0, 1, 1, 1]), (b, [0, 0, 1, 1]), ([1] + [4] * 9, [0] * 10)]
    rows = sft.pack_in_order(examples, T=11)
    assert [len(r) for r in rows] == [2, 1]  # the third does not fit beside the first two
    x, y, mask, seg = sft.to_batch(rows, T=11, pad_id=0, device="cpu")
    assert x.shape == (2, 11) and y[0, :4].tolist() == a[1:] and mask[0, :4].tolist() == [0, 1, 1, 1]
    with torch.no_grad():
        packed = m.features(x, segments=seg)
        alone_a, alone_b = m.features(torch.tensor([a])), m.features(torch.tensor([b]))
    assert torch.allclose(packed[0, :5], alone_a[0], atol=1e-5)
    assert torch.allclose(packed[0, 5:9], alone_b[0], atol=1e-5)


def test_grow_vocab_keeps_the_old_rows_and_the_tied_head():
    m = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8))
    old = m.wte.weight.detach().clone()
    m.grow_vocab(33)
    assert m.wte.weight.shape == (33, 8) and torch.equal(m.wte.weight[:30], old)
    assert m.lm_head.weight is m.wte.weight and m.cfg.vocab_size == 33
    assert m(torch.tensor([[1, 32]]))[0].shape == (1, 1, 33)


def test_bradley_terry_loss():
    r = torch.tensor([0.3, -1.0])
    assert bradley_terry_loss(r, r).item() == pytest.approx(math.log(2))  # cannot tell them apart
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(1 + math.exp(-2)))
    assert bradley_terry_loss(torch.tensor([5.0]), torch.tensor([0.0])) < bradley_terry_loss(torch.tensor([0.0]), torch.tensor([5.0]))


def test_reward_model_likelihood_term_is_the_mean_log_prob_of_the_answer_and_its_end(chat):
    """The reward is head(h at <|end|>) + lik_weight * mean log p(answer tokens and <|end|>); checked
    against one unpadded forward per sequence, in a right-padded batch of answers of different lengths."""
    import torch.nn.functional as F

    from tokenmill.train.rm import RewardModel

    torch.manual_seed(0)
    V = chat.tok.get_vocab_size(with_added_tokens=True)
    rm = RewardModel(GPT(GPTConfig(vocab_size=V, block_size=64, n_layer=2, n_head=2, n_embd=16))).eval()
    prompts, answers = ["What is 3 + 5?", "cat dog"], ["8", "The answer is red dog cat."]
    assert rm.score_texts(chat, prompts, answers).tolist() == [0.0, 0.0]  # untrained: head 0, weight 0
    with torch.no_grad():
        rm.lik_weight.fill_(2.0)
        rm.head.bias.fill_(0.25)
    got = rm.score_texts(chat, prompts, answers)
    for k, (p, a) in enumerate(zip(prompts, answers)):
        ids, _ = chat.render([{"role": "user", "content": p}, {"role": "assistant", "content": a}])
        start = len(chat.prompt(p))
        with torch.no_grad():
            logp = F.log_softmax(rm.gpt.lm_head(rm.gpt.features(torch.tensor([ids]))).float(), -1)[0]
        want = sum(logp[t - 1, ids[t]] for t in range(start, len(ids))) / (len(ids) - start)
        assert len(ids) - start == len(chat.encode(a)) + 1  # the answer and its <|end|>
        assert got[k].item() == pytest.approx(0.25 + 2.0 * want.item(), rel=1e-4)


def test_group_advantages_are_reward_minus_group_mean():
    adv = rl.group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]]))
    assert adv.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [-0.75, -0.75, -0.75, 2.25]]


def test_policy_gradient_loss_raises_the_better_answer_only_on_answer_tokens():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])).requires_grad_(True)
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])  # prompt target, answer targets, padding
    loss, kl = rl.pg_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), mask, clip=0.2)
    loss.backward()
    assert kl == 0.0 and loss.item() == pytest.approx(-1 / 3)  # (-1 - 1 + 1) / 3 answer tokens
    assert torch.allclose(logp.grad, torch.tensor([[0, -1 / 3, -1 / 3], [0, 1 / 3, 0]]))
    # clipping: a ratio already above 1 + clip gets no more push for a positive advantage
    loss, _ = rl.pg_loss(logp.detach() + 1.0, logp.detach(), torch.tensor([1.0, 1.0]), mask, clip=0.2)
    assert loss.item() == pytest.approx(-1.2)
    # the KL term is zero at the reference and positive away from it
    _, kl = rl.pg_loss(logp.detach(), logp.detach(), torch.zeros(2), mask, 0.2, ref_logp=logp.detach() - 0.5, kl_coef=0.1)
    assert kl > 0


def test_kv_cache_sampling_gives_the_same_answers_as_full_forwards():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    prompts = [[1, 7, 9, 3]] * 6
    for temperature in (0.0, 1.0):
        a = generate_batch(m, prompts, 12, temperature, gen=torch.Generator().manual_seed(5), stop_id=2)
        b = generate_batch(m, prompts, 12, temperature, gen=torch.Generator().manual_seed(5), stop_id=2, use_cache=False)
        assert a == b
    assert all(len(x) <= 12 and (2 not in x or x[-1] == 2) for x in a)  # cut after the stop id
    assert len({tuple(x) for x in a}) > 1  # sampled: the group's answers differ
    with pytest.raises(ValueError, match="one length"):
        generate_batch(m, [[1, 2], [1, 2, 3]], 4)


def test_task_splits_are_disjoint_and_the_data_checks_out(tmp_path):
    task = tasks.get_task("arithmetic")
    splits = {s: task.problems(s) for s in ("sft", "rl", "heldout")}
    assert sum(map(len, splits.values())) == len(task.all_problems())
    prompts = {s: {p for p, _ in v} for s, v in splits.items()}
    assert not (prompts["heldout"] & prompts["sft"]) and not (prompts["heldout"] & prompts["rl"])
    assert task.check(" 12 ", "12") and not task.check("The answer is 12.", "12")
    paths = tasks.write_task_data(task, str(tmp_path))
    convs = read_conversations(paths["sft"])
    pairs = read_preferences(paths["prefs"])
    assert len(convs) == len(pairs) == len(splits["sft"])
    for p in pairs:
        a, b = map(int, p["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
        assert p["chosen"] == str(a + b) and p["rejected"] != p["chosen"]
    # 0..99, operands written with two digits (a digit's place in the prompt is fixed): enough sums
    # that addition must be learnt, and 2,000 held-out prompts to measure RL against SFT on
    assert {s: len(v) for s, v in splits.items()} == {"sft": 5000, "rl": 3000, "heldout": 2000}
    assert all(re.fullmatch(r"What is \d\d \+ \d\d\?", p) for p, _ in task.all_problems())
    assert ("What is 07 + 35?", "42") in task.all_problems() and ("What is 99 + 99?", "198") in task.all_problems()
    assert tasks.Arithmetic(9).all_problems()[:2] == [("What is 0 + 0?", "0"), ("What is 0 + 1?", "1")]
    for bad in (0, -3, 2.5, "99"):
        with pytest.raises(ValueError, match="max_operand"):
            tasks.Arithmetic(bad)
    rev = tasks.get_task("reverse")
    p, a = rev.problems("heldout")[0]
    assert a.split() == p.split(": ")[1].split()[::-1]
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get_task("chess")


def test_rl_samples_the_groups_of_prompts_of_one_length_together_and_keeps_each_answer_with_its_prompt(chat, monkeypatch):
    """Prompts of three token lengths, interleaved: one sampling batch per length, yet every group's
    answers and rewards stay with their own prompt. The sampler is replaced by one that answers
    each row with its prompt's last word, so a mix-up shows."""
    batches = []

    def echo_last_word(model, prompts, max_new_tokens, temperature, gen=None, stop_id=None):
        batches.append(len(prompts))
        return [[p[-3], stop_id] for p in prompts]  # prompt: ... last word, <|end|>, <|assistant|>

    monkeypatch.setattr(rl, "generate_batch", echo_last_word)
    problems = [("What is 3 + 5?", "?"), ("cat", "cat"), ("What is 3 + 5? red", "red"), ("red", "dog"), ("cat red", "red")]
    lengths = [len(chat.prompt(p)) for p, _ in problems]
    assert lengths[1] == lengths[3] != lengths[4] and len(set(lengths)) == 4
    cfg = rl.RLConfig(group_size=3)
    model = GPT(GPTConfig(vocab_size=400, block_size=32, n_layer=1, n_head=2, n_embd=8))  # only put in eval mode
    seqs, starts, rewards = rl.sample_and_reward(model, chat, tasks.Task(), problems, cfg, torch.Generator(), torch.no_grad())
    assert sorted(batches) == [3, 3, 3, 6]  # "cat" and "red" (one length) in one batch of 2 x 3
    assert rewards.tolist() == [[1.0] * 3, [1.0] * 3, [1.0] * 3, [0.0] * 3, [1.0] * 3]  # "red" is not "dog"
    for i, (p, _) in enumerate(problems):
        ids = chat.prompt(p)
        assert seqs[3 * i : 3 * i + 3] == [ids + [ids[-3], chat.end]] * 3 and starts[3 * i : 3 * i + 3] == [len(ids)] * 3


def test_rl_log_probs_are_those_of_the_sampling_temperature():
    """Answers sampled at temperature T are scored under softmax(logits / T), the policy that drew them."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        logits = m.lm_head(m.features(ids[:, :-1]))
        for t in (1.0, 0.5):
            want = torch.log_softmax(logits / t, dim=-1).gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            assert torch.allclose(rl.token_logprobs(m, ids, temperature=t), want, atol=1e-6)
    assert not torch.allclose(rl.token_logprobs(m, ids, 0.5), rl.token_logprobs(m, ids, 1.0))


def test_sign_test_and_standard_error():
    from tokenmill.train import demo

    assert demo.sign_test(0, 0) == 1.0 and demo.sign_test(5, 5) == 1.0
    assert demo.sign_test(10, 0) == pytest.approx(2 / 2**10)  # all ten discordant prompts one way
    assert demo.sign_test(3, 9) == demo.sign_test(9, 3) == pytest.approx(2 * sum(math.comb(12, k) for k in range(4)) / 2**12)
    assert demo.standard_error(0.5, 100) == pytest.approx(0.05) and demo.standard_error(1.0, 80) == 0.0


def test_the_demo_gives_each_stage_its_tasks_settings_and_the_seed(tmp_path, monkeypatch, capsys):
    """`tokenmill train demo --seed N`: every stage gets N, and arithmetic its own SFT/RL settings
    (more SFT steps, a smaller RL learning rate) while reverse keeps the defaults. The stages are
    replaced by ones that record their arguments and write the metrics line the table reads."""
    import argparse

    from tokenmill.train import demo, pretrain, rm
    from tokenmill.train.cli import add_train_parser, run_train

    calls = {}

    def fake(name, keys):
        def stage(*args, device, log_fn, **kw):
            calls[name] = kw
            os.makedirs(args[-1], exist_ok=True)  # the out directory is the last positional argument
            with open(os.path.join(args[-1], "metrics.jsonl"), "w") as f:
                f.write(json.dumps({"step": 0, **{k: 0.5 for k in keys}}) + "\n")
        return stage

    monkeypatch.setattr(pretrain, "train", fake("pretrain", ["val_loss"]))
    monkeypatch.setattr(sft, "finetune", fake("sft", ["val_loss"]))
    monkeypatch.setattr(rm, "train_reward_model", fake("rm", ["val_accuracy"]))
    monkeypatch.setattr(rl, "reinforce", fake("rl", ["val_accuracy", "val_mean_reward"]))
    monkeypatch.setattr(demo, "compare_heldout", lambda *a, **k: {"n": 4, "sft": 1, "rl": 3, "rl_only": 2, "sft_only": 0,
                                                                   "p_value": demo.sign_test(2, 0)})
    tokens = tmp_path / "run" / "tokens"
    tokens.mkdir(parents=True)
    (tokens / "manifest.parquet").write_bytes(b"")
    parser = argparse.ArgumentParser(prog="tokenmill")
    add_train_parser(parser.add_subparsers(dest="command"))
    seen = {}
    for task in ("arithmetic", "reverse"):
        args = parser.parse_args(["train", "demo", "--tokens", str(tokens), "--out", str(tmp_path / task),
                                  "--task", task, "--seed", "7"])
        assert run_train(args) == 0
        assert {name: kw.get("seed") for name, kw in calls.items()} == dict.fromkeys(("pretrain", "sft", "rm", "rl"), 7)
        assert calls["rl"]["task"] == task
        seen[task] = {name: dict(calls[name]) for name in ("sft", "rl")}
        assert "sign test" in capsys.readouterr().out
    own = demo.TASK_SETTINGS["arithmetic"]
    assert seen["arithmetic"]["sft"]["steps"] == own["sft"]["steps"] != seen["reverse"]["sft"]["steps"] == demo.SFT["steps"]
    assert seen["arithmetic"]["rl"]["lr"] == own["rl"]["lr"] != seen["reverse"]["rl"]["lr"] == demo.RL["lr"]
    assert seen["arithmetic"]["rl"]["temperature"] == seen["reverse"]["rl"]["temperature"] == demo.RL["temperature"]
