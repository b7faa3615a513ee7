"""Batches for the trainer, read from the token shards through `tokenmill.tokenize.TokenShards`.

Train: B windows of T+1 tokens, each starting at a random document start (a BOS), drawn with
a generator seeded by (seed, step): batch `step` is the same whether or not the run was
resumed. Val: a fixed list of BOS-aligned windows from the val split, the same every eval.
In: a tokens directory. Out: (x, y) int64 tensors (B, T) on the device; y is x shifted by one.
Cost: ~0.2 ms per 16x128 batch from memory-mapped shards.
"""

from __future__ import annotations

import numpy as np
import torch

from tokenmill.tokenize import TokenShards


class TrainBatches:
    def __init__(self, ds: TokenShards, block_size: int, batch_size: int, seed: int, device: str):
        self.T, self.B, self.seed, self.device = block_size, batch_size, seed, device
        self.shards: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []  # document starts with room for a whole window
        for row in ds.shards("train"):
            tokens, bounds = ds.tokens(row), ds.bounds(row)
            ok = bounds[:-1][bounds[:-1] + block_size + 1 <= len(tokens)]
            if len(ok):
                self.shards.append(tokens)
                self.starts.append(ok)
        assert self.starts, (
            f"no train shard in {ds.dir} holds a window of {block_size + 1} tokens; "
            f"lower --block-size or tokenize more text"
        )
        counts = np.array([len(s) for s in self.starts], dtype=np.float64)
        self.weights = counts / counts.sum()  # shards by number of usable starts

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        shard_ids = rng.choice(len(self.shards), size=self.B, p=self.weights)
        rows = []
        for s in shard_ids:
            start = int(self.starts[s][rng.integers(len(self.starts[s]))])
            rows.append(self.shards[s][start : start + self.T + 1].astype(np.int64))
        return to_device(np.stack(rows), self.device)


def val_batches(ds: TokenShards, block_size: int, batch_size: int, max_batches: int, device: str) -> list:
    """Up to `max_batches` fixed (x, y) batches from the val split. A val split with short
    documents only still gives windows: they shrink to the longest that fits a val shard."""
    assert ds.shards("val"), f"{ds.dir} has no val split; tokenize with val_fraction > 0 or val_min_documents > 0"
    size = min(block_size + 1, max(r["tokens"] for r in ds.shards("val")))
    assert size >= 2, f"the val split of {ds.dir} holds fewer than 2 tokens"
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
