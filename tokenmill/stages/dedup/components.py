"""Connected components of the duplicate graph, without a single-machine step.

Alternating Large-Star / Small-Star rounds (Kiveris et al., "Connected Components in MapReduce
and Beyond", 2014) over edge files partitioned by node hash. Each task holds only its
partition's edges, so no task needs the whole graph; rounds are O(log² n) (a shuffled path, the
worst shape for label propagation, is in the tests). The graph has converged when every node
has at most one smaller neighbour and nodes with one have no larger neighbour: then every
component is a star around its smallest gid, i.e. its survivor (see lsh.py). Then `labels_task`
writes leaf → root, grouped by the root's source, for resolve.py.
"""

from __future__ import annotations

import numpy as np

from tokenmill import storage
from tokenmill.stages.base import TaskResult
from tokenmill.stages.dedup.files import U64, load_npz, peak_rss_mb, save_npz
from tokenmill.stages.dedup.lsh import NEW_BIT, SRC_SHIFT, write_edges
from tokenmill.stats import StageStats


def _load_edges(part_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Unique (u, v) rows of one partition, sorted by u then v."""
    files = storage.glob(storage.join(part_dir, "*.npz"))
    if not files:
        return np.zeros(0, U64), np.zeros(0, U64)
    data = [load_npz(f) for f in files]
    u = np.concatenate([d["u"] for d in data])
    v = np.concatenate([d["v"] for d in data])
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    keep = np.concatenate(([True], (u[1:] != u[:-1]) | (v[1:] != v[:-1])))
    return u[keep], v[keep]


def _groups(u: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.concatenate(([True], u[1:] != u[:-1]))) if u.size else np.zeros(0, np.int64)


def large_star_task(in_dir: str, part: int, out_dir: str, parts: int) -> TaskResult:
    """Input: undirected edges, both directions, keyed by u. For each u with m = min(u, N(u)),
    emit (v, m) for every neighbour v > u, keyed by v (the larger end) for small-star.
    Returns value["not_star"]: nodes that break the converged (star) shape in the input."""
    u, v = _load_edges(storage.join(in_dir, f"p{part:05d}"))
    starts = _groups(u)
    not_star = 0
    if u.size:
        m = np.minimum(np.minimum.reduceat(v, starts), u[starts])
        smaller = np.add.reduceat((v < u).astype(np.int64), starts)
        larger = np.add.reduceat((v > u).astype(np.int64), starts)
        not_star = int(((smaller > 1) | ((smaller == 1) & (larger > 0))).sum())
        m_row = np.repeat(m, np.diff(np.append(starts, u.size)))
        out = v > u
        write_edges(out_dir, f"l{part:05d}", v[out], m_row[out], parts)
    return TaskResult(stats=[StageStats("dedup")], value={"not_star": not_star, "edges": int(u.size),
                                                           "peak_mb": peak_rss_mb()})


def small_star_task(in_dir: str, part: int, out_dir: str, parts: int) -> TaskResult:
    """Input: edges (u, v) with v < u, keyed by u. With m = min N(u), link every x in N(u) ∪ {u}
    to m; output both directions keyed by each end, for large-star."""
    u, v = _load_edges(storage.join(in_dir, f"p{part:05d}"))
    if u.size:
        starts = _groups(u)
        m = np.minimum.reduceat(v, starts)
        m_row = np.repeat(m, np.diff(np.append(starts, u.size)))
        x = np.concatenate([v, u[starts]])
        mm = np.concatenate([m_row, m])
        keep = x != mm
        x, mm = x[keep], mm[keep]
        write_edges(out_dir, f"s{part:05d}", np.concatenate([x, mm]), np.concatenate([mm, x]), parts)
    return TaskResult(stats=[StageStats("dedup")], value={"edges": int(u.size), "peak_mb": peak_rss_mb()})


def source_name(gid: np.ndarray) -> np.ndarray:
    """'n00003' (shard 3 of this run) or 'a00001' (file 1 of the earlier runs) per gid."""
    if gid.size == 0:
        return np.zeros(0, "<U6")
    src = (gid >> U64(SRC_SHIFT)) & U64((1 << 20) - 1)
    new = (gid >> U64(NEW_BIT)).astype(bool)
    return np.char.add(np.where(new, "n", "a"), np.char.zfill(src.astype(str), 5))


def labels_task(in_dir: str, part: int, labels_dir: str) -> TaskResult:
    """Converged input: each node with a smaller neighbour is a leaf of that root. Write
    (leaf, root) grouped by the root's source."""
    u, v = _load_edges(storage.join(in_dir, f"p{part:05d}"))
    leaf = v < u
    u, v = u[leaf], v[leaf]
    names = source_name(v)
    for name in np.unique(names):
        sel = names == name
        save_npz(storage.join(labels_dir, str(name), f"p{part:05d}.npz"), leaf=u[sel], root=v[sel])
    return TaskResult(stats=[StageStats("dedup")], value={"leaves": int(u.size), "peak_mb": peak_rss_mb()})
