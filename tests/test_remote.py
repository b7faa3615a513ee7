"""Remote inputs (issue 18): Common Crawl's layout served over HTTP by a server the test starts,
read through the CLI as a user runs it; retries at the I/O level, counted in the manifest."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from crawlserver import CrawlServer
from tokenmill.manifests.store import read_tasks
from tokenmill.readers import InputConfig, Shard, expand_paths, read_shard
from tokenmill.readers.httpfile import HttpFile
from tokenmill.readers.remote import (InputNotFound, InputUnavailable, RemoteReadError, RetryPolicy,
                                      open_input, retry_after_s)
from tokenmill.stats import StageContext

WARCS = ("cc-main-2020-34-excerpt.warc.gz", "wget-crawl-2024-sample-0000.warc.gz", "wget-crawl-2024-sample-0001.warc.gz")
BIN = Path(sys.executable).parent
NO_WAIT = RetryPolicy(retries=3, max_wait_s=0.01, sleep=lambda s: None)


def crawl_files(shared_data) -> dict:
    """The server's tree: crawl/<name>.warc.gz and a gzipped warc.paths listing of them, relative
    to the server's root as Common Crawl's are to https://data.commoncrawl.org/."""
    files = {f"crawl/{name}": shared_data / "warc" / name for name in WARCS}
    files["crawl/warc.paths.gz"] = gzip.compress("".join(f"crawl/{n}\n" for n in WARCS).encode())
    return files


def run_cli(tmp_path: Path, name: str, inp: dict, stages=("extract",)) -> tuple[subprocess.CompletedProcess, float]:
    cfg = {"input": inp, "output": str(tmp_path / name), "stages": list(stages), "executor": {"kind": "local"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(cfg))
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "tokenmill"), "run", str(path), "--executor", "local", "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, time.monotonic() - t0


