"""Checkpoints of the later stages (sft, rm, rl) and their metrics log: one place for lineage.

A stage directory holds `ckpt.pt` (written to .tmp, then renamed: one that exists is complete),
`tokenizer.json` (with the chat tokens from sft on) and `metrics.jsonl` (one JSON object per
log line, `step` first). `ckpt.pt` records `stage` and `parent` (the absolute path of the
checkpoint directory it started from), so `lineage(dir)` walks base → sft → rm/rl.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch

from tokenmill.tokenize import TOKENIZER, load_tokenizer
from tokenmill.train.chat import DataError
from tokenmill.train.model import GPT, GPTConfig


def load(ckpt_dir: str, device: str) -> tuple[GPT, dict, object]:
    """(model in eval mode, the checkpoint dict, its tokenizer). Raises DataError if there is none."""
    path = os.path.join(ckpt_dir, "ckpt.pt")
    if not os.path.exists(path):
        raise DataError(f"no checkpoint at {path}; give --ckpt a directory written by `tokenmill train ...`")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = GPT(GPTConfig(**ckpt["model_config"])).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt, load_tokenizer(os.path.join(ckpt_dir, TOKENIZER))


def save(out_dir: str, state: dict, tokenizer=None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save(os.path.join(out_dir, TOKENIZER))
    path = os.path.join(out_dir, "ckpt.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def lineage(ckpt_dir: str) -> list[tuple[str, str]]:
    """[(stage, dir), ...] from this checkpoint back to the base it started from."""
    out = []
    while ckpt_dir:
        ckpt = torch.load(os.path.join(ckpt_dir, "ckpt.pt"), map_location="cpu", weights_only=False)
        out.append((ckpt.get("stage", "pretrain"), os.path.abspath(ckpt_dir)))
        ckpt_dir = ckpt.get("parent")
    return out


class Metrics:
    """metrics.jsonl, started fresh: `log(record)` appends one line and prints it through log_fn."""

    def __init__(self, out_dir: str, log_fn: Callable[[str], None]):
        os.makedirs(out_dir, exist_ok=True)
        self.path, self.log_fn = os.path.join(out_dir, "metrics.jsonl"), log_fn
        open(self.path, "w").close()

    def log(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.log_fn(" | ".join(f"{k} {format(v, '.4f') if isinstance(v, float) else v}" for k, v in record.items()
                               if v is not None))
