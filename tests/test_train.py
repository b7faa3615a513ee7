"""The compact GPT trainer on real shards from the tokenize stage: the loss falls, resume continues,
sampling is reproducible, the KV cache agrees with a full forward, the CLI works with defaults."""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time

import pytest

from helpers import need

torch = need("torch")

from tokenmill import storage  # noqa: E402
from tokenmill.doc import Doc  # noqa: E402
from tokenmill.stages.base import GlobalJob  # noqa: E402
from tokenmill.stages.tokenize import TokenizeConfig, TokenizeStage  # noqa: E402
from tokenmill.train import pretrain, sample  # noqa: E402
from tokenmill.train.cli import add_train_parser, run_train  # noqa: E402
from tokenmill.train.model import GPT, GPTConfig  # noqa: E402

NOUNS = "cat dog bird river house tree king queen child farmer".split()
VERBS = "sees likes finds eats builds watches".split()
ADJS = "red big small old happy quiet".split()


def make_tokens(root, n_docs: int = 400) -> str:
    """A toy language (a fixed sentence grammar), through the real tokenize stage."""
    rng = random.Random(0)

    def sentence() -> str:
        return f"The {rng.choice(ADJS)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(ADJS)} {rng.choice(NOUNS)}."

    docs = [Doc(id=f"d{i}", text=" ".join(sentence() for _ in range(rng.randint(3, 30)))) for i in range(n_docs)]
    inputs = []
    for s in range(2):
        inputs.append(str(root / f"docs/part-{s:05d}.parquet"))
        storage.write_docs(inputs[-1], docs[s::2])
    run = root / "run"
    job = GlobalJob(inputs, str(run / "work/tokenize"), str(run), lambda name, fn, args: [fn(*a) for a in args])
    TokenizeStage(TokenizeConfig(vocab_size=512, shard_tokens=20_000, val_fraction=0.05)).run_global(job)
    return str(run / "tokens")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_tokens(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def trained(tokens, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ckpt"))
    lines: list[str] = []
    t0 = time.time()
    record = pretrain.train(tokens, out, device="cpu", steps=60, eval_every=30, log_fn=lines.append)
    return out, record, lines, time.time() - t0


def test_validation_loss_falls_well_below_ln_vocab(trained, tokens):
    out, record, lines, seconds = trained
    from tokenmill.tokenize import TokenShards

    vocab = TokenShards(tokens).vocab_size
    metrics = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    vals = [m for m in metrics if m["val_loss"] is not None]
    assert [m["step"] for m in vals] == [0, 30, 60], "validation at the first step, every eval_every, and the last"
    assert vals[0]["val_loss"] > 0.9 * math.log(vocab)  # an untrained model is near uniform
    assert record["val_loss"] < 0.5 * math.log(vocab), (record, math.log(vocab))
    assert record["val_bpb"] < vals[0]["val_bpb"]
    # the tokens line, the setup line, then one line per metrics record
    assert len(lines) == len(metrics) + 2 and "step     60" in lines[-1] and "tok/s" in lines[-1]
    assert lines[0].startswith("tokens: ")


def test_resume_continues_the_step_count(trained, tokens, tmp_path):
    out, _, _, _ = trained
    import shutil

    shutil.copytree(out, tmp_path / "c")
    pretrain.train(tokens, str(tmp_path / "c"), device="cpu", resume=True, steps=70, log_fn=lambda s: None)
    ckpt = torch.load(tmp_path / "c/ckpt.pt", weights_only=False)
    assert ckpt["step"] == 70
    # the optimizer state came along: AdamW counted 60 + 10 updates
    assert all(int(s["step"]) == 70 for s in ckpt["optimizer"]["state"].values())
    steps = [json.loads(line)["step"] for line in open(tmp_path / "c/metrics.jsonl")]
    assert steps[:3] == [0, 10, 20] and steps[-2:] == [60, 70] and steps == sorted(steps)


def test_resume_keeps_the_checkpoints_preset(trained, tokens, tmp_path):
    """--resume with another --preset: the checkpoint's model config and preset name are kept, and said."""
    out, _, _, _ = trained
    import shutil

    shutil.copytree(out, tmp_path / "c")
    lines: list[str] = []
    pretrain.train(tokens, str(tmp_path / "c"), preset="small", device="cpu", resume=True, steps=62,
                   log_fn=lines.append)
    ckpt = torch.load(tmp_path / "c/ckpt.pt", weights_only=False)
    assert ckpt["step"] == 62 and ckpt["preset"] == "tiny"
    assert ckpt["model_config"]["n_embd"] == pretrain.PRESETS["tiny"][0]["n_embd"]
    assert any("keeping the checkpoint's preset 'tiny'" in line for line in lines), lines[:2]
    assert any(line.startswith("tiny: ") for line in lines), lines[:3]


def test_max_seconds_stops_early_with_a_final_validation(tokens, tmp_path):
    lines: list[str] = []
    record = pretrain.train(tokens, str(tmp_path), preset="demo", device="cpu", max_seconds=0.5, log_fn=lines.append)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert 0 < ckpt["step"] == record["step"] < 600 and record["val_loss"] is not None
    assert "max_seconds=0.5 reached" in lines[-1]


def test_resume_refuses_other_tokens(trained, tmp_path):
    out, _, _, _ = trained
    other = make_tokens(tmp_path, n_docs=120)
    with pytest.raises(ValueError, match="other tokens"):
        pretrain.train(other, out, device="cpu", resume=True, steps=80)


def test_sampling_is_reproducible_and_cache_matches_full_forward(trained):
    out, _, _, _ = trained
    a = sample.generate(out, "The red", max_new_tokens=30, temperature=1.0, seed=3, device="cpu")
    b = sample.generate(out, "The red", max_new_tokens=30, temperature=1.0, seed=3, device="cpu")
    c = sample.generate(out, "The red", max_new_tokens=30, temperature=1.0, seed=4, device="cpu")
    assert a == b and a != c and a.strip()
    model, _ = sample.load_model(out, "cpu")
    prompt = [0, 5, 7]
    cached = sample.generate_ids(model, prompt, 40, temperature=0)
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(40):  # no cache: the whole sequence each time
            logits, _ = model(torch.tensor([seq]), targets=None)
            seq.append(int(logits[0, -1].argmax()))
    assert cached == seq[len(prompt):]
    assert sample.generate_ids(model, prompt, 20, temperature=1.0, top_k=1, seed=9) == cached[:20]
    assert sample.generate_ids(model, prompt, 20, temperature=1.0, top_p=1e-6, seed=9) == cached[:20]
    # past the context: the cache restarts from the last half and generation goes on
    assert len(sample.generate_ids(model, prompt, model.cfg.block_size + 20, temperature=0)) == model.cfg.block_size + 20


def test_attention_is_causal_and_head_is_tied():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16))
    assert m.lm_head.weight is m.wte.weight
    x = torch.randint(0, 50, (1, 10))
    y = x.clone()
    y[0, 7:] = (y[0, 7:] + 1) % 50
    la, _ = m(x, x)
    lb, _ = m(y, y)
    assert torch.allclose(la[0, :7], lb[0, :7], atol=1e-5) and not torch.allclose(la[0, 7:], lb[0, 7:])


