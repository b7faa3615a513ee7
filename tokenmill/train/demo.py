"""The whole recipe in miniature, on CPU: pretrain → sft → rm → rl, then a table of what each moved.

    run("runs/demo/run/tokens")   # → runs/demo/run/chain/{base,data,sft,rm,rl}/

In: the tokens of a pipeline run (`tokenmill demo --out runs/demo --no-train` makes some in about
a minute). Out: one checkpoint directory per stage, each with its metrics.jsonl and its parent
recorded (base → sft → rm, base → sft → rl), the task's JSONL files under data/, and the table,
whose "first" and "last" are each stage's first and last validation figures (rl's first is the
SFT model's own held-out accuracy). Budget: ~1 min of pretraining and about as much for the
three later stages together on 2 CPU cores (more when the machine is shared).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from tokenmill.train import pretrain, rl, rm, sft, tasks
from tokenmill.train.chat import DataError

# the stages' settings for the demo: small enough for a CPU, large enough to move each metric
PRETRAIN = dict(preset="demo", max_seconds=60.0)
SFT = dict(steps=300, lr=3e-3, eval_every=50)
RM = dict(steps=150, lr=1e-3, eval_every=50)
RL = dict(steps=100, eval_every=20)

ROWS = [  # stage, metric, what it measures
    ("pretrain", "val_loss", "held-out web text, nats/token"),
    ("sft", "val_loss", "held-out assistant tokens, nats/token"),
    ("rm", "val_accuracy", "held-out preference pairs ranked right"),
    ("rl", "val_accuracy", "held-out prompts answered exactly, greedy (first: the SFT model)"),
    ("rl", "val_mean_reward", "held-out prompts, mean reward of 8 sampled answers each"),
]


def first_last(metrics_path: str, key: str) -> tuple[float, float]:
    vals = [r[key] for r in map(json.loads, open(metrics_path)) if r.get(key) is not None]
    return vals[0], vals[-1]


def run(tokens_dir: str, out_dir: str | None = None, task: str = "arithmetic", device: str = "cpu",
        log_fn: Callable[[str], None] = print) -> list[dict]:
    """Run the four stages; returns the table's rows (stage, metric, first, last, seconds)."""
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
        fn(*args, device=device, log_fn=log_fn, **kw)
        seconds[name] = time.perf_counter() - t

    t0 = time.perf_counter()
    stage("pretrain", pretrain.train, tokens_dir, dirs["base"], **PRETRAIN)
    data = tasks.write_task_data(the_task, dirs["data"])
    log_fn(f"\n{the_task.name} task data: {', '.join(data.values())}")
    stage("sft", sft.finetune, dirs["base"], data["sft"], dirs["sft"], **SFT)
    stage("rm", rm.train_reward_model, dirs["sft"], data["prefs"], dirs["rm"], **RM)
    stage("rl", rl.reinforce, dirs["sft"], dirs["rl"], task=the_task.name, **RL)

    rows = []
    for name, key, what in ROWS:
        d = dirs["base"] if name == "pretrain" else dirs[name]
        first, last = first_last(os.path.join(d, "metrics.jsonl"), key)
        rows.append({"stage": name, "metric": key, "what": what, "first": first, "last": last, "seconds": seconds[name]})
    log_fn(f"\nthe chain on {device} in {time.perf_counter() - t0:.0f} s ({out}):")
    log_fn(format_table(rows))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'stage':<9} {'metric':<16} {'first':>7} {'last':>7} {'seconds':>8}  measured on"]
    for r in rows:
        lines.append(f"{r['stage']:<9} {r['metric']:<16} {r['first']:>7.3f} {r['last']:>7.3f} {r['seconds']:>8.0f}  {r['what']}")
    return "\n".join(lines)
