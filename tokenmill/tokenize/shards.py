"""The shard format: llm.c-compatible `.bin` token files plus a document index.

    NAME_{split}_{index:06d}.bin   256 x int32 header, then the tokens
        header[0] = 20240520 (uint16 tokens, vocab <= 65,535)  header[1] = 1
                 or 20240801 (uint32 tokens, larger vocab)       header[1] = 7  (as llm.c writes them)
        header[2] = number of tokens; the rest is zero
    NAME_{split}_{index:06d}.idx   uint64 token offsets of document starts (each is a BOS)

Every document starts with the BOS token, so `tokens[idx[i]:idx[i+1]]` is document i with its
BOS. nanoGPT/llm.c read a shard with `np.fromfile(path, dtype=np.uint16, offset=256*4)`.
Writing 1M uint16 tokens with their sha256: ~3 ms on this machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from tokenmill import storage

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAGIC_U16, VERSION_U16 = 20240520, 1
MAGIC_U32, VERSION_U32 = 20240801, 7
MAX_U16_VOCAB = 65_535  # larger vocabularies use uint32 tokens

# tokens/manifest.parquet: one row per shard, written last (its existence means the tokens are complete)
MANIFEST = "manifest.parquet"
TOKENIZER = "tokenizer.json"
MANIFEST_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),  # file name inside the tokens directory
        ("split", pa.string()),  # train | val
        ("index", pa.int32()),  # shard number within its split
        ("tokens", pa.int64()),  # BOS tokens included
        ("documents", pa.int64()),
        ("text_bytes", pa.int64()),  # UTF-8 bytes of the documents' text (for bits per byte)
        ("dtype", pa.string()),  # uint16 | uint32
        ("vocab_size", pa.int64()),
        ("bos_id", pa.int64()),
        ("tokenizer_sha256", pa.string()),
        ("sha256", pa.string()),  # of the whole .bin file
    ]
)


class ShardError(ValueError):
    """A shard whose header, size or checksum is not what it should be."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab <= 65,535), else uint32."""
    if not (0 < vocab_size < 2**32):
        raise ValueError(f"vocab size {vocab_size} does not fit uint32 tokens")
    return np.dtype(np.uint16) if vocab_size <= MAX_U16_VOCAB else np.dtype(np.uint32)


def make_header(n_tokens: int, dtype: np.dtype) -> np.ndarray:
    header = np.zeros(HEADER_INTS, dtype="<i4")
    if np.dtype(dtype) == np.uint16:
        header[0], header[1] = MAGIC_U16, VERSION_U16
    elif np.dtype(dtype) == np.uint32:
        header[0], header[1] = MAGIC_U32, VERSION_U32
    else:
        raise ValueError(f"shard tokens must be uint16 or uint32, not {dtype}")
    if n_tokens >= 2**31:
        raise ValueError(f"{n_tokens} tokens do not fit the int32 header; lower tokenize.shard_tokens")
    header[2] = n_tokens
    return header


def write_shard(path: str, tokens: np.ndarray, doc_starts: np.ndarray) -> str:
    """Write `tokens` (uint16/uint32) and the `.idx` sidecar atomically; returns the .bin's sha256."""
    tokens = np.ascontiguousarray(tokens)
    header = make_header(len(tokens), tokens.dtype)
    body_h = hashlib.sha256(header.tobytes())
    data = tokens.astype(tokens.dtype.newbyteorder("<"), copy=False).tobytes()
    body_h.update(data)
    with storage.atomic_write(index_path(path)) as f:
        f.write(np.asarray(doc_starts, dtype="<u8").tobytes())
    with storage.atomic_write(path) as f:
        f.write(header.tobytes())
        f.write(data)
    return body_h.hexdigest()


def index_path(bin_path: str) -> str:
    if not bin_path.endswith(".bin"):
        raise ValueError(f"{bin_path}: a token shard's name ends in .bin")
    return bin_path[: -len(".bin")] + ".idx"


@dataclass(frozen=True)
class ShardHeader:
    magic: int
    version: int
    n_tokens: int
    dtype: np.dtype


def read_header(path: str) -> ShardHeader:
    """Parse and check a shard's header against its file size."""
    fs, p = storage.fs_and_path(path)
    with fs.open(p, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header; not a token shard")
    header = np.frombuffer(raw, dtype="<i4")
    magic, version, n = int(header[0]), int(header[1]), int(header[2])
    if (magic, version) == (MAGIC_U16, VERSION_U16):
        dtype = np.dtype("<u2")
    elif (magic, version) == (MAGIC_U32, VERSION_U32):
        dtype = np.dtype("<u4")
    else:
        raise ShardError(f"{path}: magic {magic} version {version} is not a token shard "
                         f"({MAGIC_U16} v{VERSION_U16} or {MAGIC_U32} v{VERSION_U32})")
    size = fs.size(p)
    expected = HEADER_BYTES + n * dtype.itemsize
    if size != expected:
        raise ShardError(f"{path}: header says {n} tokens ({expected} bytes) but the file has {size} bytes; "
                         f"the shard is truncated or was not written by tokenmill")
    return ShardHeader(magic, version, n, dtype)


def open_tokens(path: str) -> np.ndarray:
    """The tokens of a local shard, memory-mapped (no copy); header checked."""
    h = read_header(path)
    fs, p = storage.fs_and_path(path)
    if isinstance(fs, LocalFileSystem):
        return np.memmap(p, dtype=h.dtype, mode="r", offset=HEADER_BYTES, shape=(h.n_tokens,))
    with fs.open(p, "rb") as f:  # remote: read it whole
        f.seek(HEADER_BYTES)
        return np.frombuffer(f.read(), dtype=h.dtype)


def open_raw(path: str, dtype: np.dtype) -> np.ndarray:
    """A headerless token file (the stage's scratch): memory-mapped when local (as a plain ndarray
    view of the map: slicing a np.memmap costs ~10x more, and the writer slices once per document)."""
    fs, p = storage.fs_and_path(path)
    if isinstance(fs, LocalFileSystem):
        return np.memmap(p, dtype=dtype, mode="r").view(np.ndarray) if fs.size(p) else np.empty(0, dtype)
    with fs.open(p, "rb") as f:
        return np.frombuffer(f.read(), dtype=dtype)


def read_index(bin_path: str, n_tokens: int | None = None) -> np.ndarray:
    """Document start offsets (uint64), checked to be increasing and inside the shard."""
    fs, p = storage.fs_and_path(index_path(bin_path))
    with fs.open(p, "rb") as f:
        idx = np.frombuffer(f.read(), dtype="<u8")
    if len(idx) and (idx[0] != 0 or np.any(np.diff(idx.astype(np.int64)) <= 0)
                     or (n_tokens is not None and idx[-1] >= n_tokens)):
        raise ShardError(f"{index_path(bin_path)}: document offsets are not increasing from 0 inside the shard")
    return idx


def doc_bounds(idx: np.ndarray, n_tokens: int) -> np.ndarray:
    """(documents + 1,) int64 bounds: document i is tokens[b[i]:b[i+1]]."""
    return np.append(idx.astype(np.int64), n_tokens)


def decode_shard(path: str, tokenizer) -> list[str]:
    """Every document's text, in shard order (BOS stripped): the inverse of the tokenize stage."""
    tokens = open_tokens(path)
    b = doc_bounds(read_index(path, len(tokens)), len(tokens))
    # skip_special_tokens=False: a document decodes to exactly its text, nothing else.
    return tokenizer.decode_batch([tokens[b[i] + 1 : b[i + 1]].tolist() for i in range(len(b) - 1)],
                                  skip_special_tokens=False)
