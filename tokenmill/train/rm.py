"""A reward model: the fine-tuned GPT with a scalar head read at the last token, trained on
preference pairs with the Bradley–Terry loss.

    train_reward_model("runs/demo/sft", "data/prefs.jsonl", "runs/demo/rm")   # → rm/{ckpt.pt, tokenizer.json, metrics.jsonl}

In: a checkpoint with the chat tokens (sft's) and `{"prompt", "chosen", "rejected"}` lines.
Each side is rendered as the conversation [user: prompt, assistant: answer] and scored
r = head(h at its closing <|end|>) + w * (mean log-probability the backbone gives the answer's
tokens and its <|end|>), w a learned scalar that starts at 0; loss = -logsigmoid(r_chosen -
r_rejected), the negative log of the Bradley–Terry probability that the chosen answer wins.
`val_accuracy` is the share of held-out pairs with r_chosen > r_rejected. Out: ckpt.pt holds the
backbone (`model`), the head (`head`) and w (`lik_weight`), `parent` the SFT checkpoint.
`likelihood=False` (`--head-only`) scores with the head alone.

Why w: with the head alone, held-out pairs of arithmetic 0..99 were ranked 0.71-0.77: every badly
formatted answer right, near-miss sums (42 against 43) at chance, at lr 1e-3 or 1e-4, 150 to 900
steps, 1 to 3 pairs a problem, although the SFT model's own likelihood ranks those near misses
0.76-0.95 right (see RewardModel). Measured with bench/reward_model.py on the demo chains of seeds
1337, 2, 3, 4 (150 steps, lr 1e-4, w's lr 100x; chosen on pairs of RL-split problems, not on the
held-out pairs): held-out pairs 0.89-0.98 against 0.71-0.76 for the head alone at the same lr; near
misses 0.74-0.94 (about the SFT likelihood's own) against 0.49-0.51. At lr 1e-3 the backbone forgets
the sums (0.74 even with w). 23-29 s a run on one thread here.
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
import torch.nn as nn
import torch.nn.functional as F

from tokenmill.train import checkpoint
from tokenmill.train.chat import ChatFormat, DataError, read_preferences, split
from tokenmill.train.model import GPT
from tokenmill.train.pretrain import lr_at, stage_start

log = logging.getLogger(__name__)


@dataclass
class RMConfig:
    steps: int = 150
    batch_size: int = 32  # pairs per step
    lr: float = 1e-4  # the backbone's and the head's; at 1e-3 the backbone forgets the sums it had learnt
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 50  # and always at the first and the last step
    log_every: int = 10
    val_fraction: float = 0.1
    max_val: int = 512
    seed: int = 1337
    max_seconds: float | None = None
    precision: str = "auto"  # auto (bf16 on a bf16 GPU, else fp32), bf16 (autocast, CPU too) or fp32
    likelihood: bool = True  # add the learned weight on the answer's log-likelihood (False: the head alone)
    lik_lr_scale: float = 100.0  # the likelihood weight's lr as a multiple of lr: one number, to move in 150 steps


class RewardModel(nn.Module):
    """GPT backbone + Linear(C, 1) read at each sequence's last real token, plus a learned weight on
    the backbone's mean log-likelihood of the answer's tokens.

    Why the second term: a closing token cannot see whether "42" is the right sum. The backbone forms
    its prediction of the answer at the last layer of the position before each answer token, and a
    later position reads earlier ones only through layers below it, so the head at <|end|> would
    have to compute the sum again within the same depth. The likelihood term reads those predictions
    where they are (the tied LM head on h[t-1] against token t). It starts at 0 and is trained with
    the head by the same Bradley–Terry loss, so the model decides how much to trust it."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # an untrained model scores every answer 0
        self.lik_weight = nn.Parameter(torch.zeros(()))

    def forward(self, ids: torch.Tensor, last: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) right-padded, last (B,) index of each row's last token, start (B,) index of each
        row's first answer token (None: the head alone) → rewards (B,)."""
        h = self.gpt.features(ids)  # (B, T, C); causal: padding after `last` changes nothing before it
        rows = torch.arange(ids.size(0), device=ids.device)
        r = self.head(h[rows, last]).squeeze(-1).float()
        if start is None:
            return r
        return r + self.lik_weight * answer_loglik(self.gpt, h, ids, start, last)

    @torch.no_grad()
    def score_texts(self, chat: ChatFormat, prompts: list[str], answers: list[str]) -> torch.Tensor:
        """Rewards (B,) for (prompt, answer) pairs."""
        prompt_ids = [chat.prompt(p) for p in prompts]
        device = next(self.parameters()).device
        ids, last = pad([q + answer_ids(chat, a) for q, a in zip(prompt_ids, answers)], chat.end, device)
        return self(ids, last, torch.tensor([len(q) for q in prompt_ids], device=device))


