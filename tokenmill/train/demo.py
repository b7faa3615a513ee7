"""The whole recipe in miniature, on CPU: pretrain → sft → rm → rl, then a table of what each moved.

    run("runs/demo/run/tokens")   # → runs/demo/run/chain/{base,data,sft,rm,rl}/

In: the tokens of a pipeline run (`tokenmill demo --out runs/demo --no-train` makes some in about
a minute). Out: one checkpoint directory per stage, each with its metrics.jsonl and its parent
recorded (base → sft → rm, base → sft → rl), the task's JSONL files under data/, the table, whose
"first" and "last" are each stage's first and last validation figures (rl's first is the SFT
model's own held-out accuracy), and a line comparing the SFT and RL models on every held-out
prompt (counts, standard errors, the prompts only one gets right, a sign test). Measured, arithmetic
(2,000 held-out prompts), OMP_NUM_THREADS=1 nice -n 19, load average 1-2.6: the chain took 281-310 s
of wall time and 281-291 s of CPU time (user + sys) for chain seeds 1337 (the default), 2 and 3; SFT
→ RL greedy exact answers 0.789 → 0.850 (p = 4e-14), 0.271 → 0.377 (p = 3e-25) and 0.467 → 0.461
(p = 0.6: no gain on seed 3); a fourth, seed 4: 0.315 → 0.588 (p = 1e-75), 257 s. The reward model ranks bad formats right and near-miss sums at chance
(0.75-0.77 in all). (With torch's 2 threads on a busy machine pretraining ran ~10x slower.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable

from tokenmill.train import pretrain, rl, rm, sft, tasks
from tokenmill.train.chat import DataError

# the stages' settings for the demo: small enough for a CPU, large enough to move each metric
# pretraining: a fixed number of steps, not a time limit, so the base (and every figure after it) is the
# same whatever the load. The demo's web text is ~14k tokens: 100 steps of 16 x 128 are ~15 passes; at
# 336 steps (a minute on an idle machine) the base had memorised it (train loss 0.05, val 0.80 against
# 0.59 at step 100) and fine-tuned far worse (arithmetic, greedy exact answers on RL prompts kept
# aside: 0.175 against 0.525 from a 100-step base). max_seconds only caps a very slow machine.
PRETRAIN = dict(preset="demo", steps=100, eval_every=25, max_seconds=600.0)
SFT = dict(steps=300, lr=3e-3, eval_every=50)
# rm at lr 1e-4 (1e-3 before its answer-likelihood term: at 1e-3 the backbone forgets the sums; see rm.py)
RM = dict(steps=150, lr=1e-4, eval_every=50)
# rl: sampling at temperature 0.5 and Adam at 1e-4 for 200 steps, chosen for reverse and the old
# 0..19 arithmetic on RL prompts kept aside from RL training (never the held-out ones).
RL = dict(steps=200, lr=1e-4, temperature=0.5, eval_every=25)
# what a task changes in those. Arithmetic (0..99, 3,000 RL prompts), chosen on the first 250 of its RL
# prompts kept aside from RL training (RL trained on the other 2,750; the held-out split was not looked
# at), greedy exact answers there:
#   chain seed 1337: sft 300 steps 0.124 (units digit right 13%: not learnt), RL at 1e-4 did not move it
#   (0.104 at step 200); sft 500 steps 0.152; 900 steps 0.988 (nothing left for RL). Seed 1, on a 900-step
#   schedule: 0.22 / 0.65 / 0.78 / 0.98 at steps 400 / 500 / 600 / 700 - the units digit is learnt in a
#   jump, whose step moves with the seed.
#   seed 1337, sft 600 steps: 0.644 (8 samples at T 0.5: one right on 0.896), then RL 200 steps at T 0.5:
#     lr 3e-4: 0.368 / 0.160 / 0.260 / 0.232 at steps 50 / 100 / 150 / 200 (wrecked)
#     lr 1e-4: 0.592 / 0.632 / 0.564 / 0.660 (noise around the start)
#     lr 3e-5: 0.780 / 0.796 / 0.764 / 0.808; 57 prompts right only after RL, 16 only before
#   seed 1, sft 600 steps: 0.212 (before its jump), RL at 3e-5 → 0.232 (32 against 27: nothing)
#   seed 1, sft 700 steps: 0.720, RL at 3e-5 → 0.812 / 0.820 / 0.840 / 0.836 (38 against 9)
# so 700 SFT steps (seed 1 past the start of its jump; seed 1337 was already partway at 600; at 700 it was
# not tried before the final runs) and RL at 3e-5.
TASK_SETTINGS = {"arithmetic": {"sft": dict(steps=700, eval_every=100), "rl": dict(lr=3e-5)}}


def settings(task: str) -> tuple[dict, dict, dict]:
    """The sft, rm and rl settings the demo uses for a task (the defaults above, then the task's own)."""
    own = TASK_SETTINGS.get(task, {})
    return {**SFT, **own.get("sft", {})}, {**RM, **own.get("rm", {})}, {**RL, **own.get("rl", {})}


ROWS = [  # stage, metric, what it measures
    ("pretrain", "val_loss", "held-out web text, nats/token"),
    ("sft", "val_loss", "held-out assistant tokens, nats/token"),
    ("rm", "val_accuracy", "held-out preference pairs ranked right"),
    ("rl", "val_accuracy", "held-out prompts answered exactly, greedy (first: the SFT model)"),
    ("rl", "val_mean_reward", "held-out prompts, mean reward of 8 answers each, sampled at rl's temperature"),
]


def first_last(metrics_path: str, key: str) -> tuple[float, float]:
    vals = [r[key] for r in map(json.loads, open(metrics_path)) if r.get(key) is not None]
    return vals[0], vals[-1]


def run(tokens_dir: str, out_dir: str | None = None, task: str = "arithmetic", device: str = "cpu",
        log_fn: Callable[[str], None] = print, seed: int | None = None) -> tuple[list[dict], dict]:
    """Run the four stages; returns the table's rows (stage, metric, first, last, seconds) and the
    paired held-out comparison of the SFT and RL checkpoints (compare_heldout). `seed` (default: each
    stage's own) seeds every stage: another seed is another base, SFT order, RL draws."""
    if not os.path.exists(os.path.join(tokens_dir, "manifest.parquet")):
        raise DataError(f"no token shards in {tokens_dir}; make some with `tokenmill demo --out runs/demo --no-train` "
                        f"or give --tokens RUN/tokens")
    the_task = tasks.get_task(task)
    out = out_dir or os.path.join(os.path.dirname(os.path.abspath(tokens_dir.rstrip("/"))), "chain")
    dirs = {name: os.path.join(out, name) for name in ("base", "data", "sft", "rm", "rl")}
    seconds: dict[str, float] = {}

    def stage(name: str, fn, *args, **kw) -> None:
        log_fn(f"\n== {name} ==")
        t = time.perf_counter()
        fn(*args, device=device, log_fn=log_fn, **kw, **({} if seed is None else {"seed": seed}))
        seconds[name] = time.perf_counter() - t

    t0 = time.perf_counter()
    stage("pretrain", pretrain.train, tokens_dir, dirs["base"], **PRETRAIN)
    data = tasks.write_task_data(the_task, dirs["data"])
    log_fn(f"\n{the_task.name} task data: {', '.join(data.values())}")
    sft_cfg, rm_cfg, rl_cfg = settings(the_task.name)
    stage("sft", sft.finetune, dirs["base"], data["sft"], dirs["sft"], **sft_cfg)
    stage("rm", rm.train_reward_model, dirs["sft"], data["prefs"], dirs["rm"], **rm_cfg)
    stage("rl", rl.reinforce, dirs["sft"], dirs["rl"], task=the_task.name, **rl_cfg)

    rows = []
    for name, key, what in ROWS:
        d = dirs["base"] if name == "pretrain" else dirs[name]
        first, last = first_last(os.path.join(d, "metrics.jsonl"), key)
        rows.append({"stage": name, "metric": key, "what": what, "first": first, "last": last, "seconds": seconds[name]})
    # every held-out prompt (rl's evals, which also sample, stop at max_heldout): greedy answers are cheap
    cmp = compare_heldout(dirs["sft"], dirs["rl"], the_task, None, rl_cfg.get("max_new_tokens", rl.RLConfig.max_new_tokens),
                          device)
    log_fn(f"\nthe chain on {device} in {time.perf_counter() - t0:.0f} s ({out}):")
    log_fn(format_table(rows))
    log_fn(format_comparison(cmp))
    return rows, cmp


def compare_heldout(sft_dir: str, rl_dir: str, task: tasks.Task, max_heldout: int | None, max_new_tokens: int,
                    device: str = "cpu") -> dict:
    """The SFT and the RL checkpoint on the same held-out prompts (the first max_heldout; None: all),
    greedy: how many each answers exactly, and the prompts only one of them gets right (a paired
    comparison: what RL changed)."""
    import torch

    from tokenmill.train import checkpoint
    from tokenmill.train.chat import ChatFormat

    problems = task.problems("heldout")[:max_heldout]
    right = {}
    for name, d in (("sft", sft_dir), ("rl", rl_dir)):
        model, ckpt, tok = checkpoint.load(d, device)
        with torch.no_grad():
            right[name] = rl.heldout_correct(model, ChatFormat(tok, int(ckpt["bos_id"])), task, problems,
                                             max_new_tokens, contextlib.nullcontext())
    rl_only = sum(r and not s for s, r in zip(right["sft"], right["rl"]))
    sft_only = sum(s and not r for s, r in zip(right["sft"], right["rl"]))
    return {"stage": "compare", "n": len(problems), "sft": sum(right["sft"]), "rl": sum(right["rl"]),
            "rl_only": rl_only, "sft_only": sft_only, "p_value": sign_test(rl_only, sft_only)}


def standard_error(p: float, n: int) -> float:
    """Of an accuracy p measured on n prompts: sqrt(p (1 - p) / n)."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def sign_test(a: int, b: int) -> float:
    """Two-sided p-value that a and b discordant pairs split this unevenly by chance (each side 1/2)."""
    n = a + b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a, b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def format_comparison(c: dict) -> str:
    n = c["n"]
    ps, pr = c["sft"] / n, c["rl"] / n
    return (f"held-out, greedy, the same {n} prompts: sft {c['sft']}/{n} = {ps:.3f} ± {standard_error(ps, n):.3f}, "
            f"rl {c['rl']}/{n} = {pr:.3f} ± {standard_error(pr, n):.3f} (± one standard error); "
            f"right only after rl: {c['rl_only']}, only before: {c['sft_only']} (sign test p = {c['p_value']:.3g})")


def format_table(rows: list[dict]) -> str:
    lines = [f"{'stage':<9} {'metric':<16} {'first':>7} {'last':>7} {'seconds':>8}  measured on"]
    for r in rows:
        lines.append(f"{r['stage']:<9} {r['metric']:<16} {r['first']:>7.3f} {r['last']:>7.3f} {r['seconds']:>8.0f}  {r['what']}")
    return "\n".join(lines)
