"""Reinforcement learning on a fine-tuned checkpoint: a group of sampled answers per prompt,
rewarded by an exact-answer check (a verifiable task) or by a reward model (RLHF).

    reinforce("runs/demo/sft", "runs/demo/rl", task="arithmetic")                       # verifiable reward
    reinforce("runs/demo/sft", "runs/demo/rl", task="arithmetic", reward_model="runs/demo/rm")

Each step: P training prompts, G answers each sampled at `temperature` with the KV cache
(sample.generate_batch; the groups of all prompts of one token length in one batch); reward r per
answer; advantage A = r - mean(r of its group) (no critic: the group is the baseline, as in GRPO);
loss on the sampled assistant tokens only:
    -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * KL(policy || starting policy)
averaged over tokens; the policy p is softmax(logits / temperature), the distribution the answers
were drawn from, and ratio = p_new / p_sampling (1 on the first pass over a batch; clipping
bites from `ppo_epochs` 2 on). Training prompts are the task's "rl" split; evaluation uses its
"heldout" split, which no stage trains on: `val_accuracy` is greedy exact-answer accuracy there,
`val_mean_reward` the mean reward of group_size sampled answers per held-out prompt (what RL
maximises, on prompts it never saw). Out: ckpt.pt (`parent`: the SFT checkpoint) and
metrics.jsonl (`step`, `mean_reward` of the step's samples, and the two held-out figures at the
first step, every eval and the last). Measured: 100 steps of 16 prompts x 8 answers took 115 s of
wall time on this (heavily shared) machine when each prompt's group was sampled alone.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenmill.train import checkpoint
from tokenmill.train.chat import ChatFormat, DataError
from tokenmill.train.model import GPT
from tokenmill.train.pretrain import stage_start
from tokenmill.train.sample import generate_batch
from tokenmill.train.tasks import Task, get_task

log = logging.getLogger(__name__)


@dataclass
class RLConfig:
    steps: int = 100
    prompts_per_step: int = 16
    group_size: int = 8  # answers sampled per prompt
    max_new_tokens: int = 16
    temperature: float = 1.0
    lr: float = 2e-5  # small: after SFT the loss is sharp (an SGD step of 3e-3 x the gradient already lowers
    #                   the log-prob of the answers it should raise); Adam at 1e-4, temperature 1, lost half the
    #                   held-out accuracy of an SFT model on a base that had memorised its text (the demo's
    #                   settings are in demo.py: 1e-4 at temperature 0.5; 3e-5 for arithmetic 0..99, where
    #                   1e-4 left the tune prompts where they were and 3e-4 took them from 0.64 to 0.23)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ppo_epochs: int = 1  # passes over each step's samples
    clip: float = 0.2  # PPO ratio clip (from the second pass on)
    kl_coef: float = 0.0  # weight of the KL to the starting policy (0: no reference model kept)
    eval_every: int = 20  # and always at the first and the last step
    log_every: int = 5
    max_heldout: int = 250  # held-out prompts evaluated (greedy, and group_size samples each)
    seed: int = 1337
    max_seconds: float | None = None
    precision: str = "auto"  # auto (bf16 on a bf16 GPU, else fp32), bf16 (autocast, CPU too) or fp32


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, G) → advantages (P, G): each reward minus its group's mean. A group whose answers
    all scored the same teaches nothing (all zeros)."""
    return rewards - rewards.mean(dim=1, keepdim=True)


