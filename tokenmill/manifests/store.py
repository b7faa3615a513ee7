"""Manifest schemas, writers and readers. The driver is the only writer; each attempt of each
task is its own small file (`tasks/<task_id>.<run_id>.a<attempt>.parquet`), written atomically, so a
task counts as done exactly when its file exists. The run id is in the name: attempts of a
later (resumed) invocation never overwrite the record of an earlier one."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage

COUNTS = pa.map_(pa.string(), pa.int64())
TASK_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),  # the invocation that ran this attempt
        ("step", pa.int32()),  # position of the step in the plan
        ("step_name", pa.string()),  # the step's parts, e.g. "ingest+extract+language+quality" or "dedup"
        ("step_hash", pa.string()),  # hash of the step's stage configs and everything upstream
        ("task_id", pa.string()),
        ("shard", pa.int32()),  # shard index (or sub-task index of a global step)
        ("stage", pa.string()),  # the stage this row counts; null on a failed attempt
        ("status", pa.string()),  # done | failed
        ("attempt", pa.int32()),
        ("inputs", pa.list_(pa.string())),
        # what the task consumed: input file identities (size, mtime / ETag) or the checksums of the
        # upstream outputs it read; a rerun skips the task only when this and step_hash match
        ("input_key", pa.string()),
        ("outputs", pa.list_(pa.string())),
        ("checksums", pa.list_(pa.string())),  # sha256 of each output, in the order of `outputs`
        ("output_ids", pa.list_(pa.string())),  # size + mtime (or ETag) of each output when written
        ("docs_in", pa.int64()),
        ("docs_out", pa.int64()),
        ("drops", COUNTS),  # reason -> documents (or records) dropped by this stage
        ("counters", COUNTS),  # other counts (replacements, clusters, ...)
        ("bytes_out", pa.int64()),
        ("seconds", pa.float64()),  # the whole task
        ("stage_seconds", pa.float64()),  # this stage's share
        ("worker", pa.string()),  # host:pid
        ("error", pa.string()),
        ("checksum", pa.string()),  # sha256 of the task's main output
        ("started", pa.timestamp("ms", tz="UTC")),
        ("finished", pa.timestamp("ms", tz="UTC")),
    ]
)

RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("status", pa.string()),  # running | done | failed
        ("started", pa.timestamp("ms", tz="UTC")),
        ("finished", pa.timestamp("ms", tz="UTC")),
        ("config", pa.string()),  # resolved config (JSON), every default filled in
        ("config_hash", pa.string()),
        ("config_file", pa.string()),
        ("steps", pa.string()),  # JSON list of {step, name, kind, hash}
        ("versions", pa.string()),  # JSON: python and package versions
        ("executor", pa.string()),
        ("tasks_done", pa.int64()),
        ("tasks_failed", pa.int64()),
        ("tasks_skipped", pa.int64()),  # done in an earlier invocation (resume)
        ("argv", pa.string()),
        # JSON: what this run built on — {"tokenizer": {"sha256", "from"}, "dedup_against": {run: removed}}
        ("lineage", pa.string()),
        ("notes", pa.string()),  # JSON list of warnings (e.g. "no document was kept: ...")
    ]
)


def tasks_dir(run_dir: str) -> str:
    return storage.join(run_dir, "manifest", "tasks")


def write_task_rows(run_dir: str, run_id: str, task_id: str, attempt: int, rows: list[dict]) -> str:
    url = storage.join(tasks_dir(run_dir), f"{task_id}.{run_id}.a{attempt}.parquet")
    table = pa.Table.from_pylist([_fill(r) for r in rows], schema=TASK_SCHEMA)
    with storage.atomic_write(url) as f:
        pq.write_table(table, f)
    return url


def _fill(row: dict) -> dict:
    out = {name: row.get(name) for name in TASK_SCHEMA.names}
    for key in ("drops", "counters"):
        if out[key] is not None and isinstance(out[key], dict):
            out[key] = sorted(out[key].items())
    return out


def write_run(run_dir: str, record: dict) -> str:
    url = storage.join(run_dir, "manifest", "runs", f"{record['run_id']}.parquet")
    rec = dict(record)
    for key in ("config", "steps", "versions", "lineage", "notes"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            rec[key] = json.dumps(rec[key], sort_keys=True, default=str)
    table = pa.Table.from_pylist([{n: rec.get(n) for n in RUN_SCHEMA.names}], schema=RUN_SCHEMA)
    with storage.atomic_write(url) as f:
        pq.write_table(table, f)
    return url


def _read_dir(url: str, schema: pa.Schema) -> pa.Table:
    files = [f for f in storage.glob(storage.join(url, "*.parquet"))]
    if not files:
        return schema.empty_table()
    tables = []
    for f in files:
        tables.append(storage.read_table(f))
    return pa.concat_tables(tables, promote_options="default")


def read_tasks(run_dir: str) -> pa.Table:
    """All task rows of a run directory (every attempt of every invocation)."""
    return _read_dir(tasks_dir(run_dir), TASK_SCHEMA)


def read_runs(run_dir: str) -> pa.Table:
    return _read_dir(storage.join(run_dir, "manifest", "runs"), RUN_SCHEMA)
