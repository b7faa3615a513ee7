"""`tokenmill train data|sft|rm|rl` as a user runs them (subprocesses), on a tiny pretrained model:
exit codes, metrics.jsonl with the validation figures on the first and last lines, lineage,
SFT's held-out loss falling, and bad input giving a clear error and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from helpers import need

torch = need("torch")

from test_train import make_tokens  # noqa: E402
from tokenmill.train import checkpoint, pretrain  # noqa: E402
from tokenmill.train.cli import add_train_parser, run_train  # noqa: E402

TOKENMILL = os.path.join(os.path.dirname(sys.executable), "tokenmill")


def tm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOKENMILL, "train", *args], capture_output=True, text=True, timeout=300)


def metrics(d) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """base (pretrained 40 steps on the toy language) → data → sft → rm and rl, through the CLI."""
    root = tmp_path_factory.mktemp("chain")
    tokens = make_tokens(root)
    base, data = str(root / "base"), str(root / "data")
    pretrain.train(tokens, base, device="cpu", steps=40, eval_every=40, log_fn=lambda s: None)
    runs = {"data": tm("data", "--task", "arithmetic", "--out", data)}
    runs["sft"] = tm("sft", "--ckpt", base, "--data", f"{data}/sft.jsonl", "--out", str(root / "sft"),
                     "--steps", "30", "--eval-every", "15", "--lr", "3e-3", "--device", "cpu")
    runs["rm"] = tm("rm", "--ckpt", str(root / "sft"), "--data", f"{data}/prefs.jsonl", "--out", str(root / "rm"),
                    "--steps", "10", "--eval-every", "5", "--device", "cpu")
    runs["rl"] = tm("rl", "--ckpt", str(root / "sft"), "--task", "arithmetic", "--out", str(root / "rl"),
                    "--steps", "4", "--eval-every", "2", "--group-size", "4", "--prompts-per-step", "2",
                    "--kl-coef", "0.05", "--ppo-epochs", "2", "--max-heldout", "20", "--device", "cpu")
    return root, runs


def test_every_stage_exits_0_and_logs_its_validation_figures_first_and_last(chain):
    root, runs = chain
    for name, r in runs.items():
        assert r.returncode == 0, (name, r.stdout[-2000:], r.stderr[-2000:])
    for stage, key, steps in (("sft", "val_loss", [0, 15, 30]), ("rm", "val_accuracy", [0, 5, 10]),
                              ("rl", "val_accuracy", [0, 2, 4])):
        m = metrics(root / stage)
        assert [r["step"] for r in m if r[key] is not None] == steps, (stage, m)
        assert m[0][key] is not None and m[-1][key] is not None
    rl = metrics(root / "rl")
    assert all(0 <= r["mean_reward"] <= 1 for r in rl[1:]) and rl[0]["mean_reward"] is None
    assert all(0 <= r["val_accuracy"] <= 1 for r in metrics(root / "rm") if r["val_accuracy"] is not None)


def test_sft_held_out_loss_falls_and_the_model_answers_in_the_chat_format(chain):
    root, runs = chain
    m = metrics(root / "sft")
    assert m[-1]["val_loss"] < 0.5 * m[0]["val_loss"], m
    assert "→" in runs["sft"].stdout  # held-out prompts and the replies, printed at the end
    r = tm("sample", "--ckpt", str(root / "sft"), "--chat", "--prompt", "What is 02 + 03?", "--device", "cpu")
    assert r.returncode == 0 and r.stdout.strip().isdigit(), r.stdout  # a number, then <|end|>: it stopped


def test_checkpoints_record_their_lineage(chain):
    root, _ = chain
    base = str(root / "base")
    assert [s for s, _ in checkpoint.lineage(str(root / "rl"))] == ["rl", "sft", "pretrain"]
    assert checkpoint.lineage(str(root / "rm"))[1:] == [("sft", str(root / "sft")), ("pretrain", base)]
    sft_ckpt = torch.load(root / "sft/ckpt.pt", weights_only=False)
    base_ckpt = torch.load(root / "base/ckpt.pt", weights_only=False)
    assert sft_ckpt["model_config"]["vocab_size"] == base_ckpt["model_config"]["vocab_size"] + 3  # the chat tokens
    tok = json.load(open(root / "sft/tokenizer.json"))
    assert {"<|user|>", "<|assistant|>", "<|end|>"} <= {t["content"] for t in tok["added_tokens"]}


def test_the_reward_model_learns_a_weight_on_the_answer_likelihood_unless_head_only(chain, tmp_path):
    """The weight starts at 0 (an untrained model scores every answer 0: val_accuracy 0.5), is logged
    each line and kept in the checkpoint, where load_reward_model finds it; --head-only keeps it at 0."""
    from tokenmill.train.rm import load_reward_model

    root, _ = chain
    m = metrics(root / "rm")
    assert m[0]["lik_weight"] == 0 and m[0]["val_accuracy"] == 0.5 and m[-1]["lik_weight"] > 0, m
    rm, ckpt = load_reward_model(str(root / "rm"), "cpu")
    assert rm.lik_weight.item() == pytest.approx(ckpt["lik_weight"]) and ckpt["lik_weight"] == pytest.approx(m[-1]["lik_weight"], abs=1e-4)
    r = tm("rm", "--ckpt", str(root / "sft"), "--data", str(root / "data" / "prefs.jsonl"), "--out", str(tmp_path / "h"),
           "--steps", "4", "--eval-every", "4", "--device", "cpu", "--head-only")
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(x["lik_weight"] == 0 for x in metrics(tmp_path / "h")) and load_reward_model(str(tmp_path / "h"), "cpu")[0].lik_weight.item() == 0


def test_rl_with_the_reward_model_runs(chain, tmp_path):
    root, _ = chain
    r = tm("rl", "--ckpt", str(root / "sft"), "--reward-model", str(root / "rm"), "--out", str(tmp_path / "rlhf"),
           "--steps", "2", "--group-size", "3", "--prompts-per-step", "2", "--max-heldout", "10",
           "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "reward model" in r.stdout and len(metrics(tmp_path / "rlhf")) == 2
    r = tm("rl", "--ckpt", str(root / "sft"), "--reward-model", str(root / "sft"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not a reward model" in r.stderr


def test_bad_input_exits_2_with_a_message_not_a_traceback(chain, tmp_path, capsys):
    root, _ = chain
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (tmp_path / "prefs.jsonl").write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    r = tm("sft", "--ckpt", str(root / "base"), "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    # the rest in-process (the same run_train the command calls; no torch import per case)
    parser = argparse.ArgumentParser(prog="tokenmill")
    add_train_parser(parser.add_subparsers(dest="command"))
    cases = [
        (("sft", "--ckpt", str(root / "base"), "--data", str(tmp_path / "empty.jsonl")), "holds no conversations"),
        (("sft", "--ckpt", str(root / "base"), "--data", str(tmp_path / "bad.jsonl")), "bad.jsonl:1: no assistant"),
        (("rm", "--ckpt", str(root / "sft"), "--data", str(tmp_path / "bad.jsonl")), "bad.jsonl:1: expected"),
        (("rm", "--ckpt", str(tmp_path / "nockpt"), "--data", str(tmp_path / "prefs.jsonl")), "no checkpoint"),
        (("rm", "--ckpt", str(root / "sft"), "--data", str(tmp_path / "prefs.jsonl")), "need at least 2"),
        (("rl", "--ckpt", str(root / "sft"), "--task", "chess"), "unknown task"),
        (("rl", "--ckpt", str(root / "base")), "no chat tokens"),
        (("rl", "--ckpt", str(root / "sft"), "--temperature", "0"), "temperature: above 0"),
        (("demo", "--tokens", str(tmp_path / "none")), "no token shards"),
    ]
    for args, message in cases:
        args = parser.parse_args(["train", *args, "--out", str(tmp_path / "out"), "--device", "cpu"])
        assert run_train(args) == 2, args
        assert message in capsys.readouterr().err, args


def test_the_demo_compares_sft_and_rl_on_the_same_held_out_prompts(chain):
    """The paired comparison agrees with rl's own log: its first held-out accuracy is the SFT model's
    on the same prompts, its last the RL model's; the prompts only one gets right make the difference."""
    from tokenmill.train import demo, tasks

    root, _ = chain
    c = demo.compare_heldout(str(root / "sft"), str(root / "rl"), tasks.get_task("arithmetic"), 20, 16)
    m = [r for r in metrics(root / "rl") if r["val_accuracy"] is not None]
    assert c["n"] == 20 and c["sft"] == round(m[0]["val_accuracy"] * 20) and c["rl"] == round(m[-1]["val_accuracy"] * 20)
    assert c["rl"] - c["sft"] == c["rl_only"] - c["sft_only"]
    assert "the same 20 prompts" in demo.format_comparison(c)
