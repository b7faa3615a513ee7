"""Where a run's documents are, and which rule decided each: shared by report, sample and show.

Every document that a stage saw ends in exactly one place: `removed/<stage>/` (the stage that
dropped it, with `reason`) or `docs/` (kept to the end). So the documents that entered stage S
are those of `removed/<S>`, of `removed/<T>` for every T after S, and of `docs/`; those that
S kept are the same minus `removed/<S>`. Intermediate step outputs (`work/step<i>/`) hold a
document as it left an earlier step (e.g. its text before PII scrubbing), when still there.

Rules come from the run's resolved config and the filters' own tables
(`tokenmill.filters.quality.FAMILIES`), so a threshold drawn or quoted is the one that ran.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tokenmill import storage

KEPT = None  # the "stage" of docs/: nobody dropped them

# C0/C1 control codes (ESC starts terminal sequences, CR rewrites a line) and bidirectional
# overrides (they reorder what a reader sees): shown as escapes, never sent to a terminal.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str | None) -> str:
    """Crawled text made safe to print: control codes and bidi overrides become visible escapes."""
    if text is None:
        return ""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       text)


def config_of(run: dict) -> dict:
    return json.loads(run["config"]) if run.get("config") else {}


def doc_stages(run: dict) -> list[str]:
    """The configured stages in pipeline order (those that may have a removed/<stage>/)."""
    return list(config_of(run).get("stages") or [])


def places(run_dir: str, run: dict, entering: str | None = None, kept_by: str | None = None) -> list[tuple]:
    """[(stage that dropped them or KEPT, directory)]: every document, or those that entered
    stage `entering`, or those that stage `kept_by` kept."""
    stages = doc_stages(run)
    start = entering or kept_by
    if start is not None and start not in stages:
        raise ValueError(f"no stage {start!r} in this run (stages: {', '.join(stages)})")
    after = stages[stages.index(start) + (1 if kept_by else 0):] if start else stages
    return [(s, storage.join(run_dir, "removed", s)) for s in after] + [(KEPT, storage.join(run_dir, "docs"))]


def part_files(directory: str, max_parts: int | None = None) -> tuple[list[str], int]:
    """(part files to read, how many there are): at most `max_parts`, evenly spread."""
    files = storage.glob(storage.join(directory, "part-*.parquet")) if storage.exists(directory) else []
    if max_parts is None or len(files) <= max_parts:
        return files, len(files)
    step = len(files) / max_parts
    return [files[int(i * step)] for i in range(max_parts)], len(files)


def read(url: str, columns: list[str]) -> pa.Table:
    """Those of `columns` that the file has."""
    fs, path = storage.fs_and_path(url)
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        have = [c for c in columns if c in pf.schema_arrow.names]
        return pf.read(columns=have)


def scores_dict(row: dict) -> dict[str, float]:
    return {s["name"]: s["value"] for s in row.get("scores") or []}


@dataclass(frozen=True)
class RuleView:
    """Drop with `reason` when `score op threshold` (the score as named on `doc.scores`)."""

    stage: str
    score: str
    op: str
    threshold: float
    reason: str

    def text(self) -> str:
        return f"drop if {self.op} {self.threshold:g}"

    def fails(self, value: float) -> bool:
        return value < self.threshold if self.op == "<" else value > self.threshold


def rules(run: dict) -> list[RuleView]:
    """The thresholds that ran: the quality families' rules and the language score."""
    cfg = config_of(run)
    stages = doc_stages(run)
    out: list[RuleView] = []
    if "language" in stages:
        min_score = (cfg.get("language") or {}).get("min_score")
        if min_score:
            out.append(RuleView("language", "language_score", "<", float(min_score), "language_score_too_low"))
    if "quality" in stages:
        from tokenmill.filters.quality import FAMILIES

        for family, _, table, zero_is_off in FAMILIES:
            fam = (cfg.get("quality") or {}).get(family) or {}
            if not fam.get("enabled", True):
                continue
            for r in table:
                limit = fam.get(r.limit)
                if limit is None or (zero_is_off and not limit) or isinstance(limit, bool):
                    continue
                out.append(RuleView("quality", f"{family}.{r.score}", r.op, float(limit), r.reason))
    return out


