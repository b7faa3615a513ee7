"""Tokenizers, the token shard format, and its reader (what trainers use).

    from tokenmill.tokenize import TokenShards
    ds = TokenShards("runs/demo/tokens")    # checks headers and sha256 against the manifest
    for doc in ds.documents("val"): ...     # each document's tokens, BOS first

Shards are llm.c-compatible: `np.fromfile(path, dtype=np.uint16, offset=256*4)` reads one.
"""

from tokenmill.tokenize.reader import MANIFEST, MANIFEST_SCHEMA, TOKENIZER, TokenShards
from tokenmill.tokenize.shards import (
    HEADER_BYTES,
    MAGIC_U16,
    MAGIC_U32,
    ShardError,
    decode_shard,
    dtype_for_vocab,
    open_tokens,
    read_header,
    read_index,
    write_shard,
)
from tokenmill.tokenize.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    load_tokenizer,
    token_id,
    tokenizer_hash,
    train_bpe,
)

__all__ = [
    "DEFAULT_SPECIAL_TOKENS", "HEADER_BYTES", "MAGIC_U16", "MAGIC_U32", "MANIFEST", "MANIFEST_SCHEMA",
    "ShardError", "TOKENIZER", "TokenShards", "decode_shard", "dtype_for_vocab", "load_tokenizer",
    "open_tokens", "read_header", "read_index", "token_id", "tokenizer_hash", "train_bpe", "write_shard",
]
