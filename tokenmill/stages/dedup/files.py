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


# ---- block files: named arrays behind a JSON header, readable by row range ----
#   magic (8 B) | header length (uint32 LE) | header JSON | zero padding to 64 B | arrays
# The header holds the caller's `meta` and, per array, dtype, shape, byte offset and the xxh3-64
# of its bytes. A reader can take a row range of one array (a seek, or a ranged GET on an object
# store) without reading the rest; `read_block_file(verify=True)` reads and checks everything.
BLOCK_MAGIC = b"TMBLOCK1"


class BlockFileError(ValueError):
    """A block file that is not one (foreign, truncated, or its bytes do not match its checksums)."""


def write_block_file(url: str, meta: dict, **arrays: np.ndarray) -> None:
    """Write `arrays` (C order) with `meta` atomically (temp + rename on local disks)."""
    import json

    import xxhash

    specs, offset = {}, 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        arrays[name] = a
        specs[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                       "xxh3": xxhash.xxh3_64_hexdigest(a.data)}
        offset += a.nbytes
    head = json.dumps({"meta": meta, "arrays": specs}, sort_keys=True).encode()
    start = -(-(len(BLOCK_MAGIC) + 4 + len(head)) // 64) * 64
    with storage.atomic_write(url) as f:
        f.write(BLOCK_MAGIC + len(head).to_bytes(4, "little") + head)
        f.write(b"\0" * (start - len(BLOCK_MAGIC) - 4 - len(head)))
        for a in arrays.values():
            f.write(a.data)


def read_block_header(url: str) -> dict:
    """The header of a block file, with "start" (byte offset of the arrays) added.
    Raises FileNotFoundError, or BlockFileError when it is not a block file."""
    import json

    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        lead = f.read(len(BLOCK_MAGIC) + 4)
        if len(lead) < len(BLOCK_MAGIC) + 4 or lead[: len(BLOCK_MAGIC)] != BLOCK_MAGIC:
            raise BlockFileError(f"{url}: not a tokenmill block file")
        n = int.from_bytes(lead[len(BLOCK_MAGIC):], "little")
        raw = f.read(n)
    try:
        head = json.loads(raw)
        arrays = head["arrays"]
        for spec in arrays.values():
            np.dtype(spec["dtype"])
            int(spec["offset"]), [int(s) for s in spec["shape"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BlockFileError(f"{url}: unreadable header ({e})") from None
    if len(raw) < n or not isinstance(head.get("meta"), dict):
        raise BlockFileError(f"{url}: truncated or malformed header")
    head["start"] = -(-(len(BLOCK_MAGIC) + 4 + n) // 64) * 64
    return head


def _spec(head: dict, name: str) -> tuple[np.dtype, list[int], int]:
    spec = head["arrays"].get(name)
    if spec is None:
        raise BlockFileError(f"no array {name!r} in block file (has {sorted(head['arrays'])})")
    dt = np.dtype(spec["dtype"])
    shape = [int(s) for s in spec["shape"]]
    return dt, shape, head["start"] + int(spec["offset"])


def _row_bytes(dt: np.dtype, shape: list[int]) -> int:
    return dt.itemsize * int(np.prod(shape[1:], dtype=np.int64))


def read_block_file(url: str, verify: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and every array; with `verify`, each array's bytes are checked against its xxh3."""
    import xxhash

    head = read_block_header(url)
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        f.seek(head["start"])
        blob = memoryview(f.read())
    out = {}
    for name in head["arrays"]:
        dt, shape, off = _spec(head, name)
        off -= head["start"]
        size = dt.itemsize * int(np.prod(shape, dtype=np.int64))
        if off < 0 or off + size > len(blob):
            raise BlockFileError(f"{url}: array {name!r} runs past the end of the file (truncated?)")
        data = blob[off : off + size]
        if verify and xxhash.xxh3_64_hexdigest(data) != head["arrays"][name]["xxh3"]:
            raise BlockFileError(f"{url}: array {name!r} does not match its checksum")
        out[name] = np.frombuffer(data, dt).reshape(shape)
    return head, out


def read_block_rows(url: str, head: dict, name: str, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of one array (one ranged read)."""
    dt, shape, off = _spec(head, name)
    if not 0 <= lo <= hi <= shape[0]:
        raise BlockFileError(f"{url}: rows [{lo}, {hi}) of {name!r} outside its {shape[0]} rows")
    rb = _row_bytes(dt, shape)
    fs, path = storage.fs_and_path(url)
    data = fs.cat_file(path, start=off + lo * rb, end=off + hi * rb) if hi > lo else b""
    if len(data) != (hi - lo) * rb:
        raise BlockFileError(f"{url}: {name!r} is truncated")
    return np.frombuffer(data, dt).reshape([hi - lo] + shape[1:])


def read_block_take(url: str, head: dict, name: str, rows: np.ndarray, gap: int = 64) -> np.ndarray:
    """The given rows (any order, repeats allowed) of one array: sorted unique rows, read as
    runs (rows closer than `gap` share a read), one open file on local disks, ranged reads else."""
    dt, shape, off = _spec(head, name)
    rb = _row_bytes(dt, shape)
    uniq, inverse = np.unique(np.asarray(rows, np.int64), return_inverse=True)
    out = np.empty([uniq.size] + shape[1:], dt)
    if uniq.size == 0:
        return out
    if uniq[0] < 0 or uniq[-1] >= shape[0]:
        raise BlockFileError(f"{url}: row {int(uniq[-1])} of {name!r} outside its {shape[0]} rows")
    cut = np.flatnonzero(np.diff(uniq) > gap) + 1
    firsts = np.split(uniq, cut)
    runs = [(int(r[0]), int(r[-1]) + 1) for r in firsts]
    fs, path = storage.fs_and_path(url)
    starts, ends = [off + a * rb for a, _ in runs], [off + b * rb for _, b in runs]
    if storage.is_local(fs):
        with open(path, "rb") as f:
            blobs = []
            for s, e in zip(starts, ends):
                f.seek(s)
                blobs.append(f.read(e - s))
    else:
        blobs = fs.cat_ranges([path] * len(runs), starts, ends)
    k = 0
    for (a, b), blob, run in zip(runs, blobs, firsts):
        if len(blob) != (b - a) * rb:
            raise BlockFileError(f"{url}: {name!r} is truncated")
        block = np.frombuffer(blob, dt).reshape([b - a] + shape[1:])
        out[k : k + run.size] = block[run - a]
        k += run.size
    return out[inverse.reshape(-1)]
