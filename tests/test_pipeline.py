"""End to end: both executors on the real WARCs, resume, retries, config changes, the CLI."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter

import duckdb
import pyarrow.parquet as pq
import pytest

from helpers import make_jsonl
from tokenmill import cli, stages
from tokenmill.config import from_dict
from tokenmill.manifests import read_runs, read_tasks
from tokenmill.manifests.inspect import stage_table
from tokenmill.pipeline import ConfigChanged, run_pipeline
from tokenmill.pipeline.executors import LocalExecutor, RayExecutor, Task


def config(inputs, out, kind="local", stages=None, **sections):
    """The default recipe unless `stages` is given (mechanics tests use [extract] on tiny text)."""
    data = {"input": {"paths": inputs}, "output": str(out), "executor": {"kind": kind, "max_attempts": 1}, **sections}
    if stages is not None:
        data["stages"] = stages
    return from_dict(data, "test.yaml")


def docs_of(run_dir):
    return sorted(pq.read_table(run_dir / "docs").to_pylist(), key=lambda r: r["id"])


def checksums(run_dir):
    from tokenmill.storage import sha256_file

    return {p.name: sha256_file(str(p)) for p in sorted((run_dir / "docs").glob("*.parquet"))}


@pytest.fixture(scope="module")
def local_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    summary = run_pipeline(config([str(shared_data / "warc/*.warc.gz")], out), progress=False)
    return out, summary


def test_local_run_on_real_warcs_writes_the_contract(local_run):
    out, summary = local_run
    assert summary.ok and summary.failed == 0
    parts = sorted(p.name for p in (out / "docs").glob("*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(6)]
    docs = docs_of(out)
    assert len(docs) > 20
    for col in ("id", "url", "text", "source", "source_offset", "warc_record_id", "warc_date", "language"):
        assert all(d[col] is not None for d in docs), col
    run, full = stage_table(str(out))
    assert run["status"] == "done" and json.loads(run["versions"])["tokenmill"]
    table = [r for r in full if not r["global"]]  # document stages; global fan-out tasks are listed apart
    assert [r["stage"] for r in table] == ["ingest", *[s for s in stages.available() if s != "tokenize"]]
    assert {"dedup.signatures", "dedup.pairs"} <= {r["stage"] for r in full if r["global"]}
    by_stage = {r["stage"]: r for r in table}
    for r in table:  # every input record is accounted for
        assert r["docs_in"] == r["docs_out"] + r["dropped"], r
    for a, b in zip(table, table[1:]):
        assert a["docs_out"] == b["docs_in"], (a["stage"], b["stage"])
    assert by_stage["ingest"]["drops"]["truncated_record"] == 1
    assert table[-1]["docs_out"] == len(docs)
    # every dropped document is kept, with its reason, under removed/<stage>/
    for r in table[1:]:
        if r["dropped"]:
            removed = pq.read_table(out / "removed" / r["stage"]).to_pylist()
            assert Counter(d["reason"] for d in removed) == Counter(r["drops"]), r["stage"]
            assert all(d["stage"] == r["stage"] and d["id"] for d in removed)
    assert by_stage["language"]["dropped"] > 0 and by_stage["quality"]["dropped"] > 0
    # the manifest is plain Parquet for DuckDB
    n = duckdb.sql(f"SELECT count(DISTINCT task_id) FROM '{out}/manifest/tasks/*.parquet' "
                   "WHERE status = 'done' AND stage = 'extract'").fetchall()[0][0]
    assert n == 6


def test_rerun_skips_done_tasks_and_changes_nothing(local_run, shared_data):
    out, _ = local_run
    before = checksums(out)
    summary = run_pipeline(config([str(shared_data / "warc/*.warc.gz")], out), progress=False)
    assert summary.ok and summary.done == 0 and summary.skipped > 6
    assert checksums(out) == before


def test_ray_executor_gives_the_same_documents(local_run, shared_data, tmp_path, ray_session):
    out, _ = local_run
    ray_out = tmp_path / "ray"
    summary = run_pipeline(config([str(shared_data / "warc/*.warc.gz")], ray_out, kind="ray", ), progress=False)
    assert summary.ok
    assert [(d["id"], d["text"]) for d in docs_of(ray_out)] == [(d["id"], d["text"]) for d in docs_of(out)]
    workers = set(read_tasks(str(ray_out)).column("worker").to_pylist())
    assert workers and all(":" in w for w in workers)


def _jsonl_inputs(tmp_path, n=3):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(n):
        make_jsonl(d / f"docs-{i}.jsonl", [{"id": f"{i}-{j}", "text": f"document {j} of file {i}"} for j in range(5)])
    return d


def test_resume_after_a_failed_task_gives_the_uninterrupted_result(tmp_path):
    d = _jsonl_inputs(tmp_path)
    good = (d / "docs-1.jsonl").read_bytes()
    (d / "docs-1.jsonl").unlink()
    (d / "docs-1.jsonl.gz").write_bytes(b"not gzip at all")  # unreadable until "the network comes back"
    files = [str(d / "docs-0.jsonl"), str(d / "docs-1.jsonl.gz"), str(d / "docs-2.jsonl")]
    out = tmp_path / "run"
    first = run_pipeline(config(files, out, stages=["extract"]), progress=False)
    assert not first.ok and first.failed == 1 and first.done == 2
    assert "docs-1.jsonl.gz" in first.failures[0]["inputs"][0] and "gzip" in first.failures[0]["error"].lower()
    assert "failed" in first.one_line()

    (d / "docs-1.jsonl.gz").write_bytes(gzip.compress(good))
    second = run_pipeline(config(files, out, stages=["extract"]), progress=False)
    assert second.ok and second.done == 1 and second.skipped == 2

    fresh = tmp_path / "fresh"
    assert run_pipeline(config(files, fresh, stages=["extract"]), progress=False).ok
    assert checksums(out) == checksums(fresh)
    statuses = read_tasks(str(out)).select(["task_id", "status"]).to_pylist()
    assert {"task_id": "s00-00001", "status": "failed"} in statuses and {"task_id": "s00-00001", "status": "done"} in statuses
    assert [r["status"] for r in sorted(read_runs(str(out)).to_pylist(), key=lambda r: r["started"])] == ["failed", "done"]


def test_changed_config_is_refused_then_redone_with_force(tmp_path):
    d = _jsonl_inputs(tmp_path, 2)
    out = tmp_path / "run"
    steps = ["extract", "dedup"]  # a map step, a global step, and the map step after it
    assert run_pipeline(config([str(d / "*.jsonl")], out, stages=steps), progress=False).ok
    with pytest.raises(ConfigChanged, match="step 0"):
        run_pipeline(config([str(d / "*.jsonl")], out, stages=steps, extract={"timeout_s": 3}), progress=False)
    redo = run_pipeline(config([str(d / "*.jsonl")], out, stages=steps, extract={"timeout_s": 3}), force=True,
                        progress=False)
    assert redo.ok and redo.done > 2 and redo.skipped == 0, "every step after the change is redone"
    run, table = stage_table(str(out))
    assert table[0]["tasks"] == 2, "inspect counts only the current config's rows"


def test_fewer_inputs_leave_no_stale_parts(tmp_path):
    d = _jsonl_inputs(tmp_path, 3)
    out = tmp_path / "run"
    assert run_pipeline(config([str(d / "*.jsonl")], out, stages=["extract"]), progress=False).ok
    (d / "docs-2.jsonl").unlink()
    assert run_pipeline(config([str(d / "*.jsonl")], out, stages=["extract"]), progress=False).ok
    assert sorted(p.name for p in (out / "docs").glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert len(docs_of(out)) == 10


def flaky(marker: str, value: int) -> int:
    """Fails the first time it is called for `marker` (a file), then succeeds."""
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise OSError("transient failure")
    return value


def make_executor_for_test(kind: str, request, max_attempts: int):
    if kind == "ray":
        request.getfixturevalue("ray_session")
        return RayExecutor(max_attempts=max_attempts, backoff_s=0.01)
    return LocalExecutor(max_attempts=max_attempts)


def broken(value: int) -> int:
    assert value > 0, "value must be positive"
    return value


def worker_env(_: int) -> dict:
    import os

    import ray

    env = {k: os.environ.get(k, "") for k in ("RAYON_NUM_THREADS", "PYTHONPATH")}
    env["task_env_vars"] = (ray.get_runtime_context().runtime_env or {}).get("env_vars", {})
    return env


def test_ray_tasks_get_as_many_rust_threads_as_cpus(ray_session):
    ex = RayExecutor()
    assert ex.max_task_cpus == 2  # the session's Ray has 2 CPUs
    got = {}
    ex.run([Task("one", worker_env, (1,)), Task("two", worker_env, (2,), cpus=2)],
           lambda a: got.__setitem__(a.task.task_id, a.result))
    assert got["one"]["RAYON_NUM_THREADS"] == "1" and got["two"]["RAYON_NUM_THREADS"] == "2"
    # the job's own runtime_env (here: PYTHONPATH for the test helpers) is kept, not replaced
    assert all("tests" in g["PYTHONPATH"] for g in got.values())
    # a one-CPU task carries no runtime_env of its own (a new worker for it costs ~1 s); several CPUs do
    assert "RAYON_NUM_THREADS" not in got["one"]["task_env_vars"]
    assert got["two"]["task_env_vars"].get("RAYON_NUM_THREADS") == "2"


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_errors_in_the_data_are_not_retried(kind, request):
    attempts = []
    make_executor_for_test(kind, request, max_attempts=3).run([Task("t", broken, (-1,))], attempts.append)
    assert [(a.task.attempt, a.ok, a.final) for a in attempts] == [(1, False, True)]
    assert "value must be positive" in attempts[0].error


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_failed_attempts_are_retried_and_reported(tmp_path, kind, request):
    ex = make_executor_for_test(kind, request, max_attempts=2)
    attempts = []
    ex.run([Task("t1", flaky, (str(tmp_path / "m1"), 7)), Task("t2", flaky, (str(tmp_path / "m2"), 8))], attempts.append)
    summary = sorted((a.task.task_id, a.task.attempt, a.ok, a.final) for a in attempts)
    assert summary == [("t1", 1, False, False), ("t1", 2, True, True), ("t2", 1, False, False), ("t2", 2, True, True)]
    assert sorted(a.result for a in attempts if a.ok) == [7, 8]
    assert all("transient failure" in a.error for a in attempts if not a.ok)


def test_cli_run_and_inspect(tmp_path, capsys):
    d = _jsonl_inputs(tmp_path, 2)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"input: {{paths: ['{d}/*.jsonl']}}\noutput: {tmp_path / 'run'}\nexecutor: {{kind: local}}\n"
                   "stages: [extract]\n")
    assert cli.main(["run", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ingest" in out and "done" in out
    assert cli.main(["inspect", str(tmp_path / "run")]) == 0
    table = capsys.readouterr().out
    assert "docs in" in table and "extract" in table

    shutil.rmtree(tmp_path / "run")
    (d / "docs-0.jsonl").rename(d / "docs-0.jsonl.gz")  # not gzip: that task fails for good
    cfg.write_text(f"input: {{paths: ['{d}/*.jsonl*']}}\noutput: {tmp_path / 'run'}\n"
                   "executor: {kind: local, max_attempts: 1}\nstages: [extract]\n")
    assert cli.main(["run", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 task(s) failed for good" in err and "docs-0.jsonl.gz" in err


def test_fsspec_urls_for_input_and_output(tmp_path):
    import fsspec

    mem = fsspec.filesystem("memory")
    for i in range(2):
        with mem.open(f"/crawl/docs-{i}.jsonl", "w") as f:
            f.write("\n".join(json.dumps({"id": f"{i}-{j}", "text": f"text {j}"}) for j in range(3)))
    summary = run_pipeline(config(["memory://crawl/*.jsonl"], "memory://runs/x", stages=["extract"]), progress=False)
    assert summary.ok and summary.done == 2
    assert sorted(mem.ls("/runs/x/docs", detail=False)) == ["/runs/x/docs/part-00000.parquet", "/runs/x/docs/part-00001.parquet"]
    run, table = stage_table("memory://runs/x")
    assert table[0]["docs_out"] == 6 and run["status"] == "done"


def test_resume_inside_the_dedup_step_reuses_done_tasks(tmp_path):
    """Interrupted after dedup's first fan-outs: the rerun reuses them and ends identical."""
    d = tmp_path / "in"
    d.mkdir()
    bases = [" ".join(f"{w}{i} river city study water sea" for i in range(60)) for w in ("alpha", "omega")]
    for f in range(2):
        make_jsonl(d / f"docs-{f}.jsonl", [{"id": f"{f}-{j}", "text": bases[j % 2] + f" file {f} copy {j}"}
                                           for j in range(4)])
    files = [str(d / "*.jsonl")]
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    assert run_pipeline(config(files, fresh, stages=["dedup"]), progress=False).ok
    assert run_pipeline(config(files, out, stages=["dedup"]), progress=False).ok
    # forget everything after dedup's band step, as if the driver had died there
    tasks_dir = out / "manifest" / "tasks"
    late = [p for p in tasks_dir.iterdir() if not any(k in p.name for k in ("s00-", "dedup.signatures", "dedup.bands"))]
    assert late
    for p in late:
        p.unlink()
    shutil.rmtree(out / "docs")
    again = run_pipeline(config(files, out, stages=["dedup"]), progress=False)
    assert again.ok and again.skipped >= 6 and again.done >= 3
    assert checksums(out) == checksums(fresh)
    kept = docs_of(out)
    assert [d["id"] for d in kept] == ["0-0", "0-1"], "two texts, four near-copies each: the first of each survives"
