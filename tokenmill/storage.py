"""Files: local paths or fsspec URLs, atomic writes, and documents as Parquet.

Every output is written under a temporary name and renamed into place, so a file that
exists is complete. Documents travel between processes as Parquet in the form doc.py defines.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterable, Iterator

import fsspec
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


@contextlib.contextmanager
def atomic_write(url: str, mode: str = "wb"):
    """Open `url` for writing under a temporary name; rename into place on success."""
    fs, path = fs_and_path(url)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


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
