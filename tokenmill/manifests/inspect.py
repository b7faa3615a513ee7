"""`tokenmill inspect RUN`: per stage, what the run did — from the manifests alone.

Rows of the latest invocation's steps (by step hash) are counted: tasks done and failed,
documents in and out, and the most frequent drop reasons.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from tokenmill import storage
from tokenmill.manifests.store import read_runs, read_tasks


def latest_run(run_dir: str) -> dict:
    runs = read_runs(run_dir).to_pylist()
    if not runs:
        raise FileNotFoundError(f"{run_dir}: no run record in manifest/runs; is this a tokenmill run directory?")
    return max(runs, key=lambda r: (r["started"], r["run_id"]))


def stage_table(run_dir: str) -> tuple[dict, list[dict]]:
    """(latest run record, one row per stage in pipeline order)."""
    run = latest_run(run_dir)
    steps = json.loads(run["steps"])
    hashes = {s["hash"]: s for s in steps}
    rows = [r for r in read_tasks(run_dir).to_pylist() if r["step_hash"] in hashes]

    done: dict[tuple[str, str], dict] = {}  # (task_id, stage) -> latest done row
    done_tasks: set[str] = set()
    failed_tasks: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["finished"] or r["started"])):
        if r["status"] == "done":
            done[(r["task_id"], r["stage"])] = r
            done_tasks.add(r["task_id"])
        else:
            failed_tasks[r["task_id"]] = r
    failed_tasks = {t: r for t, r in failed_tasks.items() if t not in done_tasks}

    global_steps = {s["step"] for s in steps if s.get("kind") == "global"}
    order: list[str] = []
    agg: dict[str, dict] = defaultdict(lambda: {"tasks": set(), "docs_in": 0, "docs_out": 0, "drops": Counter(),
                                                 "counters": Counter(), "seconds": 0.0, "failed": 0})
    for (task_id, stage), r in sorted(done.items(), key=lambda kv: (kv[1]["step"], kv[1]["started"], kv[0][0])):
        if stage is None:
            continue
        if stage not in order:
            order.append(stage)
        a = agg[stage]
        a["global"] = r["step"] in global_steps
        a["tasks"].add(task_id)
        a["docs_in"] += r["docs_in"] or 0
        a["docs_out"] += r["docs_out"] or 0
        a["drops"].update(dict(r["drops"] or []))
        a["counters"].update(dict(r["counters"] or []))
        a["seconds"] += (r["seconds"] if a["global"] else r["stage_seconds"]) or 0.0
    for r in failed_tasks.values():
        for stage in [r["stage"]] if r["stage"] else steps[r["step"]]["name"].split("+"):
            if stage not in order:
                order.append(stage)
            agg[stage]["failed"] += 1
            agg[stage]["global"] = r["step"] in global_steps
    table = []
    for stage in order:
        a = agg[stage]
        table.append({
            "stage": stage, "global": a.get("global", False), "tasks": len(a["tasks"]), "failed": a["failed"],
            "docs_in": a["docs_in"],
            "docs_out": a["docs_out"], "dropped": sum(a["drops"].values()), "seconds": round(a["seconds"], 2),
            "drops": dict(a["drops"].most_common()), "counters": dict(a["counters"].most_common()),
        })
    run["failures"] = [{"task_id": t, "step": r["step"], "inputs": r["inputs"], "error": r["error"]}
                       for t, r in sorted(failed_tasks.items())]
    return run, table


def format_table(run: dict, table: list[dict], top: int = 3) -> str:
    head = f"{'stage':<18}{'tasks':>6}{'failed':>7}{'docs in':>10}{'docs out':>10}{'dropped':>9}{'secs':>8}  top drop reasons"
    lines = [
        f"run {run['run_id']}  status {run['status']}  config {run['config_file']}  (hash {run['config_hash']})",
        f"tasks run {run['tasks_done']}, skipped as done {run['tasks_skipped']}, failed {run['tasks_failed']}",
        "",
        head,
        "-" * len(head),
    ]
    for r in [r for r in table if not r["global"]]:
        reasons = ", ".join(f"{k} {v}" for k, v in list(r["drops"].items())[:top])
        more = len(r["drops"]) - top
        if more > 0:
            reasons += f", +{more} more"
        lines.append(f"{r['stage']:<18}{r['tasks']:>6}{r['failed']:>7}{r['docs_in']:>10}{r['docs_out']:>10}"
                     f"{r['dropped']:>9}{r['seconds']:>8.1f}  {reasons}")
    glob_rows = [r for r in table if r["global"]]
    if glob_rows:
        lines += ["", "global steps (tasks fanned out across all shards):"]
        lines += [f"  {r['stage']:<24}{r['tasks']:>5} tasks{r['failed']:>4} failed{r['seconds']:>8.1f} s" for r in glob_rows]
    extra = [f"{r['stage']}: " + ", ".join(f"{k} {v}" for k, v in r["counters"].items()) for r in table if r["counters"]]
    if extra:
        lines += ["", "counters:", *["  " + e for e in extra]]
    if run.get("failures"):
        lines += ["", "failed tasks:"]
        lines += [f"  {f['task_id']} ({', '.join(f['inputs'] or [])}): {f['error']}" for f in run["failures"]]
    return "\n".join(lines)


def describe(run_dir: str) -> str:
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run, table = stage_table(run_dir)
    return format_table(run, table)


def describe_failed(run_dir: str) -> str:
    """The tasks of the latest run's steps whose last attempt failed, with their errors."""
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run, _ = stage_table(run_dir)
    failures = run.get("failures") or []
    if not failures:
        return f"run {run['run_id']} ({run['status']}): no failed tasks"
    lines = [f"run {run['run_id']} ({run['status']}): {len(failures)} failed task(s)"]
    lines += [f"  {f['task_id']}  step {f['step']}  ({', '.join(f['inputs'] or [])}): {f['error']}" for f in failures]
    return "\n".join(lines)
