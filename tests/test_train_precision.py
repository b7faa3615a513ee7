"""The GPU code paths, run on the CPU: bf16 autocast (`--precision bf16`) through every training
stage, and `--compile` (torch.compile) in pretraining, as the CLI runs them. The figures are not
those of fp32, but every stage must run, log finite validation figures and save a checkpoint that
the next stage and the sampler load. Cost: ~1 min, most of it torch.compile's first step."""

from __future__ import annotations

import math
import os

import pytest

from helpers import need

torch = need("torch")

from test_train import make_tokens  # noqa: E402
from test_train_stages import metrics, tm  # noqa: E402
from tokenmill.train import checkpoint  # noqa: E402
from tokenmill.train.pretrain import autocast_for  # noqa: E402


def finite(records: list[dict], key: str) -> list[float]:
    vals = [r[key] for r in records if r.get(key) is not None]
    assert vals and all(math.isfinite(v) for v in vals), (key, records)
    return vals


def test_autocast_for_names_the_precision_and_refuses_a_bad_one():
    ctx, bf16 = autocast_for("cpu", "bf16")
    with ctx:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert autocast_for("cpu", "auto")[1] is False and autocast_for("cpu", "fp32")[1] is False and bf16
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        autocast_for("cpu", "fp16")


def test_bf16_autocast_and_torch_compile_run_every_stage_on_the_cpu(tmp_path):
    tokens = make_tokens(tmp_path, n_docs=120)
    base, data = str(tmp_path / "base"), str(tmp_path / "data")
    r = tm("pretrain", "--tokens", tokens, "--out", base, "--steps", "4", "--eval-every", "2", "--batch-size", "4",
           "--device", "cpu", "--precision", "bf16", "--compile")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "(bf16 autocast) (torch.compile)" in r.stdout
    losses = finite(metrics(base), "val_loss")
    assert len(losses) == 3  # steps 0, 2 and 4
    ckpt = torch.load(os.path.join(base, "ckpt.pt"), weights_only=False)
    assert ckpt["train_config"]["precision"] == "bf16" and ckpt["train_config"]["compile"] is True
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())  # fp32 master weights
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])  # the module's own names, not the compile wrapper's

    assert tm("data", "--task", "arithmetic", "--out", data).returncode == 0
    bf16 = ("--device", "cpu", "--precision", "bf16")
    runs = {
        "sft": tm("sft", "--ckpt", base, "--data", f"{data}/sft.jsonl", "--out", str(tmp_path / "sft"),
                  "--steps", "4", "--eval-every", "2", *bf16),
        "rm": tm("rm", "--ckpt", str(tmp_path / "sft"), "--data", f"{data}/prefs.jsonl", "--out", str(tmp_path / "rm"),
                 "--steps", "3", "--eval-every", "3", *bf16),
    }
    runs["rl"] = tm("rl", "--ckpt", str(tmp_path / "sft"), "--reward-model", str(tmp_path / "rm"), "--out",
                    str(tmp_path / "rl"), "--steps", "2", "--eval-every", "2", "--group-size", "3",
                    "--prompts-per-step", "2", "--ppo-epochs", "2", "--kl-coef", "0.05", "--max-heldout", "6", *bf16)
    for name, r in runs.items():
        assert r.returncode == 0, (name, r.stdout[-2000:], r.stderr[-3000:])
    finite(metrics(tmp_path / "sft"), "val_loss")
    accs = finite(metrics(tmp_path / "rm"), "val_accuracy") + finite(metrics(tmp_path / "rl"), "val_accuracy")
    assert all(0 <= a <= 1 for a in accs)
    finite(metrics(tmp_path / "rl"), "mean_reward")
    assert [s for s, _ in checkpoint.lineage(str(tmp_path / "rl"))] == ["rl", "sft", "pretrain"]
    r = tm("sample", "--ckpt", str(tmp_path / "rl"), "--chat", "--prompt", "What is 02 + 03?", "--device", "cpu")
    assert r.returncode == 0 and r.stdout.strip(), (r.stdout[-2000:], r.stderr[-2000:])
