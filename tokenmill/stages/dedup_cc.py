"""Dedup fan-out tasks, part 2: connected components of the duplicate graph, then per-shard drop lists.

Components: alternating Large-Star / Small-Star rounds (Kiveris et al., "Connected Components
in MapReduce and Beyond", 2014) over edge files partitioned by node hash. Each task holds
only its partition's edges, so no task needs the whole graph; rounds are O(log² n), measured
2 on the neardup set and on 1M generated documents, 8/11/13 on shuffled paths of 300/3,000/
30,000 nodes (the worst shape for label propagation). The graph has converged when every
node has at most one smaller neighbour and nodes with one have no larger neighbour: then
every component is a star around its smallest gid, i.e. its survivor (see dedup_tasks).

Then: labels (leaf → root, grouped by the root's source) → resolve (per source: the root's
id, exact key and cluster size) → finalize (per shard of this run: the drop list, and the
kept signatures persisted for later runs).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import StageStats, TaskResult
from tokenmill.stages.dedup_tasks import (
    MAX_ROW, NEW_BIT, SRC_SHIFT, U64, exact_matrix, load_npz, peak_rss_mb, read_signatures, save_npz,
    write_edges,
)

DROP_SCHEMA = pa.schema([("row", pa.int32()), ("id", pa.string()), ("rep_id", pa.string()),
                         ("cluster_size", pa.int64()), ("reason", pa.string())])


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


def size_bucket(n: int) -> str:
    return str(n) if n <= 5 else "6-10" if n <= 10 else "11-100" if n <= 100 else "101+"


def resolve_task(name: str, sig_url: str, labels_dir: str, drops_dir: str) -> TaskResult:
    """Roots living in source `name`: look up their id and exact key, count cluster sizes,
    and send each leaf of this run its representative, grouped by the leaf's shard."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(labels_dir, name, "*.npz"))
    data = [load_npz(f) for f in files]
    leaf = np.concatenate([d["leaf"] for d in data])
    root = np.concatenate([d["root"] for d in data])
    table, _ = read_signatures(sig_url, ["id", "exact"])
    ids = table.column("id").to_pylist()
    exact = exact_matrix(table)
    roots, inverse, counts = np.unique(root, return_inverse=True, return_counts=True)
    sizes = counts + 1
    stats.counters["clusters"] = int(roots.size)
    for s in sizes:
        stats.counters[f"cluster_size.{size_bucket(int(s))}"] += 1
    new = (leaf >> U64(NEW_BIT)).astype(bool)
    leaf, inverse = leaf[new], inverse[new]
    root_row = (roots & U64(MAX_ROW)).astype(np.int64)[inverse]
    leaf_src = source_name(leaf)
    for shard in np.unique(leaf_src):
        sel = np.flatnonzero(leaf_src == shard)
        table_out = pa.table({
            "row": pa.array((leaf[sel] & U64(MAX_ROW)).astype(np.int32)),
            "rep_id": pa.array([ids[r] for r in root_row[sel]], pa.string()),
            "rep_exact0": pa.array(exact[root_row[sel], 0]),
            "rep_exact1": pa.array(exact[root_row[sel], 1]),
            "cluster_size": pa.array(sizes[inverse[sel]].astype(np.int64)),
        })
        with storage.atomic_write(storage.join(drops_dir, str(shard), f"{name}.parquet")) as f:
            pq.write_table(table_out, f)
    return TaskResult(stats=[stats], value={"peak_mb": peak_rss_mb()})


def finalize_task(shard: int, sig_url: str, drops_dir: str, drop_list_url: str, persist_url: str,
                  name_exact: bool = True) -> TaskResult:
    """Shard of this run: write its drop list (row, id, rep_id, cluster_size, reason) and persist
    the signatures of its kept documents for later runs (`against`). Reason "exact_duplicate"
    when the exact key equals the representative's (only with `name_exact`), else "near_duplicate"."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(drops_dir, f"n{shard:05d}", "*.parquet"))
    parts = []
    for f in files:
        fs, path = storage.fs_and_path(f)
        with fs.open(path, "rb") as fh:
            parts.append(pq.read_table(fh))
    table, _ = read_signatures(sig_url)
    exact = exact_matrix(table)
    ids = table.column("id").to_pylist()
    if parts:
        d = pa.concat_tables(parts)
        row = d.column("row").to_numpy().astype(np.int64)
        same = ((exact[row, 0] == d.column("rep_exact0").to_numpy())
                & (exact[row, 1] == d.column("rep_exact1").to_numpy()))
        same &= name_exact
        reason = np.where(same, "exact_duplicate", "near_duplicate")
        order = np.argsort(row)
        drops = pa.table({
            "row": pa.array(row[order].astype(np.int32)),
            "id": pa.array([ids[r] for r in row[order]], pa.string()),
            "rep_id": d.column("rep_id").take(pa.array(order)),
            "cluster_size": d.column("cluster_size").take(pa.array(order)),
            "reason": pa.array(reason[order].tolist(), pa.string()),
        }, schema=DROP_SCHEMA)
        stats.counters["exact_duplicates"] = int(same.sum())
        stats.counters["near_duplicates"] = int((~same).sum())
    else:
        row = np.zeros(0, np.int64)
        drops = DROP_SCHEMA.empty_table()
    with storage.atomic_write(drop_list_url) as f:
        pq.write_table(drops, f)
    kept = np.ones(table.num_rows, bool)
    kept[row] = False
    with storage.atomic_write(persist_url) as f:
        pq.write_table(table.filter(pa.array(kept)), f, compression="zstd")
    stats.docs_in, stats.docs_out = table.num_rows, int(kept.sum())
    return TaskResult(stats=[stats], outputs=[drop_list_url, persist_url], value={"peak_mb": peak_rss_mb()})
