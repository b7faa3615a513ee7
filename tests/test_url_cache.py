"""The UT1 blocklist's on-disk cache (filters/url.py): same hashes as reading the archive line by
line, written once, read back by later workers, rebuilt when damaged, safe under concurrent writers."""

from __future__ import annotations

import io
import os
import tarfile
import threading

import numpy as np
import pytest

from tokenmill.filters import url as U

DOMAINS = b"Example.COM\nbad.example\n\n  spaced.example \r\nbad.example\ncrlf.example\r\n# not a comment\n"
URLS = b"http://www.Bad.example/page/\n\nspaced.example/x \nhttps://b.example/\xff\xfe\n"


def reference(domains: bytes, urls: bytes) -> tuple[np.ndarray, frozenset[str]]:
    """The archive read as before the cache: line by line, each stripped, lowercased and hashed."""
    lines = [line for line in io.BytesIO(domains) if line.strip()]
    hashes = U._hash_array(line.strip().lower() for line in lines)
    keys = frozenset(U._url_key(line.decode("utf-8", "replace")) for line in io.BytesIO(urls) if line.strip())
    return hashes, keys


def write_archive(directory, domains: bytes = DOMAINS, urls: bytes = URLS) -> str:
    path = os.path.join(directory, U.BLOCKLIST_ARCHIVE)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("urls", urls), ("domains", domains)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """A small UT1-shaped archive as datatrove's asset, a fresh cache dir, no per-process cache."""
    assets = tmp_path / "assets"
    assets.mkdir()
    write_archive(assets)
    monkeypatch.setattr(U, "_assets_path", lambda: str(assets))
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path / "cache"))
    U.load_blocklist.cache_clear()
    yield assets
    U.load_blocklist.cache_clear()


def cache_files(tmp_path) -> list[str]:
    d = tmp_path / "cache"
    return sorted(os.listdir(d)) if d.exists() else []


def test_bulk_build_equals_line_by_line(archive):
    domains, urls = U.build_blocklist(str(archive / U.BLOCKLIST_ARCHIVE))
    want_domains, want_urls = reference(DOMAINS, URLS)
    assert np.array_equal(domains, want_domains) and len(domains) == 5  # bad.example once
    assert frozenset(urls) == want_urls
    # lines without spaces take the fast path; the result is the same
    plain = b"a.example\nB.example\n\nc.example"
    got, _ = U.build_blocklist(write_archive(archive, plain, b""))
    assert np.array_equal(got, reference(plain, b"")[0])


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 16, 1 << 22])
def test_chunked_hashing_equals_line_by_line(chunk_bytes):
    """Lines cut across chunk boundaries (and a last line without a newline) hash as whole lines."""
    for data in (DOMAINS, DOMAINS + b"no-newline.example", b"", b"\n\n"):
        got = U._hash_lines(io.BytesIO(data), chunk_bytes=chunk_bytes)
        assert np.array_equal(got, reference(data, b"")[0]), (data, chunk_bytes)


def test_written_once_then_read_back(archive, tmp_path, monkeypatch):
    first = U.load_blocklist()
    assert np.array_equal(first[0], reference(DOMAINS, URLS)[0]) and first[1] == reference(DOMAINS, URLS)[1]
    files = cache_files(tmp_path)
    assert len(files) == 1 and files[0].startswith("ut1-") and files[0].endswith(f"-v{U.BLOCKLIST_CACHE_FORMAT}.npz")

    def no_build(path):
        raise AssertionError("rebuilt although the cache holds this archive")

    monkeypatch.setattr(U, "build_blocklist", no_build)
    U.load_blocklist.cache_clear()
    second = U.load_blocklist()
    assert np.array_equal(second[0], first[0]) and second[1] == first[1]


def test_another_archive_gets_its_own_entry(archive, tmp_path):
    U.load_blocklist()
    write_archive(archive, DOMAINS + b"new.example\n")
    U.load_blocklist.cache_clear()
    domains, _ = U.load_blocklist()
    assert len(cache_files(tmp_path)) == 2
    assert U._in(domains, "new.example")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "unsorted"])
def test_a_damaged_cache_file_is_rebuilt(archive, tmp_path, damage, caplog):
    want = U.load_blocklist()
    path = tmp_path / "cache" / cache_files(tmp_path)[0]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file at all")
    else:
        np.savez(path, domains=want[0][::-1].copy(), n_urls=np.int64(0), urls=np.zeros(0, np.uint8))
    U.load_blocklist.cache_clear()
    got = U.load_blocklist()
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]
    assert "rebuilding" in caplog.text
    U.load_blocklist.cache_clear()
    assert U._read_cache(str(path)) is not None  # and rewritten whole


def test_unwritable_cache_dir_still_loads(archive, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(blocker / "cache"))  # a directory under a file
    domains, urls = U.load_blocklist()
    assert np.array_equal(domains, reference(DOMAINS, URLS)[0])
    assert "could not cache" in caplog.text


def test_empty_cache_dir_setting_turns_the_cache_off(archive, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", "")
    assert U.cache_dir() is None
    U.load_blocklist()
    assert cache_files(tmp_path) == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENMILL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert U.cache_dir() == str(tmp_path / "tokenmill")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert U.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "tokenmill")


def test_concurrent_writers_and_readers_never_see_a_partial_file(tmp_path, caplog):
    """Writers rename a whole temporary file into place; readers see the whole file or none."""
    rng = np.random.default_rng(0)
    domains = np.unique(rng.integers(0, 2**63, 300_000, dtype=np.uint64))  # ~2.4 MB: writes take a while
    urls = [f"site{i}.example/page" for i in range(1000)]
    path = str(tmp_path / "cache" / "ut1-x-v1.npz")
    seen, errors = [], []
    writers_done = threading.Event()

    def write():
        try:
            for _ in range(5):
                U._write_cache(path, domains, urls)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    def read():
        while not writers_done.is_set():  # reads all the while the writers write, however slow they are
            got = U._read_cache(path)
            if got is not None:
                seen.append(np.array_equal(got[0], domains) and got[1] == urls)
        got = U._read_cache(path)
        seen.append(got is not None and np.array_equal(got[0], domains) and got[1] == urls)

    writers = [threading.Thread(target=write) for _ in range(4)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    writers_done.set()
    for t in readers:
        t.join()
    assert not errors
    assert len(seen) >= 2 and all(seen)
    assert "rebuilding" not in caplog.text  # no reader met a partly written file
    assert sorted(os.listdir(tmp_path / "cache")) == ["ut1-x-v1.npz"]  # no temporary file left


@pytest.mark.slow
def test_real_ut1_archive_bulk_build_equals_line_by_line():
    """The shipped list (4.56M domains): ~4 s."""
    path = os.path.join(U._assets_path(), U.BLOCKLIST_ARCHIVE)
    with tarfile.open(path, "r:gz") as tar:
        want = reference(tar.extractfile("domains").read(), tar.extractfile("urls").read())
    domains, urls = U.build_blocklist(path)
    assert np.array_equal(domains, want[0]) and frozenset(urls) == want[1]
