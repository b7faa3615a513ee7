"""Snapshot after snapshot: runs that build on earlier runs (dedup against them, their tokenizer),
and a run that keeps nothing, which is done, not failed. Through the CLI, on real crawls."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from helpers import need, run_cli
from tokenmill.manifests import read_runs

VOCAB = 400


def need_torch():
    need("torch")  # the train extra: fails under CI=true when missing


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


# ---- training on snapshots together ---------------------------------------------------------------

def test_train_on_a_blend_of_two_snapshots(snapshots):
    need_torch()
    tmp, _ = snapshots
    out = tmp / "ckpt-blend"
    p = run_cli("train", "pretrain", "--tokens", tmp / "A" / "tokens", "--tokens", tmp / "C" / "tokens",
                "--weights", "0.3", "0.7", "--out", out, "--steps", "4", "--eval-every", "2", "--device", "cpu")
    assert p.returncode == 0, p.stderr[-2000:]
    first = p.stdout.splitlines()[0]
    assert first.startswith("blend over the first 4 steps:") and "A weight 0.30" in first and "C weight 0.70" in first
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    assert {"val_loss", "val_loss.A", "val_loss.C"} <= set(last)
    assert abs(last["val_loss"] - (0.3 * last["val_loss.A"] + 0.7 * last["val_loss.C"])) < 1e-6


def test_a_blend_of_different_tokenizers_is_refused(snapshots, tmp_path):
    need_torch()
    tmp, _ = snapshots
    crawl = tmp / "A.yaml"  # A's crawl again, with its own freshly trained (different) tokenizer
    body = json.loads(crawl.read_text())
    body.update(output=str(tmp_path / "D"), tokenize={"vocab_size": VOCAB + 20})
    (tmp_path / "D.yaml").write_text(json.dumps(body))
    assert run_cli("run", tmp_path / "D.yaml", "--no-progress").returncode == 0
    p = run_cli("train", "pretrain", "--tokens", tmp / "A" / "tokens", "--tokens", tmp_path / "D" / "tokens",
                "--out", tmp_path / "ck", "--steps", "2", "--device", "cpu")
    assert p.returncode == 2 and "tokenizer" in p.stderr
    assert str(tmp / "A" / "tokens") in p.stderr and str(tmp_path / "D" / "tokens") in p.stderr
    assert not (tmp_path / "ck" / "ckpt.pt").exists()


def test_training_on_an_empty_snapshot_is_refused(snapshots, tmp_path):
    need_torch()
    tmp, _ = snapshots
    p = run_cli("train", "pretrain", "--tokens", tmp / "B" / "tokens", "--out", tmp_path / "ck", "--steps", "2",
                "--device", "cpu")
    assert p.returncode == 2 and f"no tokens in {tmp / 'B' / 'tokens'}" in p.stderr, p.stderr[-1000:]


def test_inspect_shows_what_a_run_built_on(snapshots):
    tmp, _ = snapshots
    p = run_cli("inspect", tmp / "B")
    assert p.returncode == 0
    assert f"dedup against {tmp / 'A'}: {kept(tmp / 'A')} document(s)" in p.stdout
    assert "warning: no document was kept" in p.stdout
    p = run_cli("inspect", tmp / "C")
    assert "tokenizer " in p.stdout and f"from {tmp / 'A'}" in p.stdout
