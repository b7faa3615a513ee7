"""The chat format: three special tokens, a conversation rendered to ids plus a loss mask, and
the JSONL readers for conversations and preference pairs (with errors that name the line).

    BOS <|user|> What is 3 + 5? <|end|> <|assistant|> 8 <|end|> [<|user|> ... <|end|> <|assistant|> ...]
    mask  0   0      0 ...    0    0         0        1    1

In: `{"messages": [{"role": "user"|"assistant", "content": str}, ...]}` per line (SFT) or
`{"prompt": str, "chosen": str, "rejected": str}` per line (RM). Out: token ids and a mask that
is 1 on the assistant's tokens and the `<|end|>` that closes each of its turns (so the model
learns to stop), 0 elsewhere. The tokens are appended to a checkpoint's tokenizer (ids
vocab, vocab+1, vocab+2); literal "<|user|>" in a message encodes as text, so content cannot
forge a turn. Cost: ~2,900 arithmetic conversations rendered per second (this machine, shared).
"""

from __future__ import annotations

import json
import os

from tokenizers import AddedToken, Tokenizer

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (USER, ASSISTANT, END)
ROLES = ("user", "assistant")


class DataError(ValueError):
    """Bad user input (a missing file, an empty or malformed JSONL line): the CLI exits 2 with it."""


def add_chat_tokens(tok: Tokenizer) -> Tokenizer:
    """Append the chat tokens if the tokenizer lacks them (a base checkpoint's); idempotent."""
    missing = [t for t in CHAT_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return tok


class ChatFormat:
    """Renders conversations with a tokenizer that has the chat tokens."""

    def __init__(self, tok: Tokenizer, bos_id: int):
        self.tok, self.bos = tok, bos_id
        ids = [tok.token_to_id(t) for t in CHAT_TOKENS]
        if None in ids:
            raise DataError("the tokenizer has no chat tokens; fine-tune a base checkpoint with `tokenmill train sft` first")
        self.user, self.assistant, self.end = ids

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def render(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """A conversation → (ids, mask), equal lengths; mask 1 on assistant content and its closing <|end|>."""
        ids, mask = [self.bos], [0]
        for m in messages:
            role_id = self.user if m["role"] == "user" else self.assistant
            body = self.encode(m["content"]) + [self.end]
            ids += [role_id] + body
            mask += [0] + [int(m["role"] == "assistant")] * len(body)
        return ids, mask

    def prompt(self, user_text: str) -> list[int]:
        """What the model sees before it answers: BOS <|user|> text <|end|> <|assistant|>."""
        return [self.bos, self.user] + self.encode(user_text) + [self.end, self.assistant]

    def reply(self, new_ids: list[int]) -> str:
        """Sampled ids after the prompt → the assistant's text (up to its <|end|>)."""
        if self.end in new_ids:
            new_ids = new_ids[: new_ids.index(self.end)]
        return self.tok.decode(new_ids, skip_special_tokens=False)


def read_jsonl(path: str, what: str) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; raises DataError naming the file and line otherwise."""
    if not os.path.exists(path):
        raise DataError(f"{what} file {path} not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: a JSON object expected, got {type(row).__name__}")
            rows.append((n, row))
    if not rows:
        raise DataError(f"{path} holds no {what}; write one JSON object per line")
    return rows


def read_conversations(path: str) -> list[list[dict]]:
    """`{"messages": [{"role", "content"}, ...]}` lines → message lists (each with an assistant turn)."""
    out = []
    for n, row in read_jsonl(path, "conversations"):
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f'{path}:{n}: expected {{"messages": [{{"role": "user", "content": "..."}}, ...]}}')
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{path}:{n}: each message needs a role in {ROLES} and a string content; got {m!r}")
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(f"{path}:{n}: no assistant message, nothing to learn from")
        out.append(msgs)
    return out


def read_preferences(path: str) -> list[dict]:
    """`{"prompt", "chosen", "rejected"}` lines (strings) → dicts."""
    out = []
    for n, row in read_jsonl(path, "preference pairs"):
        if not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise DataError(f'{path}:{n}: expected {{"prompt": str, "chosen": str, "rejected": str}}; got keys {sorted(row)}')
        out.append(row)
    return out


def split(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle, then (train, val); val holds at least one item, train too."""
    import random

    if len(items) < 2:
        raise DataError(f"{len(items)} example(s): need at least 2, one to train on and one to validate")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]
