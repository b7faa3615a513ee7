"""The same corpus, whatever happens: resume after changes, checksums checked, verify, crash-safe
files, the partial-failure policy. Each test failed before its fix (see the docstrings)."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq

from helpers import make_jsonl, run_cli
from tokenmill.config import from_dict
from tokenmill.pipeline import run_pipeline
from tokenmill.storage import sha256_file

ROOT = Path(__file__).resolve().parent.parent
WORDS = "river city study water sea harbour bridge valley forest council".split()


def text(n: int) -> str:
    """A distinct 60-word text per n (near-duplicates only when n is equal)."""
    return " ".join(f"{WORDS[(n * 7 + i) % len(WORDS)]}{n}x{i}" for i in range(60))


def cfg(paths, out, stages=("dedup",), **executor):
    return from_dict({"input": {"paths": [str(p) for p in paths]}, "output": str(out),
                      "executor": {"kind": "local", "max_attempts": 1, **executor}, "stages": list(stages)}, "t.yaml")


def snapshot(run_dir: Path) -> dict:
    """What a user reads: every docs part's bytes and every token shard's bytes."""
    files = sorted((run_dir / "docs").glob("part-*.parquet")) + sorted((run_dir / "tokens").glob("*.bin"))
    return {p.relative_to(run_dir).as_posix(): sha256_file(str(p)) for p in files}


def doc_ids(run_dir: Path) -> list[str]:
    return sorted(pq.read_table(run_dir / "docs", columns=["id"]).column("id").to_pylist())


def two_files(d: Path) -> None:
    d.mkdir(exist_ok=True)
    make_jsonl(d / "a.jsonl", [{"id": f"a{j}", "text": text(j)} for j in range(4)])
    make_jsonl(d / "b.jsonl", [{"id": f"b{j}", "text": text(10 + j)} for j in range(4)])


def test_resume_after_a_new_input_equals_a_clean_run(tmp_path):
    """Before: the rerun said "5 tasks run, 13 already done" and kept the copy in docs/."""
    d = tmp_path / "in"
    two_files(d)
    out = tmp_path / "run"
    assert run_pipeline(cfg([d / "*.jsonl"], out), progress=False).ok
    make_jsonl(d / "c.jsonl", [{"id": "c0", "text": text(2)}, {"id": "c1", "text": text(99)}])  # c0 copies a2
    again = run_pipeline(cfg([d / "*.jsonl"], out), progress=False)
    clean = tmp_path / "clean"
    assert again.ok and run_pipeline(cfg([d / "*.jsonl"], clean), progress=False).ok
    assert "c0" not in doc_ids(out) and "c1" in doc_ids(out)
    assert snapshot(out) == snapshot(clean)
    assert again.skipped >= 2, "the reads of a.jsonl and b.jsonl are not redone"


def test_an_edited_input_file_is_read_again(tmp_path):
    d = tmp_path / "in"
    two_files(d)
    out = tmp_path / "run"
    assert run_pipeline(cfg([d / "*.jsonl"], out, stages=["pii"]), progress=False).ok
    make_jsonl(d / "b.jsonl", [{"id": "b9", "text": "mail me at someone@example.com"}])
    again = run_pipeline(cfg([d / "*.jsonl"], out, stages=["pii"]), progress=False)
    assert again.ok and again.done == 1 and again.skipped == 1
    assert "b9" in doc_ids(out) and "b0" not in doc_ids(out)


def test_a_damaged_output_is_redone_and_verify_names_it(tmp_path):
    """Before: a flipped byte or a deleted part was skipped as done on the next run."""
    d = tmp_path / "in"
    two_files(d)
    out = tmp_path / "run"
    conf = tmp_path / "c.yaml"
    conf.write_text(json.dumps({"input": str(d / "*.jsonl"), "output": str(out), "stages": ["dedup", "tokenize"],
                                "executor": {"kind": "local"}, "tokenize": {"vocab_size": 300}}))
    assert run_cli("run", conf, "--no-progress").returncode == 0
    clean = snapshot(out)
    assert run_cli("verify", out).returncode == 0

    part = out / "docs" / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    shard = sorted((out / "tokens").glob("*_train_*.bin"))[0]
    tok = bytearray(shard.read_bytes())
    tok[-1] ^= 0x01
    shard.write_bytes(bytes(tok))
    (out / "docs" / "part-00000.parquet").unlink()

    v = run_cli("verify", out)
    assert v.returncode == 1
    for name in ("part-00000.parquet", "part-00001.parquet", shard.name):
        assert name in v.stdout, v.stdout

    p = run_cli("run", conf, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "redone" in p.stdout and "part-00001.parquet does not match" in p.stderr
    assert snapshot(out) == clean
    assert run_cli("verify", out).returncode == 0


def test_partial_files_are_hidden_from_readers_and_removed_on_resume(tmp_path):
    """Before: temporaries were `part-00000.parquet.tmp-…` beside the parts; after a SIGKILL,
    pd.read_parquet(RUN/docs) and DuckDB's glob read them."""
    import duckdb
    import pandas as pd

    from tokenmill import storage

    d = tmp_path / "in"
    two_files(d)
    out = tmp_path / "run"
    assert run_pipeline(cfg([d / "*.jsonl"], out, stages=["pii"]), progress=False).ok
    tmp = storage.temp_name(str(out / "docs" / "part-00000.parquet"))
    Path(tmp).write_bytes(b"PAR1 half a file")  # what a killed writer leaves
    assert len(pd.read_parquet(out / "docs")) == 8
    assert duckdb.sql(f"SELECT count(*) FROM '{out}/docs/*.parquet'").fetchall()[0][0] == 8
    assert run_pipeline(cfg([d / "*.jsonl"], out, stages=["pii"]), progress=False).ok
    assert not Path(tmp).exists()


