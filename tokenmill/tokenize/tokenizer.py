"""Tokenizers: train a byte-level BPE on sample text, or load a user's `tokenizer.json`.

In: an iterable of texts (training) or a path (loading). Out: a `tokenizers.Tokenizer` whose
`decode(encode(text).ids)` gives back `text` exactly (byte-level: any UTF-8 round-trips).
Nothing is downloaded. Training is deterministic for the same texts in the same order (the
test trains twice and compares the JSON). Measured: 2.9 MB of real text (75 languages),
vocab 32768: ~3 s on this machine's 2 shared cores; loading that tokenizer.json: ~0.09 s.

Special tokens (`<|bos|>`, ...) are added to the vocabulary, but literal occurrences in
document text are encoded as ordinary text (`encode_special_tokens = True`), so a web page
that contains the string "<|bos|>" cannot forge a document boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

DEFAULT_SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens=DEFAULT_SPECIAL_TOKENS,
              min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE with `vocab_size` entries at most (fewer when the text has too few merges)."""
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 byte tokens plus "
                         f"{len(special_tokens)} special tokens; use at least {256 + len(special_tokens)}")
    tok = Tokenizer(models.BPE())
    # No prefix space: a document decodes to exactly its text. use_regex: GPT-2's split rules.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),  # ids 0..k-1, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return prepare(tok)


def prepare(tok: Tokenizer) -> Tokenizer:
    """Make literal special-token strings in text encode as text, not as special tokens."""
    tok.encode_special_tokens = True
    return tok


def load_tokenizer(path: str) -> Tokenizer:
    """A `tokenizer.json` (local path or fsspec URL) → a prepared `Tokenizer`."""
    from tokenmill import storage

    if not storage.exists(path):
        raise ValueError(f"tokenizer file {path} not found; give a path to a tokenizer.json")
    fs, p = storage.fs_and_path(path)
    with fs.open(p, "r") as f:
        return prepare(Tokenizer.from_str(f.read()))


def tokenizer_hash(tok: Tokenizer) -> str:
    """sha256 of the tokenizer's canonical JSON: equal hashes, equal tokenization."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()


def token_id(tok: Tokenizer, token: str) -> int:
    tid = tok.token_to_id(token)
    if tid is None:
        raise ValueError(f"token {token!r} is not in the tokenizer's vocabulary; add it as a special token or set "
                         f"tokenize.bos_token to one the tokenizer has (e.g. '<|endoftext|>' for GPT-2)")
    return tid
