"""Batches for the trainer, read from the token shards through `tokenmill.tokenize.TokenShards`.

Train: B windows of T+1 tokens, each starting at a random document start (a BOS), drawn with
a generator seeded by (seed, step): batch `step` is the same whether or not the run was
resumed. Val: a fixed list of BOS-aligned windows from the val split, the same every eval.
In: a tokens directory. Out: (x, y) int64 tensors (B, T) on the device; y is x shifted by one.
Cost: ~0.2 ms per 16x128 batch from memory-mapped shards.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch

from tokenmill.tokenize import TokenShards


class BlendError(ValueError):
    """Token folders that cannot be trained on together (the CLI exits 2 with this message)."""


class Blend:
    """Several token folders trained on together (snapshots, or a web run plus a curated source).

    Each batch row's folder is drawn by `weights` (default: each folder's share of train tokens).
    Refused, naming the folders: a folder with no tokens; folders made with different tokenizers
    (their token ids mean different things) or different token dtypes."""

    def __init__(self, dirs: list[str], weights: list[float] | None = None):
        if not dirs:
            raise BlendError("give at least one --tokens folder")
        if weights is not None and (len(weights) != len(dirs) or min(weights) < 0 or sum(weights) <= 0):
            raise BlendError(f"--weights: give one non-negative weight per --tokens folder ({len(dirs)}), not all 0")
        self.sets: list[TokenShards] = []
        for d in dirs:
            try:
                self.sets.append(TokenShards(d))
            except ValueError as e:
                raise BlendError(f"no tokens in {d}: {e}") from None
        first = self.sets[0]
        for ds in self.sets[1:]:
            if ds.tokenizer_sha256 != first.tokenizer_sha256:
                raise BlendError(f"{first.dir} and {ds.dir} were made with different tokenizers (tokenizer sha256 "
                                 f"{first.tokenizer_sha256[:12]} vs {ds.tokenizer_sha256[:12]}): their token ids do not "
                                 f"mean the same; tokenize one with the other's (tokenize.tokenizer: RUN)")
            if ds.dtype != first.dtype:
                raise BlendError(f"{first.dir} holds {first.dtype} tokens, {ds.dir} {ds.dtype}: use one tokenizer")
        self.train_tokens = [sum(int(r["tokens"]) for r in ds.shards("train")) for ds in self.sets]
        w = np.array(weights if weights is not None else self.train_tokens, dtype=np.float64)
        self.weights = w / w.sum()
        names = [os.path.basename(os.path.dirname(os.path.normpath(ds.dir))) or ds.dir for ds in self.sets]
        self.names = names if len(set(names)) == len(names) else [f"{i}:{n}" for i, n in enumerate(names)]
        # what a checkpoint records and checks on --resume: these folders at these weights
        self.manifest_sha256 = first.manifest_sha256 if len(self.sets) == 1 else hashlib.sha256(json.dumps(
            [[ds.manifest_sha256 for ds in self.sets], self.weights.round(6).tolist()]).encode()).hexdigest()
        self.dir, self.vocab_size, self.bos_id = first.dir, first.vocab_size, first.bos_id

    def bytes_per_token(self, split: str) -> float:
        return float(sum(w * ds.bytes_per_token(split) for w, ds in zip(self.weights, self.sets)))

    def describe(self, seed: int, steps: int, batch_size: int) -> str:
        """The mixture asked for and the one realised by the batches of the first `steps` steps."""
        if len(self.sets) == 1:
            return f"tokens: {self.dir} ({self.train_tokens[0]:,} train tokens)"
        n = np.zeros(len(self.sets))
        for step in range(steps):
            n += np.bincount(np.random.default_rng([seed, step]).choice(len(self.sets), size=batch_size, p=self.weights),
                             minlength=len(self.sets))
        parts = [f"{name} weight {w:.2f} ({t:,} train tokens) → {c / n.sum():.1%} of rows"
                 for name, w, t, c in zip(self.names, self.weights, self.train_tokens, n)]
        return f"blend over the first {steps} steps: " + "; ".join(parts)


class TrainBatches:
    def __init__(self, data: TokenShards | Blend, block_size: int, batch_size: int, seed: int, device: str):
        self.T, self.B, self.seed, self.device = block_size, batch_size, seed, device
        blend = data if isinstance(data, Blend) else None
        sets = blend.sets if blend else [data]
        self.src_weights = blend.weights if blend else np.ones(1)
        self.sources = [self._windows(ds, block_size) for ds in sets]  # per folder: (shards, starts, weights)

    @staticmethod
    def _windows(ds: TokenShards, block_size: int):
        shards, starts = [], []  # document starts with room for a whole window
        for row in ds.shards("train"):
            tokens, bounds = ds.tokens(row), ds.bounds(row)
            ok = bounds[:-1][bounds[:-1] + block_size + 1 <= len(tokens)]
            if len(ok):
                shards.append(tokens)
                starts.append(ok)
        if not starts:
            raise ValueError(f"no train shard in {ds.dir} holds a window of {block_size + 1} tokens; "
                             f"lower --block-size or tokenize more text")
        counts = np.array([len(s) for s in starts], dtype=np.float64)
        return shards, starts, counts / counts.sum()  # shards by number of usable starts

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        if len(self.sources) > 1:  # first draw: each row's folder (Blend.describe replays it)
            src_ids = rng.choice(len(self.sources), size=self.B, p=self.src_weights)
            picks = [(s, rng.choice(len(self.sources[s][0]), p=self.sources[s][2])) for s in src_ids]
        else:
            picks = [(0, i) for i in rng.choice(len(self.sources[0][0]), size=self.B, p=self.sources[0][2])]
        rows = []
        for s, i in picks:
            shards, starts, _ = self.sources[s]
            start = int(starts[i][rng.integers(len(starts[i]))])
            rows.append(shards[i][start : start + self.T + 1].astype(np.int64))
        return to_device(np.stack(rows), self.device)


def val_batches(ds: TokenShards, block_size: int, batch_size: int, max_batches: int, device: str) -> list:
    """Up to `max_batches` fixed (x, y) batches from the val split. A val split with short
    documents only still gives windows: they shrink to the longest that fits a val shard."""
    if not ds.shards("val"):
        raise ValueError(f"{ds.dir} has no val split; tokenize with val_fraction > 0 or val_min_documents > 0")
    size = min(block_size + 1, max(r["tokens"] for r in ds.shards("val")))
    if size < 2:
        raise ValueError(f"the val split of {ds.dir} holds fewer than 2 tokens")
    wins = []
    for w in ds.windows("val", size):
        wins.append(w.astype(np.int64))
        if len(wins) == batch_size * max_batches:
            break
    if not wins:  # every val shard's documents start too late for a whole aligned window
        wins = [w.astype(np.int64) for w, _ in zip(ds.windows("val", size, bos_aligned=False), range(batch_size))]
    return [to_device(np.stack(wins[i : i + batch_size]), device) for i in range(0, len(wins), batch_size)]


def to_device(rows: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.from_numpy(rows)
    x, y = t[:, :-1], t[:, 1:]
    if device.startswith("cuda"):  # pinned memory: the copy overlaps the previous step
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous(), y.contiguous()
