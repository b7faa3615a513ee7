"""The reward model with and without its answer-likelihood term, on chains `tokenmill train demo` made.

For each chain DIR[:SEED] (DIR/sft and DIR/data/prefs.jsonl, as `tokenmill train demo --out DIR
[--seed SEED]` leaves them; SEED defaults to 1337, the stages' own) it trains the reward model twice
from DIR/sft with the demo's rm settings and the chain's seed: as the demo does (the last-token head
plus a learned weight on the answer's mean log-likelihood) and with the head alone (`--head-only`).
For each it reports
  - val_accuracy: the held-out share of the chain's own preference pairs ranked right (the demo's
    figure, the issue's >= 0.8), and
  - on `--pairs` pairs built from problems of the RL split (no reward model trains on those; the
    settings were chosen on them, never on the held-out ones): the share ranked right against a
    near miss (`wrong_answer`: a sum off by 1, 2 or 10) and against a badly formatted answer,
and, as the reference for what the term can read, the SFT model's own mean log-likelihood of the
answer alone on the same pairs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/reward_model.py /tmp/trl/chain_default /tmp/trl/chain_2:2 [--task arithmetic]

Exits 1 if the demo's reward model is below `--floor` (0.8, the issue's target) on any chain.
Each reward model takes ~13-29 s here (150 steps of 32 pairs, 0.73M parameters, one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import torch

from tokenmill.train import checkpoint, demo, rm, tasks
from tokenmill.train.chat import ChatFormat


def rl_split_pairs(task: tasks.Task, n: int, seed: int = 5) -> list[dict]:
    """n pairs from RL-split problems, alternately against a near miss and a bad format."""
    rng = random.Random(seed)
    problems = task.problems("rl")
    rng.shuffle(problems)
    rows = []
    for k, (p, a) in enumerate(problems[:n]):
        kind = "near" if k % 2 == 0 else "format"
        rej = task.wrong_answer(p, a, rng) if kind == "near" else task.bad_format(a, rng)
        rows.append({"prompt": p, "chosen": a, "rejected": rej, "kind": kind})
    return rows


@torch.no_grad()
def ranked_right(model: rm.RewardModel, chat: ChatFormat, rows: list[dict]) -> dict:
    """Share of rows with the chosen answer scored above the rejected one, per kind (a tie counts half)."""
    right: dict[str, list[float]] = {}
    for i in range(0, len(rows), 64):
        b = rows[i : i + 64]
        prompts = [r["prompt"] for r in b]
        rc = model.score_texts(chat, prompts, [r["chosen"] for r in b])
        rr = model.score_texts(chat, prompts, [r["rejected"] for r in b])
        for r, c, w in zip(b, rc.tolist(), rr.tolist()):
            right.setdefault(r["kind"], []).append(1.0 if c > w else 0.5 if c == w else 0.0)
    return {k: sum(v) / len(v) for k, v in right.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chains", nargs="+", help="DIR[:SEED] of `tokenmill train demo --out DIR [--seed SEED]`")
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--pairs", type=int, default=1000, help="RL-split pairs to score (half near misses)")
    ap.add_argument("--floor", type=float, default=0.8,
                    help="exit 1 if the demo's reward model ranks fewer held-out pairs right on any chain")
    args = ap.parse_args()
    task = tasks.get_task(args.task)
    _, rm_cfg, _ = demo.settings(task.name)
    rows = rl_split_pairs(task, args.pairs)
    print(f"task {task.name}; rm settings {rm_cfg}; {len(rows)} RL-split pairs; torch threads {torch.get_num_threads()}")
    below = []
    print(f"{'chain':<32} {'seed':>5} {'variant':<12} {'val_acc':>8} {'near':>6} {'format':>7} {'lik_w':>6} {'s':>5}")
    for spec in args.chains:
        path, _, seed = spec.partition(":")
        seed = int(seed or 1337)
        sft_dir, prefs = os.path.join(path, "sft"), os.path.join(path, "data", "prefs.jsonl")
        if not (os.path.exists(os.path.join(sft_dir, "ckpt.pt")) and os.path.exists(prefs)):
            print(f"error: {path} has no sft/ckpt.pt and data/prefs.jsonl (run `tokenmill train demo --out {path}`)",
                  file=sys.stderr)
            return 2
        model, ckpt, tok = checkpoint.load(sft_dir, "cpu")
        chat = ChatFormat(tok, int(ckpt["bos_id"]))
        lik_only = rm.RewardModel(model).eval()  # head 0, weight 1: the SFT model's likelihood alone
        with torch.no_grad():
            lik_only.lik_weight.fill_(1.0)
        sft_lik = ranked_right(lik_only, chat, rows)
        print(f"{path:<32} {seed:>5} {'sft lik':<12} {'':>8} {sft_lik['near']:>6.3f} {sft_lik['format']:>7.3f}")
        for variant, likelihood in (("demo", True), ("head only", False)):
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                rec = rm.train_reward_model(sft_dir, prefs, out, device="cpu", log_fn=lambda s: None,
                                            **{**rm_cfg, "seed": seed, "likelihood": likelihood})
                secs = time.perf_counter() - t
                trained, _ = rm.load_reward_model(out, "cpu")
                acc = ranked_right(trained, chat, rows)
            print(f"{path:<32} {seed:>5} {variant:<12} {rec['val_accuracy']:>8.3f} {acc['near']:>6.3f} "
                  f"{acc['format']:>7.3f} {rec['lik_weight']:>6.3f} {secs:>5.0f}", flush=True)
            if likelihood and rec["val_accuracy"] < args.floor:
                below.append(f"{path} {rec['val_accuracy']:.3f}")
            print(json.dumps({"chain": path, "seed": seed, "variant": variant, "val_accuracy": rec["val_accuracy"],
                              **{f"rl_split_{k}": v for k, v in acc.items()}, "lik_weight": rec["lik_weight"]}),
                  file=sys.stderr)
    if below:
        print(f"FAIL: val_accuracy below the floor {args.floor} on {', '.join(below)}")
        return 1
    print(f"PASS: val_accuracy at least {args.floor} on every chain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
