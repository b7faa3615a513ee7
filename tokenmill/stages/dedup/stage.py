"""Dedup: exact and MinHash-LSH near-duplicate removal across all shards, with bounded memory per task.

In: the upstream step's document shards (Parquet). Out: per shard a drop list; `process()` then
drops each listed document as "exact_duplicate" (same lowercased word sequence as its kept
representative) or "near_duplicate", writing `meta["dedup"] = {"rep_id", "cluster_size"}`.

Steps, each a fan-out through `job.run_tasks` (the driver holds only counts):
  1. signatures   per shard: word n-gram MinHash (signatures.py), exact key → workdir/sig/
  2. against      earlier runs: their RUN/dedup/signatures/ (or, absent, computed from RUN/docs);
                  against_bands checks each persisted band file (part-*.bands) and finds where
                  this run's partitions start in it
  3. bands        per source: band keys (+ the exact key) partitioned by hash → workdir/bands/ (lsh.py);
                  earlier-run sources only when their band file cannot be read (missing, another
                  operating point, corrupt or foreign: counted in the log, the last two in a note)
  4. pairs        per partition: shared keys → candidate pairs, verified by sketch Jaccard (lsh.py);
                  reads its key range of each earlier run's band file
  5. components   Large-Star/Small-Star rounds over node-partitioned edge files (components.py)
  6. resolve, finalize: cluster sizes, representatives → workdir/drop_lists/{shard:05d}.parquet (resolve.py)
Survivor of a cluster: a document of an earlier run, else the earliest warc_date (by day;
`keep="latest"`: the latest), then input order (shard, row). Same for any worker or partition
count. Kept signatures persist in RUN/dedup/signatures/part-{shard:05d}.parquet (columns id,
warc_date, exact, sig, word_count; parameters in the Parquet metadata) for later runs, and
their band entries beside them in part-{shard:05d}.bands (lsh.persist_bands: keys sorted, so a
later run at the same bands, rows, seed, ngram, num_perm and signature version reads one range
per partition instead of recomputing them; checksummed, and a task output like the others).
Quality against brute-force ground truth: bench/dedup_quality.py; speed and per-task memory at
1M documents: bench/dedup_scale.py (figures in the README's benchmark table).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.stages.base import GlobalJob, GlobalStage, StageContext
from tokenmill.stages.dedup.components import (
    labels_task,
    large_star_task,
    small_star_task,
)
from tokenmill.stages.dedup.lsh import (
    against_bands_task,
    band_point,
    bands_task,
    bands_url_of,
    pairs_task,
)
from tokenmill.stages.dedup.minhash import MinHasher, lsh_params
from tokenmill.stages.dedup.resolve import finalize_task, resolve_task
from tokenmill.stages.dedup.signatures import (
    read_signatures,
    sig_params,
    signatures_task,
)

log = logging.getLogger(__name__)
ENTRIES_PER_PARTITION = 1_000_000  # band entries per pairs task (auto partitions)
MAX_ROUNDS = 64  # Large/Small-Star rounds are O(log² n); measured: 13 for a shuffled 30,000-node path


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True  # also cluster by exact key (same lowercased words) and name those drops exact_duplicate
    ngram: int = 5  # words per shingle (FineWeb: 5)
    # LSH bands × rows = hashes used. FineWeb uses 14 × 8 = 112; measured on the neardup set over
    # seeds 1-8, 14 × 8 misses up to 4% of the Jaccard >= 0.8 removals, 20 × 5 (+ verify) none.
    bands: int = 20
    rows: int = 5
    num_perm: int | None = None  # signature length; None: bands * rows
    threshold: float | None = None  # set: bands/rows from datasketch's optimal search at this Jaccard
    verify: float | None = 0.7  # keep a candidate pair only if its estimated Jaccard >= this; None: off
    seed: int = 1
    partitions: int | None = None  # band/edge partitions; None: auto, ~1M band entries each
    keep: Literal["earliest", "latest"] = "earliest"  # survivor by warc_date day, then input order
    against: tuple[str, ...] = ()  # earlier run directories whose documents count as already kept

    def __post_init__(self):
        for name in ("ngram", "bands", "rows", "seed"):
            if getattr(self, name) < (0 if name == "seed" else 1):
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold: must be in (0, 1), got {self.threshold}")
        if self.verify is not None and not 0.0 <= self.verify <= 1.0:
            raise ValueError(f"verify: must be in [0, 1], got {self.verify}")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError(f"partitions: must be >= 1 (or omitted for auto), got {self.partitions}")
        if self.num_perm is not None and self.threshold is None and self.num_perm < self.bands * self.rows:
            raise ValueError(f"num_perm: {self.num_perm} < bands*rows={self.bands * self.rows}")

    def lsh(self) -> tuple[int, int, int]:
        """(bands, rows, num_perm) actually used."""
        if self.threshold is not None:
            num_perm = self.num_perm or self.bands * self.rows
            b, r = lsh_params(self.threshold, num_perm)
            return b, r, num_perm
        return self.bands, self.rows, self.num_perm or self.bands * self.rows


class DedupStage(GlobalStage):
    name = "dedup"
    version = 1
    Config = DedupConfig

    def __init__(self, config: DedupConfig | None = None):
        super().__init__(config)
        self._drops: dict[str, tuple[str, int, str]] = {}

    # ---- driver: the global step ----
    def run_global(self, job: GlobalJob) -> None:
        cfg = self.config
        bands, rows, num_perm = cfg.lsh()
        hasher = MinHasher(num_perm=num_perm, ngram=cfg.ngram, seed=cfg.seed)
        w = job.workdir
        if job.fresh:  # leftovers of a run with other inputs or settings; kept when resuming
            for sub in ("sig", "against", "bands", "cc", "labels", "drops", "drop_lists"):
                storage.remove(storage.join(w, sub))
            storage.remove(storage.join(job.run_dir, "dedup", "signatures"))
        log.info("dedup: %d shards, %d bands x %d rows, %d against runs",
                 len(job.inputs), bands, rows, len(cfg.against))
        sig_urls = [storage.join(w, "sig", f"n{i:05d}.parquet") for i in range(len(job.inputs))]
        job.run_tasks("dedup.signatures", signatures_task,
                      [(src, out, hasher) for src, out in zip(job.inputs, sig_urls)])
        against, against_runs, persisted = self._against_sources(job, hasher)
        sources = [(u, i, True) for i, u in enumerate(sig_urls)] + [(u, i, False) for i, u in enumerate(against)]
        n_rows = [storage.num_rows(u) for u, _, _ in sources]
        point = band_point(sig_params(hasher), bands, rows, cfg.exact)

        def partitions(read: set) -> int:
            """~1M band entries of this run and of recomputed earlier sources per partition; a
            persisted band file is read in bounded chunks, so it does not count."""
            total = sum(n for n, (_, i, new) in zip(n_rows, sources) if new or i not in read)
            return cfg.partitions or max(1, math.ceil(total * (bands + cfg.exact) / ENTRIES_PER_PARTITION))

        maybe = {i for i, p in enumerate(persisted) if p}
        parts = partitions(maybe)
        read, why = self._against_bands(job, against, maybe, point, num_perm, parts)
        if set(read) != maybe and partitions(set(read)) != parts:  # recomputed ones count: again
            parts = partitions(set(read))
            read, _ = self._against_bands(job, against, set(read), point, num_perm, parts)
        self._say_against_bands(job, len(against), read, why)
        job.run_tasks("dedup.bands", bands_task, [
            (u, i, new, storage.join(w, "bands"), parts, bands, rows, num_perm, cfg.exact, cfg.keep == "latest")
            for u, i, new in sources if new or i not in read])
        cc = storage.join(w, "cc")
        job.run_tasks("dedup.pairs", pairs_task, [
            (storage.join(w, "bands", f"p{p:05d}"), storage.join(cc, "000"), p, parts, cfg.verify, 32,
             tuple((bands_url_of(against[i]), i, b[p], b[p + 1]) for i, b in sorted(read.items()) if b[p + 1] > b[p]),
             cfg.keep == "latest")
            for p in range(parts)])
        final = self._components(job, cc, parts)
        labels = storage.join(w, "labels")
        job.run_tasks("dedup.labels", labels_task, [(final, p, labels) for p in range(parts)])
        names = {f"n{i:05d}": u for i, u in enumerate(sig_urls)} | {f"a{i:05d}": u for i, u in enumerate(against)}
        present = [p.rstrip("/").rsplit("/", 1)[-1] for p in storage.glob(storage.join(labels, "*"))]
        drops = storage.join(w, "drops")
        resolved = job.run_tasks("dedup.resolve", resolve_task,
                                 [(n, names[n], labels, drops) for n in sorted(present)])
        if cfg.against:  # lineage: how many of this run's documents each earlier run removed
            removed = dict.fromkeys(cfg.against, 0)
            for n, r in zip(sorted(present), resolved):
                if n.startswith("a"):
                    removed[against_runs[int(n[1:])]] += r.value.get("removed_by_earlier", 0)
            job.record("dedup_against", removed)
        job.run_tasks("dedup.finalize", finalize_task, [
            (i, sig_urls[i], drops, drop_list_url(w, shard),
             storage.join(job.run_dir, "dedup", "signatures", f"part-{shard:05d}.parquet"), cfg.exact,
             point, num_perm)
            for i, shard in enumerate(job.shards)])

    def _components(self, job: GlobalJob, cc: str, parts: int) -> str:
        """Alternate Large-Star and Small-Star until the edges form stars; returns the final round dir."""
        for r in range(MAX_ROUNDS):
            cur = storage.join(cc, f"{2 * r:03d}")
            mid, nxt = storage.join(cc, f"{2 * r + 1:03d}"), storage.join(cc, f"{2 * r + 2:03d}")
            res = job.run_tasks("dedup.large_star", large_star_task, [(cur, p, mid, parts) for p in range(parts)])
            not_star = sum(t.value["not_star"] for t in res)
            log.info("dedup: components round %d, %d nodes not yet in stars", r, not_star)
            if not_star == 0:
                return cur
            job.run_tasks("dedup.small_star", small_star_task, [(mid, p, nxt, parts) for p in range(parts)])
        raise RuntimeError(f"dedup: connected components did not converge in {MAX_ROUNDS} rounds")

    def _against_bands(self, job: GlobalJob, against: list[str], idx: set[int], point: dict,
                       num_perm: int, parts: int) -> tuple[dict[int, list[int]], dict[str, list[str]]]:
        """Earlier-run sources (of `idx`: persisted signature files) whose persisted band entries
        (lsh.persist_bands) this run reads: {source index: start of each partition in its band
        file}, and why the others are not read ({kind: [reason]}). Those (and sources whose
        signatures were computed from RUN/docs) get their band entries recomputed by bands_task."""
        if not idx:
            return {}, {}
        idx = sorted(idx)
        n = max(1, min(len(idx), job.total_cpus))  # few tasks: a check is one read and a checksum per file
        groups = [idx[g::n] for g in range(n)]
        res = job.run_tasks("dedup.against_bands", against_bands_task, [
            ([(bands_url_of(against[i]), against[i]) for i in group], point, num_perm, parts) for group in groups])
        read, why = {}, {}
        for group, r in zip(groups, res):
            for i, v in zip(group, r.value["files"]):
                if v["use"]:
                    read[i] = v["bounds"]
                else:
                    why.setdefault(v["kind"], []).append(v["reason"])
        return read, why

    def _say_against_bands(self, job: GlobalJob, n_against: int, read: dict, why: dict) -> None:
        """Log how many earlier sources' band entries are read and why the others are recomputed;
        corrupt or foreign band files are named in a note of the run."""
        if not n_against:
            return
        why = dict(why)
        no_sig = n_against - len(read) - sum(len(v) for v in why.values())
        if no_sig:
            why["no_persisted_signatures"] = [""] * no_sig
        counts = {k: len(v) for k, v in sorted(why.items())}
        log.info("dedup: band entries of %d of %d earlier signature files read from their runs; %d recomputed %s",
                 len(read), n_against, n_against - len(read), counts or "")
        for kind, reasons in why.items():
            if kind in ("other_point", "missing"):
                log.info("dedup: band entries recomputed (%s), e.g. %s", kind, reasons[0])
            elif kind in ("corrupt", "foreign"):
                msg = (f"dedup.against: {len(reasons)} persisted band file(s) {kind}, their band entries "
                       f"recomputed from the signatures: {'; '.join(reasons[:3])}")
                log.warning(msg)
                job.note(msg)
        job.record("dedup_against_bands", {"read": len(read), "recomputed": counts})

    def _against_sources(self, job: GlobalJob, hasher: MinHasher) -> tuple[list[str], list[str], list[bool]]:
        """Signature files of the earlier runs (persisted ones when their parameters match, else
        computed from RUN/docs/part-*.parquet into the workdir), the run each came from, and
        whether it is the run's persisted file."""
        urls, todo, runs, persisted_flags = [], [], [], []
        for run in self.config.against:
            persisted = storage.glob(storage.join(run, "dedup", "signatures", "part-*.parquet"))
            if persisted and read_signatures(persisted[0], ["id"])[1] == sig_params(hasher):
                urls.extend(persisted)
                runs.extend([run] * len(persisted))
                persisted_flags.extend([True] * len(persisted))
                continue
            docs = storage.glob(storage.join(run, "docs", "part-*.parquet"))
            if not (docs or persisted):
                raise ValueError(f"dedup.against: no {run}/docs/part-*.parquet; is {run} a finished run?")
            for d in docs:
                out = storage.join(job.workdir, "against", f"a{len(urls):05d}.parquet")
                todo.append((d, out, hasher))
                urls.append(out)
                runs.append(run)
                persisted_flags.append(False)
        if todo:
            log.info("dedup: %d earlier signature files computed from documents (none persisted with "
                     "these parameters)", len(todo))
            job.run_tasks("dedup.against_signatures", signatures_task, todo)
        return urls, runs, persisted_flags

    # ---- per shard: apply ----
    def begin_shard(self, shard: int, workdir: str) -> None:
        url = drop_list_url(workdir, shard)
        if not storage.exists(url):
            raise FileNotFoundError(f"dedup: no drop list {url}; run the dedup global step first")
        t = storage.read_table(url).to_pydict()
        self._drops = {i: (rep, size, reason) for i, rep, size, reason in
                       zip(t["id"], t["rep_id"], t["cluster_size"], t["reason"])}

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        hit = self._drops.get(doc.id)
        if hit is None:
            return doc
        rep, size, reason = hit
        doc.meta["dedup"] = {"rep_id": rep, "cluster_size": size}
        ctx.drop(doc, reason)
        return None


def drop_list_url(workdir: str, shard: int) -> str:
    return storage.join(workdir, "drop_lists", f"{shard:05d}.parquet")
