"""The shard format: headers and dtypes (both magics), plain-numpy loading, damaged files, the tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from tokenmill.tokenize import (
    HEADER_BYTES,
    MAGIC_U16,
    MAGIC_U32,
    ShardError,
    decode_shard,
    dtype_for_vocab,
    read_header,
    read_index,
    train_bpe,
    write_shard,
)
from tokenmill.tokenize.shards import open_tokens


def test_dtype_follows_vocab_size():
    assert dtype_for_vocab(50257) == np.uint16
    assert dtype_for_vocab(65535) == np.uint16
    assert dtype_for_vocab(65536) == np.uint32
    assert dtype_for_vocab(128256) == np.uint32


@pytest.mark.parametrize("dtype,magic,version", [(np.uint16, MAGIC_U16, 1), (np.uint32, MAGIC_U32, 7)])
def test_header_and_plain_numpy_load(tmp_path, dtype, magic, version):
    tokens = np.array([0, 5, 9, 0, 65535, 3, 0, 7], dtype=dtype)
    if dtype == np.uint32:
        tokens[4] = 100_000  # only fits uint32
    path = str(tmp_path / "x_train_000000.bin")
    write_shard(path, tokens, np.array([0, 3, 6]))
    raw = np.fromfile(path, dtype=np.int32, count=256)
    assert (raw[0], raw[1], raw[2]) == (magic, version, len(tokens))
    assert not raw[3:].any()
    # how nanoGPT / llm.c load a shard: skip the 256 int32 header
    assert np.array_equal(np.fromfile(path, dtype=dtype, offset=256 * 4), tokens)
    h = read_header(path)
    assert (h.magic, h.n_tokens, h.dtype) == (magic, len(tokens), np.dtype(dtype))
    assert np.array_equal(open_tokens(path), tokens)
    assert read_index(path, len(tokens)).tolist() == [0, 3, 6]


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "a_train_000000.bin"
    write_shard(str(path), np.arange(100, dtype=np.uint16), np.array([0]))
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(ShardError, match="truncated"):
        read_header(str(path))
    path.write_bytes(b"\x01\x02\x03\x04" + data[4:])
    with pytest.raises(ShardError, match="not a token shard"):
        read_header(str(path))
    path.write_bytes(data[:100])
    with pytest.raises(ShardError, match="shorter than"):
        read_header(str(path))


def test_index_must_increase_from_zero(tmp_path):
    path = str(tmp_path / "a_train_000000.bin")
    write_shard(path, np.arange(10, dtype=np.uint16), np.array([0, 6, 4]))
    with pytest.raises(ShardError, match="not increasing"):
        read_index(path, 10)


def test_sha256_is_of_the_whole_file(tmp_path):
    import hashlib

    path = tmp_path / "a_train_000000.bin"
    sha = write_shard(str(path), np.arange(1000, dtype=np.uint16), np.array([0]))
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size == HEADER_BYTES + 2000


def test_tokenizer_round_trips_and_is_deterministic(tmp_path):
    texts = ["Grüße aus Köln — 東京 🙂\n\n  indented", "plain english text " * 20, "<|bos|> is text here"] * 30
    a = train_bpe(texts, 400)
    assert a.to_str() == train_bpe(texts, 400).to_str()
    bos = a.token_to_id("<|bos|>")
    assert bos == 0
    for t in texts[:3]:
        ids = a.encode(t).ids
        assert bos not in ids, "a literal <|bos|> in text must not become the BOS token"
        assert a.decode(ids, skip_special_tokens=False) == t


def test_decode_shard_strips_bos(tmp_path):
    texts = ["first doc", " second, with a leading space", "third\n"]
    tok = train_bpe(texts * 10, 300)
    bos = tok.token_to_id("<|bos|>")
    parts, starts = [], []
    for t in texts:
        starts.append(sum(len(p) for p in parts))
        parts.append([bos, *tok.encode(t).ids])
    path = str(tmp_path / "a_val_000000.bin")
    write_shard(path, np.array([i for p in parts for i in p], dtype=np.uint16), np.array(starts))
    assert decode_shard(path, tok) == texts
