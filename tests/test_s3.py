"""Object storage against a real S3 API: moto's server on loopback, behind a proxy that throttles
(503 SlowDown) and drops connections mid-body (tests/s3server.py). Credentials and endpoint come from
the usual variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL ...), as a user's would.

Inputs `s3://…/*.warc.gz` and a Common Crawl `warc.paths.gz` listing whose lines resolve against an
`s3://` base, `output: s3://…`: the documents are those of the same run on local disk, every fault is
retried and counted in the manifest, a rerun resumes (nothing redone), `verify` and `inspect` read the
s3:// run directory; (slow) a deleted output is named by verify and redone, and a glob of s3:// WARCs.
Reading a WARC from S3 holds one 8 MB read-ahead block, not the file. ~100 s here (2 cores, shared)."""

from __future__ import annotations

import gzip
import json
import shutil
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import run_cli
from s3server import S3Server

CRAWL = "crawl-data/CC-MAIN-2099-01"
STAGES = ["url_filter", "extract", "language", "quality", "pii"]  # map stages (default tests)
FULL = ["url_filter", "extract", "language", "quality", "dedup", "pii"]  # with a global step (slow test)


@pytest.fixture(scope="module")
def s3(shared_data):
    with S3Server(faults=True) as server:
        c = server.client()
        c.create_bucket(Bucket="commoncrawl")
        c.create_bucket(Bucket="runs")
        names = []
        for w in sorted((shared_data / "warc").glob("*.warc.gz")):
            key = f"{CRAWL}/segments/1/warc/{w.name}"
            c.upload_file(str(w), "commoncrawl", key)
            names.append(key)
        c.put_object(Bucket="commoncrawl", Key=f"{CRAWL}/warc.paths.gz", Body=gzip.compress("\n".join(names).encode()))
        yield server


def direct_fs(s3):
    import s3fs

    return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3.direct,
                             client_kwargs={"region_name": "us-east-1"}, skip_instance_cache=True)


def write_config(path: Path, inputs: list[str], output: str, stages=STAGES, **extra) -> Path:
    cfg = {"input": {"paths": inputs, **extra}, "output": output, "executor": {"kind": "local"}, "stages": stages}
    path.write_text(json.dumps(cfg))  # YAML is a superset of JSON
    return path


def documents(fs, run: str) -> list[tuple]:
    """(id, url, text) of every curated document, from local disk or (with fs) from S3."""
    rows = []
    if fs is None:
        parts = sorted(Path(run, "docs").glob("part-*.parquet"))
        tables = [pq.read_table(p, columns=["id", "url", "text"]) for p in parts]
    else:
        parts = sorted(fs.glob(f"{run}/docs/part-*.parquet"))
        tables = []
        for p in parts:
            with fs.open(p, "rb") as f:
                tables.append(pq.read_table(f, columns=["id", "url", "text"]))
    for t in tables:
        rows += [(r["id"], r["url"], r["text"]) for r in t.to_pylist()]
    assert rows, f"no documents in {run}"
    return sorted(rows)


def manifest_counters(fs, run: str) -> dict:
    out: dict = {}
    for p in fs.glob(f"{run}/manifest/tasks/*.parquet"):
        with fs.open(p, "rb") as f:
            for r in pq.read_table(f, columns=["counters"]).to_pylist():
                for k, v in r["counters"] or []:
                    out[k] = out.get(k, 0) + v
    return out