def decided_by(run_rules: list[RuleView], stage: str, reason: str | None, row: dict) -> list[dict]:
    """The scores that decided a drop (the rule of `reason`), or for a kept document the scores
    of `stage` closest to their thresholds (relative margin), at most four, among the rules
    that judged it."""
    values = dict(scores_dict(row))
    if row.get("language_score") is not None:
        values["language_score"] = row["language_score"]
    mine = [r for r in run_rules if r.stage == stage and r.score in values]
    if reason is not None:
        hits = [r for r in mine if r.reason == reason]
        if not hits:
            return []
        # "mean_word_length_too_short": the rule whose score fails its threshold
        hits = [r for r in hits if r.fails(values[r.score])] or hits
        return [_said(r, values[r.score]) for r in hits]
    # a kept document's score beyond a threshold was not judged (mean_word_length in zh, ja, th)
    judged = [r for r in mine if not r.fails(values[r.score])]
    margin = sorted(judged, key=lambda r: abs(values[r.score] - r.threshold) / (abs(r.threshold) or 1.0))
    nearest = {}
    for r in margin:
        nearest.setdefault(r.score, r)
    return [_said(r, values[r.score]) for r in list(nearest.values())[:4]]


def _said(r: RuleView, value: float) -> dict:
    return {"score": r.score, "value": value, "op": r.op, "threshold": r.threshold, "reason": r.reason}


def pick_rows(files: list[str], k: int, seed: int, reason: str | None = None) -> list[tuple[str, int]]:
    """k (file, row) pairs drawn at random (seeded) from the files' rows, or from those whose
    `reason` column equals `reason`. Reads only the reason column (or the footers), and holds
    one integer array per file, never a list of every row."""
    import bisect

    import numpy as np

    rows: list = []  # per file: a row count (every row) or the matching row numbers
    for f in files:
        if reason is None:
            rows.append(storage.num_rows(f))
        else:
            col = read(f, ["reason"]).column("reason")
            rows.append(np.asarray(pc.indices_nonzero(pc.fill_null(pc.equal(col, reason), False))))
    sizes = [r if isinstance(r, int) else len(r) for r in rows]
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    chosen = sorted(random.Random(seed).sample(range(starts[-1]), min(k, starts[-1])))
    out = []
    for g in chosen:
        i = bisect.bisect_right(starts, g) - 1
        j = g - starts[i]
        out.append((files[i], j if isinstance(rows[i], int) else int(rows[i][j])))
    return out


def rows_at(picks: list[tuple[str, int]], columns: list[str] | None = None) -> list[dict]:
    """The rows of `pick_rows`, in its order."""
    out = []
    by_file: dict[str, list[int]] = {}
    for f, i in picks:
        by_file.setdefault(f, []).append(i)
    got: dict[tuple[str, int], dict] = {}
    for f, idx in by_file.items():
        table = storage.read_table(f, columns=columns) if columns is None else read(f, columns)
        for i, row in zip(idx, table.take(idx).to_pylist()):
            got[(f, i)] = row
    for p in picks:
        out.append(got[p])
    return out


def find_doc(files: list[str], doc_id: str) -> tuple[str, dict] | None:
    """(file, row) of the document `doc_id` among `files` (reads their id columns), or None."""
    for f in files:
        ids = read(f, ["id"]).column("id")
        idx = pc.indices_nonzero(pc.fill_null(pc.equal(ids, doc_id), False)).to_pylist()
        if idx:
            return f, storage.read_table(f).slice(idx[0], 1).to_pylist()[0]
    return None
