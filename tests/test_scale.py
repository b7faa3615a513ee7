"""The manifest at scale: a step's one-file-per-attempt manifest is compacted into one file when the
step ends, crash-safely, and resume, `inspect`, `inspect --failed`, `verify` and DuckDB read it.
(bench/driver_scale.py measures the driver at 1,000 - 90,000 inputs; the slow test runs it at 2,000.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers import make_jsonl, run_cli
from tokenmill.manifests import read_tasks
from tokenmill.manifests.store import COMPACT_MIN_FILES

ROOT = Path(__file__).resolve().parent.parent
N = COMPACT_MIN_FILES + 20  # enough attempt files for the step to be compacted


def small_inputs(tmp: Path, n: int = N) -> Path:
    d = tmp / "in"
    d.mkdir()
    for i in range(n):
        make_jsonl(d / f"doc-{i:04d}.jsonl", [{"id": f"d{i}", "text": f"Document {i}: mail user{i}@example.com now."}])
    cfg = tmp / "c.json"
    cfg.write_text(json.dumps({"input": {"paths": [f"{d}/*.jsonl"]}, "output": str(tmp / "run"),
                               "executor": {"kind": "local"}, "stages": ["pii"]}))
    return cfg


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    cfg = small_inputs(tmp)
    r = run_cli("run", cfg, "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return cfg, tmp / "run"


def task_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "manifest" / "tasks").glob("*.parquet"))


def stage_line(text: str, stage: str) -> list[str]:
    """The words of `inspect`'s row for `stage` (stage, tasks, failed, docs in, ...)."""
    return next((line.split() for line in text.splitlines() if line.split()[:1] == [stage]), [])


def test_a_step_of_many_attempt_files_ends_as_one_file_every_reader_reads(compacted):
    cfg, run = compacted
    files = task_files(run)
    assert len(files) == 1 and files[0].startswith("s00."), files  # 120 attempt files -> 1
    rows = read_tasks(str(run)).to_pylist()
    assert len({r["task_id"] for r in rows}) == N and all(r["status"] == "done" for r in rows)
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"SELECT count(DISTINCT task_id) FROM '{run}/manifest/tasks/*.parquet'").fetchall()[0][0]
    assert n == N
    i = run_cli("inspect", run)
    assert i.returncode == 0 and stage_line(i.stdout, "pii")[:2] == ["pii", str(N)], i.stdout
    f = run_cli("inspect", run, "--failed")
    assert f.returncode == 0 and "no failed tasks" in f.stdout, f.stdout + f.stderr
    v = run_cli("verify", run)
    assert v.returncode == 0, v.stdout + v.stderr
    again = run_cli("run", cfg, "--no-progress")
    assert again.returncode == 0 and f"0 tasks run, {N} already done" in again.stdout, again.stdout + again.stderr


def test_a_crash_between_compacting_and_deleting_counts_every_row_once(compacted, tmp_path):
    """Both the compacted file and the attempt files it came from: read once, and the next run's
    compaction leaves one file again."""
    cfg, run = compacted
    tasks = run / "manifest" / "tasks"
    table = pq.read_table(tasks / task_files(run)[0])
    # put the attempt files back, as if the driver died right after writing the compacted file
    for r in table.to_pylist():
        name = f"{r['task_id']}.{r['run_id']}.a{r['attempt']}.parquet"
        pq.write_table(table.filter(pc.equal(table["task_id"], r["task_id"])), tasks / name)
    assert len(task_files(run)) == N + 1
    assert read_tasks(str(run)).num_rows == table.num_rows
    i = run_cli("inspect", run)
    assert i.returncode == 0 and stage_line(i.stdout, "pii")[:2] == ["pii", str(N)], i.stdout
    again = run_cli("run", cfg, "--no-progress")
    assert again.returncode == 0 and f"0 tasks run, {N} already done" in again.stdout, again.stdout + again.stderr
    assert len(task_files(run)) == 1
    assert read_tasks(str(run)).num_rows == table.num_rows
    assert run_cli("verify", run).returncode == 0


def test_small_steps_are_left_as_attempt_files(tmp_path):
    cfg = small_inputs(tmp_path, 5)
    assert run_cli("run", cfg, "--no-progress").returncode == 0
    assert len(task_files(tmp_path / "run")) == 5


@pytest.mark.slow
def test_driver_scale_bench_at_2000_inputs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "driver_scale.py"), "--sizes", "2000",
                        "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    print(r.stdout[-2000:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