def local_run(shared_data: Path, tmp: Path, stages) -> list[tuple]:
    """The same recipe on the same WARCs read from local disk: its documents."""
    warcs = tmp / "warc"
    warcs.mkdir(exist_ok=True)
    for w in sorted((shared_data / "warc").glob("*.warc.gz")):
        shutil.copyfile(w, warcs / w.name)
    r = run_cli("run", write_config(tmp / "c.json", [f"{warcs}/*.warc.gz"], str(tmp / "run"), stages), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return documents(None, str(tmp / "run"))


@pytest.fixture(scope="module")
def local_docs(shared_data, tmp_path_factory):
    return local_run(shared_data, tmp_path_factory.mktemp("s3ref"), STAGES)


def test_listing_on_s3_output_on_s3_with_throttling_and_drops(s3, local_docs, tmp_path):
    before = s3.injected
    cfg = write_config(tmp_path / "listing.json", [f"s3://commoncrawl/{CRAWL}/warc.paths.gz"], "s3://runs/listing",
                       base_url="s3://commoncrawl/", retry_max_s=2.0)
    r = run_cli("run", cfg, "--no-progress", env=s3.env)
    assert r.returncode == 0, r.stderr[-3000:]
    fs = direct_fs(s3)
    assert documents(fs, "runs/listing") == local_docs
    injected = {k: v - before.get(k, 0) for k, v in s3.injected.items()}
    counters = manifest_counters(fs, "runs/listing")
    print(f"\nfaults injected by the proxy: {injected}; counted in the manifest: "
          f"io_retries {counters.get('io_retries', 0)}, io_resumes {counters.get('io_resumes', 0)}")
    # six WARCs, each answered 503 once and cut once (the listing too, read on the driver, not a task)
    assert injected.get("slowdown", 0) >= 6 and injected.get("dropped", 0) >= 6, injected
    # each WARC: one retry for the 503, one for the cut (at byte 0: s3fs fetched the small file whole)
    assert counters.get("io_retries", 0) >= 12, counters

    # resume: the same command again does nothing again; verify and inspect read the s3:// run
    again = run_cli("run", cfg, "--no-progress", env=s3.env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert " 0 tasks run" in again.stdout + again.stderr, (again.stdout + again.stderr)[-2000:]
    v = run_cli("verify", "s3://runs/listing", env=s3.env)
    assert v.returncode == 0, v.stdout + v.stderr
    i = run_cli("inspect", "s3://runs/listing", env=s3.env)
    assert i.returncode == 0 and "extract" in i.stdout, i.stdout + i.stderr


@pytest.mark.slow
def test_a_lost_s3_output_is_named_by_verify_and_redone(s3, shared_data, tmp_path):
    """With dedup (a global step: its scratch files and results on S3 too)."""
    local_docs = local_run(shared_data, tmp_path, FULL)
    cfg = write_config(tmp_path / "lost.json", [f"s3://commoncrawl/{CRAWL}/warc.paths.gz"], "s3://runs/lost", FULL,
                       base_url="s3://commoncrawl/", retry_max_s=2.0)
    r = run_cli("run", cfg, "--no-progress", env=s3.env)
    assert r.returncode == 0, r.stderr[-3000:]
    fs = direct_fs(s3)
    part = sorted(fs.glob("runs/lost/docs/part-*.parquet"))[0]
    fs.rm(part)
    v = run_cli("verify", "s3://runs/lost", env=s3.env)
    assert v.returncode == 1 and part.rsplit("/", 1)[1] in v.stdout + v.stderr, v.stdout + v.stderr
    redo = run_cli("run", cfg, "--no-progress", env=s3.env)
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert "redone" in redo.stdout + redo.stderr
    assert documents(fs, "runs/lost") == local_docs
    assert run_cli("verify", "s3://runs/lost", env=s3.env).returncode == 0


@pytest.mark.slow
def test_glob_of_s3_warcs(s3, local_docs, tmp_path):
    cfg = write_config(tmp_path / "glob.json", [f"s3://commoncrawl/{CRAWL}/segments/*/warc/*.warc.gz"],
                       "s3://runs/glob", retry_max_s=2.0)
    r = run_cli("run", cfg, "--no-progress", env=s3.env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert documents(direct_fs(s3), "runs/glob") == local_docs


def test_reading_a_warc_from_s3_holds_a_block_not_the_file(s3, monkeypatch):
    """A 48 MB object read through the reader's file: peak Python memory is a few read-ahead blocks
    (s3fs's cache, the block being fetched, their join: ~30 MB measured), not the object."""
    import os

    from tokenmill.readers import remote

    data = os.urandom(48 << 20)
    s3.client().put_object(Bucket="commoncrawl", Key="big/blob.bin", Body=data)
    for k, v in {**s3.env, "AWS_ENDPOINT_URL": s3.direct}.items():
        monkeypatch.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with remote.open_input("s3://commoncrawl/big/blob.bin") as f:
            n = len(f.read(1 << 20))  # the client is made (botocore loads its ~30 MB of models) ...
            tracemalloc.start()  # ... then the reading itself is measured
            while block := f.read(1 << 20):
                n += len(block)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        s3fs.S3FileSystem.clear_instance_cache()
    print(f"\nread {n >> 20} MB from S3; peak Python memory {peak / 2**20:.1f} MB")
    assert n == len(data)
    assert peak < 5 * remote.S3_BLOCK_BYTES < len(data), peak
