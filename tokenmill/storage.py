"""Files: local paths or fsspec URLs, atomic writes, and documents as Parquet.

Every output is written under a temporary name and renamed into place, so a file that
exists is complete. Documents travel between processes as Parquet in the form doc.py defines.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill.doc import DOC_SCHEMA, REMOVED_SCHEMA, Doc, doc_to_row, row_to_doc  # noqa: F401

def fs_and_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(url: str) -> bool:
    fs, path = fs_and_path(url)
    return fs.exists(path)


def makedirs(url: str) -> None:
    fs, path = fs_and_path(url)
    fs.makedirs(path, exist_ok=True)


def glob(pattern: str) -> list[str]:
    fs, path = fs_and_path(pattern)
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    hits = sorted(fs.glob(path))
    if proto in ("file", "local"):
        return hits
    return [f"{proto}://{h}" for h in hits]


def remove(url: str) -> None:
    fs, path = fs_and_path(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


TMP_MARK = ".tmp-"  # temporaries are `.<name>.tmp-<random>`: hidden, and not `*.parquet`


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def temp_name(path: str) -> str:
    """A temporary beside `path` that dataset readers skip: Arrow, pandas and polars ignore names
    starting with `.` or `_`, and `*.parquet` / `*.bin` globs (DuckDB) do not match it."""
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}{TMP_MARK}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_write(url: str, mode: str = "wb"):
    """Open `url` for writing; the file appears under its name only when complete.

    Local disk: written to a hidden temporary, fsynced, renamed into place, then the directory
    fsynced, so after a crash or power loss a file that exists is complete. Object stores (s3://,
    gs://...): rename is copy + delete there, so the final name is written once; an object
    appears only when its upload completes, and the task's manifest row, written after, is
    the commit."""
    fs, path = fs_and_path(url)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if not is_local(fs):
        with fs.open(path, mode) as f:
            yield f
        return
    tmp = temp_name(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temps(url: str) -> int:
    """Remove temporaries left under `url` by a process that was killed mid-write (local disks
    only: object stores never hold them). Returns how many were removed."""
    fs, path = fs_and_path(url)
    if not is_local(fs) or not os.path.isdir(path):
        return 0
    n = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name.startswith(".") and TMP_MARK in name:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(root, name))
                    n += 1
    return n


def identity(url: str) -> str:
    """What says a file changed without reading it: size and mtime on local disks; the ETag (or
    size and last-modified) from an object store's or web server's metadata."""
    fs, path = fs_and_path(url)
    if is_local(fs):
        st = os.stat(path)
        return f"size={st.st_size};mtime_ns={st.st_mtime_ns}"
    info = fs.info(path)
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            return f"size={info.get('size')};{key}={str(info[key]).strip(chr(34))}"
    stamp = info.get("LastModified") or info.get("last_modified") or info.get("mtime") or info.get("created")
    return f"size={info.get('size')};modified={stamp}"


def sha256_file(url: str) -> str:
    fs, path = fs_and_path(url)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_docs(url: str, docs: Iterable[Doc], removed: Iterable[tuple[Doc, str, str]] | None = None,
               batch_rows: int = 2048) -> int:
    """Write documents (or, with `removed`, (doc, stage, reason) triples) atomically, streaming
    in row groups of `batch_rows`. Returns the file's size in bytes."""
    if removed is not None:
        rows = ({**doc_to_row(d), "stage": s, "reason": r} for d, s, r in removed)
        schema = REMOVED_SCHEMA
    else:
        rows = (doc_to_row(d) for d in docs)
        schema = DOC_SCHEMA
    with atomic_write(url) as f:
        with pq.ParquetWriter(f, schema, compression="zstd") as writer:
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= batch_rows:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:  # no empty row group: some readers (HF datasets) take its size 0 as a batch size
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    fs, path = fs_and_path(url)
    return fs.size(path)


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet file (local path or fsspec URL), optionally only some columns."""
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def num_rows(url: str) -> int:
    """Rows of a Parquet file, from its footer alone."""
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_docs(url: str, batch_size: int = 1024) -> Iterator[Doc]:
    """Stream documents from a Parquet file written by `write_docs`."""
    fs, path = fs_and_path(url)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield row_to_doc(row)
