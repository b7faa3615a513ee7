"""After components: resolve (per source: the root's id, exact key and cluster size) → finalize
(per shard of this run: the drop list, and the kept signatures persisted for later runs)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import TaskResult
from tokenmill.stages.dedup.components import source_name
from tokenmill.stages.dedup.files import U64, load_npz, peak_rss_mb
from tokenmill.stages.dedup.lsh import MAX_ROW, NEW_BIT, bands_url_of, persist_bands
from tokenmill.stages.dedup.signatures import exact_matrix, read_signatures
from tokenmill.stats import StageStats

DROP_SCHEMA = pa.schema([("row", pa.int32()), ("id", pa.string()), ("rep_id", pa.string()),
                         ("cluster_size", pa.int64()), ("reason", pa.string())])


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
    # roots in an earlier run's source ("a..."): every leaf of this run here is removed because of it
    removed_by_earlier = int(new.sum()) if name.startswith("a") else 0
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
    return TaskResult(stats=[stats], value={"peak_mb": peak_rss_mb(), "removed_by_earlier": removed_by_earlier})


def finalize_task(shard: int, sig_url: str, drops_dir: str, drop_list_url: str, persist_url: str,
                  name_exact: bool = True, point: dict | None = None, num_perm: int | None = None) -> TaskResult:
    """Shard of this run: write its drop list (row, id, rep_id, cluster_size, reason) and persist
    the signatures of its kept documents for later runs (`against`), and with `point`
    (lsh.band_point) their band entries beside them (lsh.persist_bands), so a later run at the
    same operating point reads them instead of recomputing. Reason "exact_duplicate"
    when the exact key equals the representative's (only with `name_exact`), else "near_duplicate"."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(drops_dir, f"n{shard:05d}", "*.parquet"))
    parts = []
    for f in files:
        parts.append(storage.read_table(f))
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
    kept_table = table.filter(pa.array(kept))
    with storage.atomic_write(persist_url) as f:
        pq.write_table(kept_table, f, compression="zstd")
    outputs = [drop_list_url, persist_url]
    if point is not None:
        outputs.append(bands_url_of(persist_url))
        stats.counters["band_entries_persisted"] = persist_bands(outputs[-1], kept_table, point, num_perm)
    stats.docs_in, stats.docs_out = table.num_rows, int(kept.sum())
    return TaskResult(stats=[stats], outputs=outputs, value={"peak_mb": peak_rss_mb()})