def token_logprobs(model: GPT, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ids (N, L) → log p(ids[:, t+1] | ids[:, :t+1]) (N, L-1), p = softmax(logits / temperature): the
    distribution the answers were sampled from, so the policy gradient is that of the sampling policy."""
    logits = model.lm_head(model.features(ids[:, :-1])).float() / temperature  # (N, L-1, vocab)
    return torch.gather(F.log_softmax(logits, dim=-1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def pg_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, clip: float,
            ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0) -> tuple[torch.Tensor, float]:
    """PPO-clipped policy gradient averaged over masked tokens; logp/old_logp/mask (N, L-1), adv (N,).
    Returns (loss, mean KL to the reference; 0 without one)."""
    ratio = torch.exp(logp - old_logp)
    a = adv.unsqueeze(1)
    per_tok = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1  # k3 estimator of KL(policy || reference): ≥ 0, unbiased
        per_tok = per_tok + kl_coef * kl
    n = mask.sum().clamp(min=1)
    return (per_tok * mask).sum() / n, float((kl.detach() * mask).sum() / n)


def pad_batch(seqs: list[list[int]], starts: list[int], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt+answer sequences → ids (N, L) right-padded, mask (N, L-1): 1 where the target is an answer token."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1))
    for i, (s, st) in enumerate(zip(seqs, starts)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, st - 1 : len(s) - 1] = 1.0  # targets at positions st .. len-1 are the answer
    return ids.to(device), mask.to(device)


@torch.no_grad()
def heldout_correct(model: GPT, chat: ChatFormat, task: Task, problems: list[tuple[str, str]],
                    max_new_tokens: int, autocast) -> list[bool]:
    """Whether each problem's greedy answer is exact, in the problems' order; prompts of one token
    length are answered in one batch."""
    model.eval()
    by_len = defaultdict(list)
    for i, (p, _) in enumerate(problems):
        ids = chat.prompt(p)
        by_len[len(ids)].append((i, ids))
    correct = [False] * len(problems)
    for items in by_len.values():
        with autocast:
            outs = generate_batch(model, [ids for _, ids in items], max_new_tokens, temperature=0, stop_id=chat.end)
        for o, (i, _) in zip(outs, items):
            correct[i] = task.check(chat.reply(o), problems[i][1])
    return correct


def heldout_accuracy(model: GPT, chat: ChatFormat, task: Task, problems: list[tuple[str, str]],
                     max_new_tokens: int, autocast) -> float:
    """Greedy exact-answer accuracy."""
    return sum(heldout_correct(model, chat, task, problems, max_new_tokens, autocast)) / len(problems)


def sample_and_reward(model: GPT, chat: ChatFormat, task: Task, problems: list[tuple[str, str]], cfg: RLConfig,
                      gen: torch.Generator, autocast, scorer=None) -> tuple[list[list[int]], list[int], torch.Tensor]:
    """A group of cfg.group_size answers per problem, sampled with the KV cache at cfg.temperature,
    and their rewards: (prompt+answer id lists, answer starts, rewards (P, G)), in the problems' order.
    The groups of all prompts of one token length are sampled in one batch."""
    model.eval()
    G = cfg.group_size
    prompt_ids = [chat.prompt(p) for p, _ in problems]
    by_len = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        by_len[len(ids)].append(i)
    outs: list[list[int]] = [[] for _ in range(len(problems) * G)]
    for idx in by_len.values():
        with autocast:
            sampled = generate_batch(model, [prompt_ids[i] for i in idx for _ in range(G)], cfg.max_new_tokens,
                                     cfg.temperature, gen=gen, stop_id=chat.end)
        for k, i in enumerate(idx):
            outs[i * G : (i + 1) * G] = sampled[k * G : (k + 1) * G]
    replies = [chat.reply(o) for o in outs]
    if scorer is not None:
        with autocast:
            r = scorer.score_texts(chat, [p for p, _ in problems for _ in range(G)], replies)
    else:
        r = torch.tensor([float(task.check(replies[i * G + j], a)) for i, (_, a) in enumerate(problems) for j in range(G)])
    seqs = [prompt_ids[i // G] + o for i, o in enumerate(outs)]
    starts = [len(prompt_ids[i // G]) for i in range(len(outs))]
    return seqs, starts, r.float().cpu().view(len(problems), G)


def reinforce(ckpt_dir: str, out_dir: str, task: str | Task = "arithmetic", reward_model: str | None = None,
              device: str = "auto", log_fn: Callable[[str], None] | None = None, **overrides) -> dict:
    """Run RL and return the last metrics record (`mean_reward`, `val_accuracy`)."""
    log_fn = log_fn or log.info
    cfg, device, device_type, autocast = stage_start(RLConfig, overrides, device)
    if cfg.group_size < 2:
        raise DataError("group_size: at least 2 (advantages are rewards minus the group's mean)")
    if not cfg.temperature > 0:
        raise DataError("temperature: above 0 (at 0 every answer of a group is the greedy one, and they teach nothing)")

    the_task = task if isinstance(task, Task) else get_task(task)
    model, parent, tok = checkpoint.load(ckpt_dir, device)
    chat = ChatFormat(tok, int(parent["bos_id"]))
    ref = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    scorer = None
    if reward_model is not None:
        from tokenmill.train.rm import load_reward_model

        scorer, _ = load_reward_model(reward_model, device)
    train_probs = the_task.problems("rl")
    heldout = the_task.problems("heldout")[: cfg.max_heldout]
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay, device_type)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    metrics = checkpoint.Metrics(out_dir, log_fn)
    log_fn(f"rl: task {the_task.name}, reward {'model ' + reward_model if scorer else 'exact answer'}; "
           f"{cfg.prompts_per_step} prompts x {cfg.group_size} answers per step, {len(heldout)} held-out prompts")

    record: dict = {}
    mean_reward, kl_mean, t0 = None, None, time.perf_counter()
    for step in range(cfg.steps + 1):
        out_of_time = cfg.max_seconds is not None and time.perf_counter() - t0 >= cfg.max_seconds
        last = step == cfg.steps or (out_of_time and step > 0)
        do_eval = step == 0 or last or step % cfg.eval_every == 0
        do_log = do_eval or step % cfg.log_every == 0

        if do_log:
            acc = val_reward = None
            if do_eval:  # greedy accuracy, and the mean reward of sampled answers (a fixed seed: the same draws each eval)
                acc = heldout_accuracy(model, chat, the_task, heldout, cfg.max_new_tokens, autocast)
                val_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
                val_reward = float(sample_and_reward(model, chat, the_task, heldout, cfg, val_gen, autocast, scorer)[2].mean())
            record = {"step": step, "mean_reward": mean_reward, "val_accuracy": acc, "val_mean_reward": val_reward,
                      "kl": kl_mean}
            metrics.log(record)
        if last:
            break

        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)

        # sample: a group of answers per prompt, with the KV cache, from the current policy
        batch = random.Random(cfg.seed * 100_003 + step).sample(train_probs, min(cfg.prompts_per_step, len(train_probs)))
        seqs, starts, rewards_t = sample_and_reward(model, chat, the_task, batch, cfg, gen, autocast, scorer)  # (P, G)
        adv = group_advantages(rewards_t).reshape(-1).to(device)  # (P*G,)
        ids, mask = pad_batch(seqs, starts, chat.end, device)
        model.train()
        with torch.no_grad(), autocast:
            old_logp = token_logprobs(model, ids, cfg.temperature)
            ref_logp = token_logprobs(ref, ids, cfg.temperature) if ref is not None else None

        # learn: policy gradient on the sampled answer tokens
        for _ in range(cfg.ppo_epochs):
            with autocast:
                loss, kl_mean = pg_loss(token_logprobs(model, ids, cfg.temperature), old_logp, adv, mask, cfg.clip, ref_logp, cfg.kl_coef)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        mean_reward = float(rewards_t.mean())
        if ref is None:
            kl_mean = None

    checkpoint.save(out_dir, {
        "model": model.state_dict(), "model_config": dataclasses.asdict(model.cfg), "stage": "rl",
        "parent": os.path.abspath(ckpt_dir), "step": record["step"], "train_config": dataclasses.asdict(cfg),
        "bos_id": chat.bos, "preset": parent.get("preset"), "task": the_task.name,
        "reward_model": os.path.abspath(reward_model) if reward_model else None,
    }, tokenizer=tok)
    return record
