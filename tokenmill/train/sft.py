"""Supervised fine-tuning: a pretrained checkpoint learns to answer in the chat format.

    finetune("runs/demo/ckpt", "data/sft.jsonl", "runs/demo/sft")   # → sft/{ckpt.pt, tokenizer.json, metrics.jsonl}

In: a checkpoint (pretrain's, or an earlier sft) and conversations as JSONL (see chat.py). Out:
a checkpoint whose tokenizer has the chat tokens (the embedding grown by 3 rows) and whose
`parent` is the input checkpoint. Conversations are packed whole into rows of block_size + 1
tokens (padding the rest, masked); the loss is the cross-entropy on assistant tokens only
(mask 1), and `val_loss` is the same on held-out conversations (`val_fraction`, seeded).
Measured: a forward and backward of 16 x 128 tokens on the demo-sized model (2 x 128, vocab
2,598) takes ~0.1 s on this machine's 2 CPU cores when idle; the demo's 700 steps on 4,500
arithmetic conversations took 146 s of CPU time on one thread (OMP_NUM_THREADS=1, load ~2).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenmill.train import checkpoint
from tokenmill.train.chat import (
    ChatFormat,
    add_chat_tokens,
    read_conversations,
    split,
)
from tokenmill.train.model import GPT
from tokenmill.train.pretrain import lr_at, stage_start

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    steps: int = 300
    batch_size: int = 16  # packed rows of block_size tokens per step
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 50  # and always at the first and the last step
    log_every: int = 10
    val_fraction: float = 0.1  # of the conversations, held out
    max_val: int = 512  # held-out conversations scored per eval
    seed: int = 1337
    max_seconds: float | None = None
    precision: str = "auto"  # auto (bf16 on a bf16 GPU, else fp32), bf16 (autocast, CPU too) or fp32


Example = tuple[list[int], list[int]]  # a rendered conversation: ids, loss mask


class Packer:
    """Whole conversations, shuffled each epoch, packed into rows of at most T+1 ids."""

    def __init__(self, examples: list[Example], T: int, seed: int):
        self.examples, self.T, self.rng = examples, T, random.Random(seed)
        self.order: list[int] = []
        self.pending: Example | None = None

    def _next(self) -> Example:
        if self.pending is not None:
            ex, self.pending = self.pending, None
            return ex
        if not self.order:
            self.order = list(range(len(self.examples)))
            self.rng.shuffle(self.order)
        return self.examples[self.order.pop()]

    def rows(self, n: int) -> list[list[Example]]:
        out = []
        for _ in range(n):
            row, used = [], 0
            while True:
                ex = self._next()
                if used + len(ex[0]) > self.T + 1:
                    self.pending = ex  # starts the next row
                    break
                row.append(ex)
                used += len(ex[0])
            out.append(row)
        return out


def pack_in_order(examples: list[Example], T: int) -> list[list[Example]]:
    """Every example once, in order, packed into rows of at most T+1 ids (validation)."""
    rows, row, used = [], [], 0
    for ex in examples:
        if row and used + len(ex[0]) > T + 1:
            rows.append(row)
            row, used = [], 0
        row.append(ex)
        used += len(ex[0])
    return rows + [row] if row else rows


def to_batch(rows: list[list[Example]], T: int, pad_id: int, device: str):
    """Packed rows → x, y, mask, segments (B, T) each: y is x shifted by one, mask goes with y,
    segments number the conversations of a row (padding is one more) so they do not see each other."""
    ids = torch.full((len(rows), T + 1), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T + 1), dtype=torch.float32)
    seg = torch.full((len(rows), T + 1), len(max(rows, key=len)), dtype=torch.long)
    for i, row in enumerate(rows):
        pos = 0
        for j, (r, m) in enumerate(row):
            ids[i, pos : pos + len(r)] = torch.tensor(r)
            mask[i, pos : pos + len(m)] = torch.tensor(m, dtype=torch.float32)
            seg[i, pos : pos + len(r)] = j
            pos += len(r)
    return ids[:, :-1].to(device), ids[:, 1:].to(device), mask[:, 1:].to(device), seg[:, :-1].to(device)


def masked_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over mask-1 targets, number of them). x, y, mask, seg: (B, T)."""
    logits = model.lm_head(model.features(x, segments=seg))  # (B, T, vocab)
    ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
    n = mask.sum()
    return (ce * mask.reshape(-1)).sum() / n.clamp(min=1), n


