"""`tokenmill verify RUN`: every output against the manifests, every count against the files.

In: a run directory. Out: a list of problems, one line each naming the file (empty: all good).
Checked, for the steps of the latest invocation:
  - each done task's outputs exist and have the sha256 its manifest row recorded (scratch files
    under RUN/work/ are checked when present: global steps may delete theirs once used);
  - each document stage's counts add up: docs_in == docs_out + sum(drops);
  - each docs part has as many rows as its task wrote; no part-*.parquet that no task wrote;
  - tokens/manifest.parquet: each shard exists, has its sha256, and its header's token count
    and dtype are the manifest's.
Reading every output once: about as long as sha256 over the run's bytes (~1 GB/s here).
"""

from __future__ import annotations

import json

from tokenmill import storage
from tokenmill.manifests.store import read_runs, read_tasks


def _latest_done(run_dir: str, step_hashes: set[str]) -> dict[str, list[dict]]:
    """task_id -> the rows of its latest done attempt (one row per stage) among the given steps."""
    best: dict[str, tuple] = {}
    rows: dict[tuple, list[dict]] = {}
    for r in read_tasks(run_dir).to_pylist():
        if r["status"] != "done" or r["step_hash"] not in step_hashes:
            continue
        attempt = (r["run_id"], r["attempt"])
        rows.setdefault((r["task_id"], attempt), []).append(r)
        if r["task_id"] not in best or r["finished"] > best[r["task_id"]][1]:
            best[r["task_id"]] = (attempt, r["finished"])
    return {t: rows[(t, a)] for t, (a, _) in best.items()}


def verify_run(run_dir: str) -> list[str]:
    run_dir = run_dir.rstrip("/")
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    runs = read_runs(run_dir).to_pylist()
    if not runs:
        raise FileNotFoundError(f"{run_dir}: no run record in manifest/runs")
    run = max(runs, key=lambda r: (r["started"], r["run_id"]))
    steps = json.loads(run["steps"])
    problems: list[str] = []
    if run["status"] != "done":
        problems.append(f"{run_dir}: the latest run ({run['run_id']}) ended {run['status']}; rerun it to finish")
    tasks = _latest_done(run_dir, {s["hash"] for s in steps})
    map_hashes = {s["hash"] for s in steps if s["kind"] == "map"}
    work = storage.join(run_dir, "work") + "/"
    written: set[str] = set()
    for task_id, rows in sorted(tasks.items()):
        r0 = rows[0]
        outputs, sums = r0["outputs"] or [], r0["checksums"] or []
        written.update(outputs)
        for out, want in zip(outputs, sums + [None] * (len(outputs) - len(sums))):
            if not storage.exists(out):
                if not out.startswith(work):
                    problems.append(f"{out}: missing (written by task {task_id})")
                continue
            if want and storage.sha256_file(out) != want:
                problems.append(f"{out}: sha256 differs from the manifest's (task {task_id})")
        if r0["step_hash"] in map_hashes:
            for r in rows:
                drops = sum(dict(r["drops"] or []).values())
                if (r["docs_in"] or 0) != (r["docs_out"] or 0) + drops:
                    problems.append(f"{task_id} ({r['stage']}): docs_in {r['docs_in']} != docs_out {r['docs_out']} "
                                    f"+ dropped {drops}")
            if outputs and storage.exists(outputs[0]):
                n = storage.num_rows(outputs[0])
                if n != rows[-1]["docs_out"]:
                    problems.append(f"{outputs[0]}: {n} rows, the manifest says {rows[-1]['docs_out']} (task {task_id})")
    for d in ("docs", "removed", "work"):
        for part in storage.glob(storage.join(run_dir, d, "**", "part-*.parquet")):
            if part not in written and not part.startswith(storage.join(run_dir, "work", "dedup")):
                problems.append(f"{part}: no task of the latest run wrote this file")
    problems += verify_tokens(storage.join(run_dir, "tokens"))
    return problems


def verify_tokens(tokens_dir: str) -> list[str]:
    """Token shards against tokens/manifest.parquet (nothing to check when there is none)."""
    from tokenmill.tokenize.shards import MANIFEST, ShardError, read_header

    mpath = storage.join(tokens_dir, MANIFEST)
    if not storage.exists(mpath):
        return []
    problems = []
    for row in storage.read_table(mpath).to_pylist():
        path = storage.join(tokens_dir, row["shard"])
        if not storage.exists(path):
            problems.append(f"{path}: missing (listed in {mpath})")
            continue
        try:
            header = read_header(path)
        except ShardError as e:
            problems.append(f"{path}: {e}")
            continue
        if header.n_tokens != row["tokens"] or str(header.dtype) != row["dtype"]:
            problems.append(f"{path}: header says {header.n_tokens} {header.dtype} tokens, the manifest "
                            f"{row['tokens']} {row['dtype']}")
        if storage.sha256_file(path) != row["sha256"]:
            problems.append(f"{path}: sha256 differs from {mpath}")
    return problems