def answer_loglik(gpt: GPT, h: torch.Tensor, ids: torch.Tensor, start: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Mean log-probability (B,) of the tokens start..last (the answer and its <|end|>) given what precedes them."""
    logp = F.log_softmax(gpt.lm_head(h[:, :-1]).float(), dim=-1)  # (B, T-1, V): position t predicts token t+1
    tok = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    t = torch.arange(1, ids.size(1), device=ids.device)  # the predicted token's index
    inside = (t >= start.unsqueeze(1)) & (t <= last.unsqueeze(1))
    return (tok * inside).sum(1) / inside.sum(1).clamp(min=1)


def answer_ids(chat: ChatFormat, answer: str) -> list[int]:
    """The assistant's turn after chat.prompt(...): its text and the closing <|end|> (as chat.render
    writes the conversation [user: prompt, assistant: answer])."""
    return chat.encode(answer) + [chat.end]


def pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids.to(device), torch.tensor([len(s) - 1 for s in seqs], device=device)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged: ln 2 when the model cannot tell them apart."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_scores(rm: RewardModel, pairs: list[tuple[list[int], list[int], int]], pad_id: int, device: str,
                likelihood: bool = True):
    """(r_chosen, r_rejected), (B,) each, in one forward over 2B sequences. A pair is (chosen ids,
    rejected ids, index of the first answer token); `likelihood` False scores with the head alone."""
    ids, last = pad([c for c, _, _ in pairs] + [r for _, r, _ in pairs], pad_id, device)
    start = torch.tensor([s for _, _, s in pairs] * 2, device=device) if likelihood else None
    r = rm(ids, last, start)
    return r[: len(pairs)], r[len(pairs):]


@torch.no_grad()
def accuracy(rm: RewardModel, pairs: list, pad_id: int, batch_size: int, device: str, autocast,
             likelihood: bool = True) -> float:
    """Share of pairs with r_chosen > r_rejected (a tie counts half: chance, as an untrained head's 0 = 0)."""
    rm.eval()
    right = 0.0
    for i in range(0, len(pairs), batch_size):
        with autocast:
            rc, rr = pair_scores(rm, pairs[i : i + batch_size], pad_id, device, likelihood)
        right += float((rc > rr).sum()) + 0.5 * float((rc == rr).sum())
    rm.train()
    return right / len(pairs)


def load_reward_model(ckpt_dir: str, device: str) -> tuple[RewardModel, dict]:
    gpt, ckpt, _ = checkpoint.load(ckpt_dir, device)
    if ckpt.get("stage") != "rm":
        raise DataError(f"{ckpt_dir} is a {ckpt.get('stage', 'pretrain')} checkpoint, not a reward model; "
                        f"train one with `tokenmill train rm`")
    rm = RewardModel(gpt).to(device)
    rm.head.load_state_dict(ckpt["head"])
    rm.lik_weight.data.fill_(float(ckpt.get("lik_weight", 0.0)))  # 0: the head alone (older checkpoints)
    return rm.eval(), ckpt


def train_reward_model(ckpt_dir: str, data: str, out_dir: str, device: str = "auto",
                       log_fn: Callable[[str], None] | None = None, **overrides) -> dict:
    """Train and return the last metrics record (its `val_accuracy`: held-out pairwise accuracy)."""
    log_fn = log_fn or log.info
    cfg, device, device_type, autocast = stage_start(RMConfig, overrides, device)

    prefs = read_preferences(data)
    gpt, parent, tok = checkpoint.load(ckpt_dir, device)
    chat = ChatFormat(tok, int(parent["bos_id"]))
    rm = RewardModel(gpt).to(device).train()
    T = gpt.cfg.block_size
    pairs = []
    for p in prefs:  # (chosen ids, rejected ids, index of the first answer token); the prompt encoded once
        q = chat.prompt(p["prompt"])
        pairs.append((q + answer_ids(chat, p["chosen"]), q + answer_ids(chat, p["rejected"]), len(q)))
    too_long = sum(max(len(c), len(r)) > T for c, r, _ in pairs)
    pairs = [(c, r, s) for c, r, s in pairs if max(len(c), len(r)) <= T]
    if too_long:
        log_fn(f"skipped {too_long} pairs longer than the context ({T} tokens)")
    train_pairs, val_pairs = split(pairs, cfg.val_fraction, cfg.seed)
    val_pairs = val_pairs[: cfg.max_val]
    optimizer = gpt.configure_optimizer(cfg.lr, cfg.weight_decay, device_type)
    optimizer.add_param_group({"params": list(rm.head.parameters()), "weight_decay": 0.0})
    optimizer.add_param_group({"params": [rm.lik_weight], "weight_decay": 0.0, "lr_scale": cfg.lik_lr_scale})
    if not cfg.likelihood:
        rm.lik_weight.requires_grad_(False)
    metrics = checkpoint.Metrics(out_dir, log_fn)
    log_fn(f"rm: {len(train_pairs)} preference pairs to train on, {len(val_pairs)} held out; "
           f"{cfg.batch_size} pairs per step on {device}")

    rng = random.Random(cfg.seed)
    order: list[int] = []
    record: dict = {}
    train_loss, t0 = None, time.perf_counter()
    for step in range(cfg.steps + 1):
        out_of_time = cfg.max_seconds is not None and time.perf_counter() - t0 >= cfg.max_seconds
        last = step == cfg.steps or (out_of_time and step > 0)
        do_eval = step == 0 or last or step % cfg.eval_every == 0
        do_log = do_eval or step % cfg.log_every == 0

        if do_log:
            acc = (accuracy(rm, val_pairs, chat.end, 2 * cfg.batch_size, device, autocast, cfg.likelihood)
                   if do_eval else None)
            record = {"step": step, "train_loss": train_loss, "val_accuracy": acc, "lr": lr_at(min(step, cfg.steps - 1), cfg),
                      "lik_weight": round(rm.lik_weight.item(), 4)}
            metrics.log(record)
        if last:
            break

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg) * group.get("lr_scale", 1.0)
        batch = []
        while len(batch) < cfg.batch_size:  # epochs of a seeded shuffle
            if not order:
                order = list(range(len(train_pairs)))
                rng.shuffle(order)
            batch.append(train_pairs[order.pop()])
        with autocast:
            rc, rr = pair_scores(rm, batch, chat.end, device, cfg.likelihood)
            loss = bradley_terry_loss(rc, rr)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = loss.item() if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps else train_loss

    checkpoint.save(out_dir, {
        "model": gpt.state_dict(), "head": rm.head.state_dict(), "lik_weight": rm.lik_weight.item(), "model_config": dataclasses.asdict(gpt.cfg),
        "stage": "rm", "parent": os.path.abspath(ckpt_dir), "step": record["step"],
        "train_config": dataclasses.asdict(cfg), "bos_id": chat.bos, "preset": parent.get("preset"),
        "data": os.path.abspath(data),
    }, tokenizer=tok)
    return record
