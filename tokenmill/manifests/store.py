"""Manifest schemas, writers and readers. The driver is the only writer; each attempt of each
task is its own small file (`tasks/<task_id>.<run_id>.a<attempt>.parquet`), written atomically, so a
task counts as done exactly when its row is written. The run id is in the name: attempts of a
later (resumed) invocation never overwrite the record of an earlier one.

Compaction. A snapshot (90,000 WARCs) would leave hundreds of thousands of small files, and reading
them back costs ~3 ms each (resume, `inspect`, DuckDB). When a step ends, `compact_step` merges the
step's small files into one file per run id (`tasks/s<step>.<run_id>.parquet`, same schema), written
atomically first, and only then deletes the small ones: a crash in between leaves both, and
`read_tasks` drops the repeated rows (one row per task id, run id, attempt and stage). Steps of
fewer than `COMPACT_MIN_FILES` files are left as they are (they read fast). Measured here, 1,000
tasks: `read_tasks` 3.9 s over 1,000 files -> 0.16 s over 1; DuckDB 0.55 s -> 0.003 s."""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tokenmill import storage

log = logging.getLogger(__name__)

COMPACT_MIN_FILES = 100  # a step with fewer attempt files is not compacted
ROW_KEY = ["task_id", "run_id", "attempt", "stage"]  # one manifest row per task attempt and stage
_COMPACTED = re.compile(r"^s\d+\.[^.]+\.parquet$")  # s03.<run_id>.parquet (task files: s03-<...>.parquet)

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


class _Written:
    """The rows this process wrote, with the file each went to: compaction takes them from here
    rather than reading the files back. Kept as few large Arrow tables (~1 KB per task), not one
    small table per file (~30 KB each: 2.7 GB for 90,000 tasks)."""

    MERGE_EVERY = 1024

    def __init__(self):
        self.merged: list[pa.Table] = []
        self.pending: list[pa.Table] = []

    def add(self, url: str, table: pa.Table) -> None:
        self.pending.append(table.append_column("_file", pa.array([url] * table.num_rows, pa.string())))
        if len(self.pending) >= self.MERGE_EVERY:
            self.merged.append(pa.concat_tables(self.pending).combine_chunks())
            self.pending = []

    def take(self, urls: list[str]) -> tuple[pa.Table | None, set[str]]:
        """(the rows written to `urls`, the urls they cover), removed from the buffer."""
        tables = self.merged + self.pending
        if not tables or not urls:
            return None, set()
        all_rows = pa.concat_tables(tables)
        mask = pc.is_in(all_rows["_file"], value_set=pa.array(urls, pa.string()))
        mine = all_rows.filter(mask)
        rest = all_rows.filter(pc.invert(mask))
        self.merged, self.pending = ([rest.combine_chunks()] if rest.num_rows else []), []
        return mine.drop_columns(["_file"]), set(mine["_file"].to_pylist())


_WRITTEN = _Written()


def write_task_rows(run_dir: str, run_id: str, task_id: str, attempt: int, rows: list[dict]) -> str:
    url = storage.join(tasks_dir(run_dir), f"{task_id}.{run_id}.a{attempt}.parquet")
    table = pa.Table.from_pylist([_fill(r) for r in rows], schema=TASK_SCHEMA)
    with storage.atomic_write(url) as f:
        pq.write_table(table, f)
    _WRITTEN.add(url, table)
    return url


def compact_step(run_dir: str, step: int, min_files: int = COMPACT_MIN_FILES) -> int:
    """Merge step `step`'s attempt files into one file per run id (see the module docstring).
    Returns how many small files were merged (0: fewer than `min_files`, left as they are)."""
    d = tasks_dir(run_dir)
    small = storage.glob(storage.join(d, f"s{step:02d}-*.parquet"))
    if len(small) < min_files:
        _WRITTEN.take(small)
        return 0
    by_run: dict[str, list[str]] = defaultdict(list)
    for url in small:  # <task_id>.<run_id>.a<attempt>.parquet; a task id may hold dots, a run id not
        parts = url.rsplit("/", 1)[-1].rsplit(".", 3)
        if len(parts) == 4 and parts[2].startswith("a"):
            by_run[parts[1]].append(url)
    for run_id, urls in sorted(by_run.items()):
        target = storage.join(d, f"s{step:02d}.{run_id}.parquet")
        known, covered = _WRITTEN.take(urls)
        unknown = [u for u in urls if u not in covered]  # another process's (a crashed run's) files
        tables = (([storage.read_table(target)] if storage.exists(target) else []) + ([known] if known else [])
                  + _read_all(unknown))
        merged = _dedupe(pa.concat_tables([t.select(TASK_SCHEMA.names).cast(TASK_SCHEMA) for t in tables]))
        with storage.atomic_write(target) as f:  # first the merged file (complete, or absent) ...
            pq.write_table(merged, f, compression="zstd")
        _remove_all(urls)  # ... then the small ones: a crash between leaves rows twice, read once
        log.info("manifest: step %d of run %s: %d attempt files compacted into %s", step, run_id, len(urls), target)
    return sum(len(u) for u in by_run.values())


def _read_all(urls: list[str]) -> list[pa.Table]:
    """Many small Parquet files, read by 16 threads (object stores: one request each)."""
    if len(urls) < 8:
        return [storage.read_table(u) for u in urls]
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(storage.read_table, urls))


def _remove_all(urls: list[str]) -> None:
    if not urls:
        return
    fs, _ = storage.fs_and_path(urls[0])
    paths = [storage.fs_and_path(u)[1] for u in urls]
    if storage.is_local(fs):
        for p in paths:
            fs.rm_file(p)
    else:
        fs.rm(paths)  # object stores: batched deletes (S3: 1,000 keys a request)


def _dedupe(table: pa.Table) -> pa.Table:
    """The first row of each (task_id, run_id, attempt, stage), in the table's order."""
    idx = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = idx.group_by(ROW_KEY, use_threads=False).aggregate([("_i", "min")])["_i_min"]
    return table.take(pc.take(first, pc.sort_indices(first))) if len(first) < table.num_rows else table


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


def _read_dir(url: str, schema: pa.Schema) -> tuple[pa.Table, list[str]]:
    files = [f for f in storage.glob(storage.join(url, "*.parquet"))]
    if not files:
        return schema.empty_table(), files
    return pa.concat_tables(_read_all(files), promote_options="default"), files


def read_tasks(run_dir: str) -> pa.Table:
    """All task rows of a run directory (every attempt of every invocation), each once: a row both
    in a compacted file and in the attempt file it came from (a crash mid-compaction) counts once."""
    table, files = _read_dir(tasks_dir(run_dir), TASK_SCHEMA)
    if any(_COMPACTED.match(f.rsplit("/", 1)[-1]) for f in files):
        return _dedupe(table)
    return table


def read_runs(run_dir: str) -> pa.Table:
    return _read_dir(storage.join(run_dir, "manifest", "runs"), RUN_SCHEMA)[0]
