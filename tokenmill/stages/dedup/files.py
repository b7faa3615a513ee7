"""Dedup's scratch files: numpy arrays as .npz (local paths or fsspec URLs), node partitions,
and the peak memory each task reports."""

from __future__ import annotations

import io
import resource

import numpy as np

from tokenmill import storage
from tokenmill.stages.dedup.minhash import mix64

U64 = np.uint64


def peak_rss_mb() -> float:
    """Peak resident memory of this process image in MB: VmHWM on Linux (reset by exec, unlike
    ru_maxrss, which keeps the forking parent's size); elsewhere ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partition_of(values: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each uint64 (hash-spread, so sequential gids spread evenly)."""
    return (mix64(values.astype(U64) ^ U64(0xD6E8FEB86659FD93)) >> U64(33)) % U64(parts)


def save_npz(url: str, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with storage.atomic_write(url) as f:
        f.write(buf.getvalue())


def load_npz(url: str) -> dict[str, np.ndarray]:
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        return {k: data[k] for k in data.files}


def npz_arrays(url: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """Only the named arrays of an .npz (members are read lazily)."""
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f, np.load(f) as data:
        return [data[n] for n in names]
