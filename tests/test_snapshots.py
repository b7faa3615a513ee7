"""Snapshot after snapshot: runs that build on earlier runs (dedup against them, their tokenizer),
and a run that keeps nothing, which is done, not failed. Through the CLI, on real crawls."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from helpers import run_cli
from tokenmill.manifests import read_runs

VOCAB = 400


def conf(tmp_path, name, crawl, **sections):
    body = {"input": str(crawl), "output": str(tmp_path / name), "executor": {"kind": "local"},
            "tokenize": {"vocab_size": VOCAB, **sections.pop("tokenize", {})}, **sections}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(body))
    return path


def kept(run_dir) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in (run_dir / "docs").glob("*.parquet"))


def run_record(run_dir) -> dict:
    return max(read_runs(str(run_dir)).to_pylist(), key=lambda r: r["started"])


@pytest.fixture(scope="module")
def snapshots(shared_data, tmp_path_factory):
    """A: one real crawl. B: the same crawl against A. C: another crawl against A, with A's tokenizer."""
    tmp = tmp_path_factory.mktemp("snap")
    crawl1 = shared_data / "warc/wget-crawl-2024-sample-0000.warc.gz"
    crawl2 = shared_data / "warc/wget-crawl-2024-sample-0001.warc.gz"
    procs = {
        "A": run_cli("run", conf(tmp, "A", crawl1), "--no-progress"),
        "B": run_cli("run", conf(tmp, "B", crawl1, dedup={"against": [str(tmp / "A")]}), "--no-progress"),
        "C": run_cli("run", conf(tmp, "C", crawl2, dedup={"against": [str(tmp / "A")]},
                                 tokenize={"tokenizer": str(tmp / "A")}), "--no-progress"),
    }
    return tmp, procs


def test_first_snapshot_keeps_documents(snapshots):
    tmp, procs = snapshots
    assert procs["A"].returncode == 0, procs["A"].stderr[-2000:]
    assert kept(tmp / "A") > 0
    lineage = json.loads(run_record(tmp / "A")["lineage"])
    assert lineage["tokenizer"]["from"] == "trained on this run" and len(lineage["tokenizer"]["sha256"]) == 64


def test_a_run_that_keeps_nothing_is_done_with_a_warning(snapshots):
    """Before: exit 1, `AssertionError: no document with text to train the tokenizer on`."""
    tmp, procs = snapshots
    b = procs["B"]
    assert b.returncode == 0, b.stderr[-2000:]
    assert kept(tmp / "B") == 0 and sorted((tmp / "B" / "docs").glob("*.parquet"))
    assert "warning: no document was kept: dedup dropped the last" in b.stderr and "exact_duplicate" in b.stderr
    assert run_record(tmp / "B")["status"] == "done"
    manifest = pq.read_table(tmp / "B" / "tokens" / "manifest.parquet")
    assert manifest.num_rows == 0 and not list((tmp / "B" / "tokens").glob("*.bin"))
    assert not (tmp / "B" / "tokens" / "tokenizer.json").exists(), "no tokenizer trained on nothing"
    lineage = json.loads(run_record(tmp / "B")["lineage"])
    assert lineage["dedup_against"] == {str(tmp / "A"): kept(tmp / "A")}
    assert run_cli("verify", tmp / "B").returncode == 0


def test_a_later_snapshot_uses_the_earlier_tokenizer_unchanged(snapshots):
    tmp, procs = snapshots
    assert procs["C"].returncode == 0, procs["C"].stderr[-2000:]
    a = (tmp / "A" / "tokens" / "tokenizer.json").read_bytes()
    assert (tmp / "C" / "tokens" / "tokenizer.json").read_bytes() == a
    sha = {pq.read_table(tmp / r / "tokens" / "manifest.parquet").column("tokenizer_sha256")[0].as_py() for r in "AC"}
    assert len(sha) == 1
    lineage = json.loads(run_record(tmp / "C")["lineage"])
    assert lineage["tokenizer"]["sha256"] == sha.pop() and lineage["tokenizer"]["from"].startswith(str(tmp / "A"))
    assert str(tmp / "A") in lineage["dedup_against"]


@pytest.mark.parametrize("bad", ["nowhere", "garbage"])
def test_an_unusable_tokenizer_is_a_config_error_naming_the_key(tmp_path, shared_data, bad):
    target = tmp_path / bad
    if bad == "garbage":
        target.mkdir()
        (target / "tokenizer.json").write_text("{not json")
    p = run_cli("run", conf(tmp_path, "x", shared_data / "warc/wget-crawl-2024-sample-0000.warc.gz",
                            tokenize={"tokenizer": str(target)}))
    assert p.returncode == 2 and "tokenize.tokenizer" in p.stderr, p.stderr[-1000:]
