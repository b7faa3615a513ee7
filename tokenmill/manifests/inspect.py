"""`tokenmill inspect RUN [--json]`: per stage, what the run did — from the manifests alone.

Rows of the latest invocation's steps (by step hash) are counted: tasks done and failed,
documents in and out, and the most frequent drop reasons. It works while a run is in progress:
task rows are files written atomically, so only committed attempts are read; per step it says
tasks done, failed and pending. A step's task count comes from the driver's progress file
(`RUN/manifest/progress/<run_id>.json`, written by pipeline/progress.py as each batch of tasks
starts); a step that has not started yet has none ("pending: not started").
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


def progress_path(run_dir: str, run_id: str) -> str:
    return storage.join(run_dir, "manifest", "progress", f"{run_id}.json")


def read_progress(run_dir: str, run_id: str) -> dict | None:
    """A run's progress file (task totals per batch of tasks), or None (an older run, or not written yet)."""
    path = progress_path(run_dir, run_id)
    if not storage.exists(path):
        return None
    fs, p = storage.fs_and_path(path)
    with fs.open(p, "rb") as f:
        try:
            return json.loads(f.read())
        except ValueError:
            return None


def step_status(run_dir: str, run: dict) -> list[dict]:
    """Per step of the latest run: tasks done, failed for good, retrying, pending (None: unknown)."""
    steps = json.loads(run["steps"])
    max_attempts = (json.loads(run["config"]).get("executor") or {}).get("max_attempts", 1) if run.get("config") else 1
    rows = read_tasks(run_dir).select(["step_hash", "task_id", "status", "attempt", "run_id"]).to_pylist()
    prog = (read_progress(run_dir, run["run_id"]) or {}).get("steps", {})
    out = []
    for s in steps:
        mine = [r for r in rows if r["step_hash"] == s["hash"]]
        done = {r["task_id"] for r in mine if r["status"] == "done"}
        tries = Counter(r["task_id"] for r in mine if r["status"] == "failed" and r["run_id"] == run["run_id"])
        failed = {t for t, n in tries.items() if t not in done and n >= max_attempts}
        retrying = {t for t in tries if t not in done and t not in failed}
        batches = [b for b in prog.values() if b["step"] == s["step"]]
        total = sum(b["tasks"] for b in batches) if batches else None
        if total is not None or run["status"] != "running":
            total = max(total or 0, len(done | failed)) or None
        if run["status"] != "running":
            state = "failed" if failed else "done" if done else "not run"
        elif not batches:
            state = "not started"
        else:
            state = "done" if all(b.get("closed") for b in batches) else "running"
        pending = None if total is None else max(total - len(done) - len(failed), 0)
        out.append({"step": s["step"], "name": s["name"], "kind": s["kind"], "state": state, "tasks": total,
                    "done": len(done), "failed": len(failed), "retrying": len(retrying), "pending": pending})
    return out


def stage_table(run_dir: str, tasks=None) -> tuple[dict, list[dict]]:
    """(latest run record, one row per stage in pipeline order). `tasks`: the task rows, when
    the caller has read them already (`read_tasks`)."""
    run = latest_run(run_dir)
    steps = json.loads(run["steps"])
    hashes = {s["hash"]: s for s in steps}
    rows = [r for r in (tasks if tasks is not None else read_tasks(run_dir)).to_pylist() if r["step_hash"] in hashes]

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
    lineage = _json(run.get("lineage")) or {}
    if lineage:
        lines += ["", "built on:"]
        tok = lineage.get("tokenizer") or {}
        if tok:
            lines.append(f"  tokenizer {(tok.get('sha256') or '-')[:16]} from {tok.get('from')}")
        for earlier, n in (lineage.get("dedup_against") or {}).items():
            lines.append(f"  dedup against {earlier}: {n} document(s) of this run removed as already there")
    for note in _json(run.get("notes")) or []:
        lines.append(f"warning: {note}")
    if run.get("failures"):
        lines += ["", "failed tasks:"]
        lines += [f"  {f['task_id']} ({', '.join(f['inputs'] or [])}): {f['error']}" for f in run["failures"]]
    return "\n".join(lines)


def _json(value):
    """A JSON field of the run record (absent in records written before it existed)."""
    if value is None or not isinstance(value, str):
        return value
    return json.loads(value)


def format_steps(status: list[dict]) -> str:
    head = f"{'step':<5}{'name':<48}{'state':>14}{'done':>7}{'failed':>7}{'pending':>9}{'tasks':>7}"
    lines = [head, "-" * len(head)]
    for s in status:
        name = s["name"] if len(s["name"]) <= 46 else s["name"][:45] + "…"
        pending = "?" if s["pending"] is None else s["pending"]
        tasks = "?" if s["tasks"] is None else s["tasks"]
        extra = f"  ({s['retrying']} retrying)" if s["retrying"] else ""
        lines.append(f"{s['step']:<5}{name:<48}{s['state']:>14}{s['done']:>7}{s['failed']:>7}{pending:>9}{tasks:>7}{extra}")
    if any(s["pending"] is None for s in status):
        lines.append("(?: the step has not started, so its task count is not known yet)")
    return "\n".join(lines)


def describe(run_dir: str) -> str:
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run, table = stage_table(run_dir)
    text = format_table(run, table)
    if run["status"] == "running":
        text = f"run {run['run_id']} is in progress; steps so far:\n{format_steps(step_status(run_dir, run))}\n\n{text}"
    return text


def describe_json(run_dir: str) -> str:
    """`inspect --json`: the run record (config parsed), steps with tasks done/pending, stages."""
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run, table = stage_table(run_dir)
    parsed = [k for k in ("config", "versions", "argv", "lineage", "notes") if k in run]  # JSON in the record
    out = {k: v for k, v in run.items() if k not in ("steps", *parsed)}
    for k in parsed:
        out[k] = json.loads(run[k]) if run.get(k) else None
    out["steps"] = step_status(run_dir, run)
    out["stages"] = table
    return json.dumps(out, indent=2, default=str)


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