def test_cli_defaults_write_run_ckpt_and_sample(tokens, capsys):
    parser = argparse.ArgumentParser(prog="tokenmill")
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "pretrain", "--tokens", tokens, "--steps", "4", "--eval-every", "2"])
    assert run_train(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("tokens: ") and printed[1].startswith("tiny:") and printed[-1].startswith("step      4")
    ckpt_dir = tokens.rsplit("/", 1)[0] + "/ckpt"  # RUN/tokens → RUN/ckpt
    assert torch.load(f"{ckpt_dir}/ckpt.pt", weights_only=False)["step"] == 4
    args = parser.parse_args(["train", "sample", "--ckpt", ckpt_dir, "--prompt", "The", "--max-new-tokens", "5"])
    assert run_train(args) == 0 and capsys.readouterr().out.startswith("The")
    args = parser.parse_args(["train", "pretrain", "--tokens", tokens + "/nope"])
    assert run_train(args) == 2 and "run `tokenmill run`" in capsys.readouterr().err


def test_importing_tokenmill_does_not_import_torch():
    code = ("import sys, tokenmill.train.cli, tokenmill.stages.tokenize, tokenmill.tokenize; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lr_schedule_warms_up_then_decays():
    tc = pretrain.TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [pretrain.lr_at(s, tc) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(0.1, abs=0.01)