@torch.no_grad()
def evaluate(model: GPT, val_rows: list, T: int, pad_id: int, batch_size: int, device: str, autocast) -> float:
    model.eval()
    total = n = 0.0
    for i in range(0, len(val_rows), batch_size):
        x, y, m, seg = to_batch(val_rows[i : i + batch_size], T, pad_id, device)
        with autocast:
            loss, k = masked_loss(model, x, y, m, seg)
        total += loss.item() * k.item()
        n += k.item()
    model.train()
    return total / n


def finetune(ckpt_dir: str, data: str, out_dir: str, device: str = "auto",
             log_fn: Callable[[str], None] | None = None, **overrides) -> dict:
    """Fine-tune and return the last metrics record (its `val_loss`: held-out assistant-token loss)."""
    log_fn = log_fn or log.info
    cfg, device, device_type, autocast = stage_start(SFTConfig, overrides, device)

    # the base model, its tokenizer with the chat tokens, the embedding grown to match
    conversations = read_conversations(data)
    model, parent, tok = checkpoint.load(ckpt_dir, device)
    tok = add_chat_tokens(tok)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if vocab > model.cfg.vocab_size:
        model.grow_vocab(vocab)
    model.train()
    chat = ChatFormat(tok, int(parent["bos_id"]))
    T, pad = model.cfg.block_size, chat.end  # padding is masked out; any id would do

    examples = [chat.render(m) for m in conversations]
    too_long = sum(len(ids) > T + 1 for ids, _ in examples)
    examples = [e for e in examples if len(e[0]) <= T + 1]
    if too_long:
        log_fn(f"skipped {too_long} conversations longer than the context ({T + 1} tokens)")
    train_ex, val_ex = split(examples, cfg.val_fraction, cfg.seed)
    val_rows = pack_in_order(val_ex[: cfg.max_val], T)  # the same rows at every eval
    packer = Packer(train_ex, T, cfg.seed)
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay, device_type)
    metrics = checkpoint.Metrics(out_dir, log_fn)
    log_fn(f"sft: {len(train_ex)} conversations to train on, {len(val_ex[: cfg.max_val])} held out; "
           f"{model.num_params() / 1e6:.2f}M parameters, vocab {model.cfg.vocab_size} (with the chat tokens), "
           f"{cfg.batch_size} packed rows of {T} tokens per step on {device}")

    record: dict = {}
    train_loss, t0 = None, time.perf_counter()
    for step in range(cfg.steps + 1):
        out_of_time = cfg.max_seconds is not None and time.perf_counter() - t0 >= cfg.max_seconds
        last = step == cfg.steps or (out_of_time and step > 0)
        do_eval = step == 0 or last or step % cfg.eval_every == 0
        do_log = do_eval or step % cfg.log_every == 0

        if do_log:
            val_loss = evaluate(model, val_rows, T, pad, cfg.batch_size, device, autocast) if do_eval else None
            record = {"step": step, "train_loss": train_loss, "val_loss": val_loss, "lr": lr_at(min(step, cfg.steps - 1), cfg)}
            metrics.log(record)
        if last:
            break

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y, m, seg = to_batch(packer.rows(cfg.batch_size), T, pad, device)
        with autocast:
            loss, _ = masked_loss(model, x, y, m, seg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = loss.item() if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps else train_loss

    checkpoint.save(out_dir, {
        "model": model.state_dict(), "model_config": dataclasses.asdict(model.cfg), "stage": "sft",
        "parent": os.path.abspath(ckpt_dir), "step": record["step"], "train_config": dataclasses.asdict(cfg),
        "bos_id": chat.bos, "preset": parent.get("preset"), "data": os.path.abspath(data),
    }, tokenizer=tok)
    # show what the model now does with a few held-out prompts (greedy)
    from tokenmill.train.sample import generate_ids

    model.eval()
    for ex in val_ex[:3]:
        ids = ex[0]
        cut = ids.index(chat.assistant) + 1
        reply = chat.reply(generate_ids(model, ids[:cut], 20, temperature=0, stop_id=chat.end))
        log_fn(f"  {tok.decode(ids[2: cut - 2])!r} → {reply!r}")
    return record