def documents(run_dir: Path) -> list[dict]:
    rows = []
    for part in sorted((run_dir / "docs").glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    for r in rows:
        r["source"] = r["source"].rsplit("/", 1)[-1]  # the same file, from disk or over HTTP
    return sorted(rows, key=lambda r: (r["source"], r["source_offset"]))


def ingest_counters(run_dir: Path) -> Counter:
    total = Counter()
    for row in read_tasks(str(run_dir)).to_pylist():
        if row["stage"] == "ingest" and row["status"] == "done":
            total.update(dict(row["counters"] or []))
    return total


@pytest.fixture(scope="module")
def local_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    proc, seconds = run_cli(tmp, "run", {"paths": [str(shared_data / "warc" / n) for n in WARCS]})
    assert proc.returncode == 0, proc.stderr[-2000:]
    docs = documents(tmp / "run")
    assert len(docs) == 16 + 22 + 15 - 1  # 53 HTML pages; extract finds no main text in one
    return docs, seconds


def test_listing_over_http_gives_the_documents_read_from_disk(shared_data, tmp_path, local_run):
    local_docs, _ = local_run
    with CrawlServer(crawl_files(shared_data)) as srv:
        proc, _ = run_cli(tmp_path, "run", {"paths": [srv.url("crawl/warc.paths.gz")], "base_url": srv.url()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert documents(tmp_path / "run") == local_docs
    assert ingest_counters(tmp_path / "run")["io_retries"] == 0
    got = [r for r in srv.log if r[0].endswith(".warc.gz") and r[1] == "GET"]
    assert len(got) == 3 and all(r[3] == 206 for r in got), "one ranged GET per WARC"


def test_throttled_and_dropped_reads_are_retried_resumed_and_counted(shared_data, tmp_path, local_run, capsys):
    """Each file's first request: 503 Retry-After: 1; its second: cut halfway through the body."""
    local_docs, local_s = local_run
    with CrawlServer(crawl_files(shared_data), fault="503-then-drop") as srv:
        proc, fault_s = run_cli(tmp_path, "run", {"paths": [srv.url("crawl/warc.paths.gz")], "base_url": srv.url()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert documents(tmp_path / "run") == local_docs
    counters = ingest_counters(tmp_path / "run")
    assert counters["io_retries"] == 2 * 3 and counters["io_resumes"] == 3  # the listing's are the driver's
    for name in WARCS:
        reqs = srv.requests_for(f"crawl/{name}")
        assert [r[3] for r in reqs] == [503, 206, 206]
        assert reqs[1][5] - reqs[0][5] >= 1.0, "Retry-After: 1 honoured"
        size = (shared_data / "warc" / name).stat().st_size
        assert reqs[2][2] == f"bytes={size // 2}-", "resumed at the byte reached, not at 0"
    inspect = subprocess.run([str(BIN / "tokenmill"), "inspect", str(tmp_path / "run")], capture_output=True,
                             text=True, timeout=120)
    assert inspect.returncode == 0 and "io_retries 6" in inspect.stdout and "io_resumes 3" in inspect.stdout
    with capsys.disabled():
        print(f"\n  local run {local_s:.1f} s; 503-then-drop over HTTP {fault_s:.1f} s, {dict(counters)}")


def test_missing_listing_fails_at_start_naming_the_url(tmp_path, shared_data):
    with CrawlServer(crawl_files(shared_data)) as srv:
        url = srv.url("crawl/CC-MAIN-1999-01.warc.paths.gz")
        proc, _ = run_cli(tmp_path, "run", {"paths": [url], "base_url": srv.url()})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"input.paths[0]: listing '{url}' does not exist (HTTP 404)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unavailable_listing_is_not_called_missing(tmp_path, shared_data):
    with CrawlServer(crawl_files(shared_data), fault="always-503") as srv:
        url = srv.url("crawl/warc.paths.gz")
        proc, _ = run_cli(tmp_path, "run", {"paths": [url], "base_url": srv.url(), "retries": 2, "retry_max_s": 0.1})
    assert proc.returncode == 1, proc.stderr[-2000:]  # not a config error: the server did not answer
    assert "unavailable, retried 2 times" in proc.stderr and "HTTP 503" in proc.stderr
    assert "does not exist" not in proc.stderr and "bad config" not in proc.stderr
    assert len(srv.requests_for("crawl/warc.paths.gz")) == 3


def test_warc_that_stays_unavailable_fails_the_task_naming_url_and_status(tmp_path, shared_data):
    with CrawlServer(crawl_files(shared_data), fault="always-503") as srv:
        url = srv.url(f"crawl/{WARCS[0]}")
        proc, _ = run_cli(tmp_path, "run", {"paths": [url], "retries": 1, "retry_max_s": 0.1}, stages=())
    assert proc.returncode == 1
    assert url in proc.stderr and "unavailable, retried once" in proc.stderr and "HTTP 503" in proc.stderr


# --- the reader itself, in process ---------------------------------------------------------

def read_docs(url: str, cfg: InputConfig):
    ctx = StageContext("ingest")
    docs = list(read_shard(Shard(0, url, "warc"), cfg, ctx))
    return docs, ctx.stats


def test_cut_every_time_still_reads_everything(shared_data):
    """Every answer is cut halfway: each resume asks for the rest from the byte reached."""
    path = shared_data / "warc" / WARCS[0]
    with CrawlServer({"a.warc.gz": path}, fault="drop-always") as srv:
        counters = Counter()
        with open_input(srv.url("a.warc.gz"), RetryPolicy(retries=30, sleep=lambda s: None), counters) as f:
            assert f.read() == path.read_bytes()
    starts = [int(r[2].split("=")[1].rstrip("-")) for r in srv.log]
    assert starts == sorted(set(starts)) and starts[0] == 0, "always forward"
    assert counters["io_retries"] == counters["io_resumes"] == len(starts) - 1 > 5


def test_server_that_sends_shorter_ranges_is_asked_for_the_rest(shared_data):
    """A 206 may cover less than asked (bytes=0- answered with 0-9999/135896): not a failure."""
    path = shared_data / "warc" / WARCS[0]
    with CrawlServer({"a.warc.gz": path}, fault="short-ranges") as srv:
        counters = Counter()
        with open_input(srv.url("a.warc.gz"), NO_WAIT, counters) as f:
            assert f.read() == path.read_bytes()
    assert len(srv.log) == -(-path.stat().st_size // 10_000) and not counters


def test_server_that_ignores_range_is_skipped_to_the_byte(shared_data):
    path = shared_data / "warc" / WARCS[0]
    data = path.read_bytes()
    with CrawlServer({"a.warc.gz": path}, fault="ignore-range") as srv:
        with open_input(srv.url("a.warc.gz"), NO_WAIT) as f:
            f.seek(100_000)
            assert f.read(50) == data[100_000:100_050]
            f.seek(10)
            assert f.read(5) == data[10:15]


def test_retries_run_out_naming_url_and_last_status(shared_data):
    with CrawlServer({"a.warc.gz": shared_data / "warc" / WARCS[0]}, fault="always-503") as srv:
        counters = Counter()
        with pytest.raises(InputUnavailable, match=r"a\.warc\.gz: unavailable, retried 3 times.*HTTP 503") as e:
            HttpFile(srv.url("a.warc.gz"), NO_WAIT, counters)
    assert e.value.status == 503 and counters["io_retries"] == 3 and len(srv.log) == 4
    assert not isinstance(e.value, FileNotFoundError)


def test_404_is_missing_and_not_retried(shared_data):
    with CrawlServer({}) as srv:
        with pytest.raises(InputNotFound, match="does not exist"):
            HttpFile(srv.url("gone.warc.gz"), NO_WAIT)
    assert len(srv.log) == 1


def test_unavailable_mid_read_fails_the_shard_not_a_record(shared_data):
    """A WARC whose connection drops and never comes back: the reader must not count it as a
    broken gzip member (that would silently drop the rest of the file)."""
    with CrawlServer({"a.warc.gz": shared_data / "warc" / WARCS[0]}, fault="drop-then-503") as srv:
        with pytest.raises(InputUnavailable, match=r"a\.warc\.gz: unavailable, retried 2 times.*HTTP 503"):
            read_docs(srv.url("a.warc.gz"), InputConfig(retries=2, retry_max_s=0.01))
    assert [r[3] for r in srv.log] == [206, 503, 503]  # the cut read, then 2 retries


def test_empty_file_and_read_past_end():
    with CrawlServer({"empty.jsonl": b"", "one.jsonl": b'{"text": "x"}\n'}) as srv:
        with open_input(srv.url("empty.jsonl"), NO_WAIT) as f:
            assert f.read() == b""
        with open_input(srv.url("one.jsonl"), NO_WAIT) as f:
            f.seek(1000)
            assert f.read() == b""


def test_jsonl_and_parquet_over_http(tmp_path):
    import pyarrow as pa

    table = pa.table({"id": ["a", "b"], "text": ["one", "two"]})
    pq.write_table(table, tmp_path / "d.parquet")
    files = {"d.jsonl.gz": gzip.compress(b'{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n'),
             "d.parquet": (tmp_path / "d.parquet").read_bytes()}
    with CrawlServer(files, fault="503-then-drop") as srv:
        for name, fmt in (("d.jsonl.gz", "jsonl"), ("d.parquet", "parquet")):
            ctx = StageContext("ingest")
            docs = list(read_shard(Shard(0, srv.url(name), fmt), InputConfig(retry_max_s=0.05), ctx))
            assert [d.text for d in docs] == ["one", "two"], name
            # jsonl: the 503, then the cut body; parquet seeks to its footer before the cut answer is read
            assert ctx.stats.counters["io_retries"] == (2 if fmt == "jsonl" else 1), name


def test_retry_after_forms():
    assert retry_after_s("3") == 3.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_s(later) <= 31


def test_retry_after_is_honoured_and_capped():
    waits = []
    with CrawlServer({"x": b"abc"}, fault="503-then-drop") as srv:
        with open_input(srv.url("x"), RetryPolicy(max_wait_s=60, sleep=waits.append)) as f:
            assert f.read() == b"abc"
    assert waits[0] >= 1.0  # Retry-After: 1, above the first backoff (0.5-1 s)
    waits.clear()
    with CrawlServer({"x": b"abc"}, fault="503-then-drop") as srv:
        with open_input(srv.url("x"), RetryPolicy(max_wait_s=0.2, sleep=waits.append)) as f:
            assert f.read() == b"abc"
    assert max(waits) <= 0.2


# --- other fsspec backends: the generic resumable file -------------------------------------

class FlakyFile(io.BytesIO):
    def __init__(self, data: bytes, fs):
        super().__init__(data)
        self.fs = fs

    def read(self, n=-1):
        if self.fs.cuts and self.tell() >= self.fs.cut_at:
            self.fs.cuts -= 1
            raise ConnectionResetError("peer reset the connection")
        return super().read(min(n, 4096) if n and n > 0 else 4096)


class FlakyFS(fsspec.AbstractFileSystem):
    protocol = "flaky"
    data: bytes = b""
    cuts = 0
    cut_at = 0
    opens: list = []

    def _open(self, path, mode="rb", **kwargs):
        if path.endswith("missing"):
            raise FileNotFoundError(path)
        FlakyFS.opens.append(path)
        return FlakyFile(self.data, self)

    def size(self, path):
        return len(self.data)


def test_fsspec_backend_reopens_at_the_offset(shared_data):
    fsspec.register_implementation("flaky", FlakyFS, clobber=True)
    data = (shared_data / "warc" / WARCS[0]).read_bytes()
    FlakyFS.data, FlakyFS.cuts, FlakyFS.cut_at, FlakyFS.opens = data, 2, 50_000, []
    docs, stats = read_docs("flaky://bucket/a.warc.gz", InputConfig(retry_max_s=0.01))
    assert len(docs) == 16 and stats.counters == {"io_retries": 2, "io_resumes": 2}
    assert len(FlakyFS.opens) == 3
    with pytest.raises(FileNotFoundError):
        open_input("flaky://bucket/missing", NO_WAIT)


def test_remote_errors_are_oserrors_a_missing_one_a_filenotfounderror():
    assert issubclass(InputNotFound, FileNotFoundError) and issubclass(InputUnavailable, RemoteReadError)
    assert issubclass(RemoteReadError, OSError)


def test_expand_paths_over_http_listing(shared_data):
    with CrawlServer(crawl_files(shared_data), fault="503-then-drop") as srv:
        files = expand_paths(InputConfig(paths=(srv.url("crawl/warc.paths.gz"),), base_url=srv.url(),
                                         retry_max_s=0.05))
    assert files == [srv.url(f"crawl/{n}") for n in WARCS]


# --- the declared dependencies cover the README's remote inputs ----------------------------

def test_declared_dependencies_include_the_remote_backends():
    """What `pip install tokenmill` brings must read https:// and s3:// (issue 18)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in metadata.requires("tokenmill") or []]
    core = {r.name.lower(): r for r in reqs if not r.marker or "extra" not in str(r.marker)}
    assert "http" in core["fsspec"].extras and "s3fs" in core and "tenacity" in core and "urllib3" in core
    assert not any(r.name.lower() == "fasttext-numpy2-wheel" for r in reqs)
    for name in ("nltk", "ftfy", "pandas"):
        assert name not in core, f"{name} is not imported by tokenmill"
    fsspec.filesystem("http")  # raised ImportError (requests/aiohttp) on the README's install
    fsspec.filesystem("s3", anon=True)


@pytest.mark.slow
def test_fresh_install_reads_an_http_listing(shared_data, tmp_path):
    """Issue 18: on the README's install, any http(s):// input failed with "HTTPFileSystem requires
    requests and aiohttp". A new venv (no system site-packages) gets `pip install .` — exactly the
    declared dependencies, no extras, nothing from this venv — then runs the CLI on an http://
    listing. ~2 min with a warm pip cache (the venv is ~1.1 GB: ray, spaCy, pyarrow...)."""
    root = Path(__file__).resolve().parent.parent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(root)], capture_output=True,
                         text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "from tokenmill.filters.language import check_fasttext; "
                            "check_fasttext(); import fsspec; fsspec.filesystem('http'); fsspec.filesystem('s3', anon=True)"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    with CrawlServer(crawl_files(shared_data), fault="503-then-drop") as srv:
        cfg = {"input": {"paths": [srv.url("crawl/warc.paths.gz")], "base_url": srv.url()},
               "output": str(tmp_path / "run"), "stages": ["url_filter", "extract", "language"]}
        (tmp_path / "c.yaml").write_text(json.dumps(cfg))
        proc = subprocess.run([str(venv / "bin" / "tokenmill"), "run", str(tmp_path / "c.yaml"), "--executor", "local",
                               "--no-progress"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ingest_counters(tmp_path / "run")["io_retries"] == 6
    assert len(documents(tmp_path / "run")) == 38  # 53 pages; 1 without main text, 14 not English


def test_fsspec_http_info_retries_and_tells_404_from_503(shared_data):
    """fsspec's own HTTPFileSystem turned a 503 on its HEAD into FileNotFoundError, and `exists`
    into False: what a file-identity or size lookup elsewhere in the pipeline would see."""
    from tokenmill.readers import remote

    remote.use_policy(RetryPolicy(retries=2, max_wait_s=0.05))
    try:
        fs = fsspec.filesystem("http", skip_instance_cache=True)
        with CrawlServer({"a": b"abcdef"}, fault="503-then-drop") as srv:
            info = fs.info(srv.url("a"))
            assert info["size"] == 6 and info["ETag"]
            assert [r[3] for r in srv.requests_for("a", "HEAD")] == [503, 200]
            assert fs.exists(srv.url("a")) and not fs.exists(srv.url("missing"))
            with fs.open(srv.url("a")) as f:  # GETs: 503, then cut halfway, then the rest
                assert f.read() == b"abcdef"
        with CrawlServer({"a": b"abcdef"}, fault="always-503") as srv:
            with pytest.raises(InputUnavailable, match=r"unavailable, retried 2 times; last: HTTP 503"):
                fs.exists(srv.url("a"))
    finally:
        remote.use_policy(RetryPolicy())