def test_failed_tasks_within_the_limit_then_retry_failed(tmp_path):
    d = tmp_path / "in"
    two_files(d)
    (d / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    out = tmp_path / "run"
    conf = tmp_path / "c.yaml"
    body = {"input": str(d / "*.jsonl*"), "output": str(out), "stages": ["dedup"],
            "executor": {"kind": "local", "max_attempts": 1}}
    conf.write_text(json.dumps({**body, "executor": {**body["executor"], "max_failed_tasks": 0}}))
    p = run_cli("run", conf, "--no-progress")
    assert p.returncode == 1 and "bad.jsonl.gz" in p.stderr

    conf.write_text(json.dumps({**body, "executor": {**body["executor"], "max_failed_tasks": 1}}))
    p = run_cli("run", conf, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "failed within executor.max_failed_tasks" in p.stdout
    f = run_cli("inspect", out, "--failed")
    assert f.returncode == 0 and "bad.jsonl.gz" in f.stdout and "gzip" in f.stdout.lower()
    assert len(doc_ids(out)) == 8

    p = run_cli("run", conf, "--no-progress")  # a plain rerun keeps the failure
    assert p.returncode == 0 and "1 task(s) failed" in p.stdout

    (d / "bad.jsonl.gz").write_bytes(gzip.compress(json.dumps({"id": "z", "text": text(50)}).encode()))
    p = run_cli("run", conf, "--no-progress", "--retry-failed")
    assert p.returncode == 0, p.stderr
    assert "task(s) failed" not in p.stdout
    clean = tmp_path / "clean"
    conf.write_text(json.dumps({**body, "output": str(clean)}))
    assert run_cli("run", conf, "--no-progress").returncode == 0
    assert doc_ids(out) == doc_ids(clean) and "z" in doc_ids(out)
    assert snapshot(out) == snapshot(clean)


def test_bad_max_failed_tasks_is_a_config_error(tmp_path):
    make_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "x"}])
    (tmp_path / "c.yaml").write_text(f"input: {tmp_path / 'a.jsonl'}\noutput: {tmp_path / 'o'}\n"
                                     "executor: {max_failed_tasks: 1.5}\n")
    p = run_cli("run", tmp_path / "c.yaml")
    assert p.returncode == 2 and "executor.max_failed_tasks" in p.stderr


def test_no_assert_guards_data_in_the_package():
    """`python -O` strips asserts: every check on data or input raises an error with a message."""
    found = []
    for path in (ROOT / "tokenmill").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assert):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"use `raise ...Error(message)` instead of assert: {found}"
