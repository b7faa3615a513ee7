"""`tokenmill sample RUN --stage S [--reason R] [-n 5] [--kept] [--seed 0]`: documents to judge a filter by.

In: a run directory. Out: n documents that stage S dropped (for reason R), or with `--kept`
that it kept, drawn at random (seeded: the same command shows the same documents), each with
its URL, the reason, the scores that decided (the failing rule's score and threshold; for a
kept document the scores closest to their thresholds), dedup's kept copy, and the first lines
of text. Reads only the `reason` column (or the Parquet footers) to draw, then the n rows.
Text is crawled, so `format_text` makes it safe for a terminal (`docsets.clean`).
"""

from __future__ import annotations

import json

from tokenmill import storage
from tokenmill.manifests import docsets
from tokenmill.manifests.inspect import stage_table

SHOWN = ["id", "url", "text", "language", "language_score", "source", "source_offset", "warc_date", "scores",
         "meta", "stage", "reason"]


class SampleError(ValueError):
    """A stage or reason this run does not have; the message lists those it has."""


def sample(run_dir: str, stage: str, reason: str | None = None, n: int = 5, kept: bool = False,
           seed: int = 0) -> list[dict]:
    """The drawn documents as dicts: the row's fields plus `dropped_by`, `decided_by`, `kept_copy`."""
    run_dir = run_dir.rstrip("/")
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run, table = stage_table(run_dir)
    stages = docsets.doc_stages(run)
    if stage not in stages:
        raise SampleError(f"no stage {stage!r} in this run; its stages: {', '.join(stages)}")
    drops = next((r["drops"] for r in table if r["stage"] == stage), {})
    if kept and reason:
        raise SampleError("--kept shows documents the stage kept: they have no reason; drop --reason")
    if reason is not None and reason not in drops:
        have = ", ".join(f"{k} ({v})" for k, v in drops.items()) or "none: it dropped nothing"
        raise SampleError(f"{stage} dropped nothing for {reason!r}; its reasons: {have}")
    if kept:
        dirs = [d for _, d in docsets.places(run_dir, run, kept_by=stage)]
    else:
        dirs = [storage.join(run_dir, "removed", stage)]
    files = [f for d in dirs for f in docsets.part_files(d)[0]]
    picks = docsets.pick_rows(files, n, seed, reason=None if kept else reason)
    rows = docsets.rows_at(picks, SHOWN)
    rules = docsets.rules(run)
    keep_langs = (docsets.config_of(run).get("language") or {}).get("languages")
    out = []
    for row in rows:
        row = dict(row)
        row["scores"] = docsets.scores_dict(row)
        row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        row["dropped_by"] = None if kept else stage
        row["decided_by"] = docsets.decided_by(rules, stage, None if kept else row.get("reason"),
                                               {**row, "scores": [{"name": k, "value": v} for k, v in
                                                                  row["scores"].items()]})
        if stage == "language" and row.get("reason") == "language_not_kept" and not kept:
            row["kept_languages"] = keep_langs
        dedup = row["meta"].get("dedup") if isinstance(row["meta"], dict) else None
        row["kept_copy"] = dedup.get("rep_id") if isinstance(dedup, dict) and not kept and stage == "dedup" else None
        out.append(row)
    if any(r["kept_copy"] for r in out):
        urls = _urls(run_dir, {r["kept_copy"] for r in out if r["kept_copy"]})
        for r in out:
            r["kept_copy_url"] = urls.get(r["kept_copy"])
    return out


def _urls(run_dir: str, ids: set[str]) -> dict[str, str]:
    """URLs of the given document ids among the kept documents."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[str, str] = {}
    for f in docsets.part_files(storage.join(run_dir, "docs"))[0]:
        t = docsets.read(f, ["id", "url"])
        t = t.filter(pc.is_in(t.column("id"), value_set=pa.array(sorted(ids))))
        found.update(zip(t.column("id").to_pylist(), t.column("url").to_pylist()))
        if len(found) == len(ids):
            break
    return found


def format_text(text: str | None, lines: int = 8, width: int = 160, wrap: bool = False) -> list[str]:
    """The first `lines` non-empty lines, each cut at `width` characters (`wrap`: folded), safe
    for a terminal."""
    out = []
    for line in (text or "").splitlines():
        line = docsets.clean(line.strip())
        pieces = [line[i:i + width] for i in range(0, len(line), width)] if wrap else [
            line if len(line) <= width else line[: width - 1] + "…"]
        for piece in pieces if line else []:
            out.append(piece)
            if len(out) == lines:
                return out
    return out


def format_rule(d: dict) -> str:
    return f"{d['score']} = {d['value']:.4g}  (drop if {d['op']} {d['threshold']:g}: {d['reason']})"


def format_sample(docs: list[dict], stage: str, kept: bool, lines: int = 8) -> str:
    if not docs:
        return f"no documents {'kept' if kept else 'dropped'} by {stage} to show"
    out = []
    for i, d in enumerate(docs, 1):
        what = f"kept by {stage}" if kept else f"dropped by {stage}: {d.get('reason')}"
        out.append(f"[{i}/{len(docs)}] {what}   {docsets.clean(d['id'])}")
        out.append(f"  url      {docsets.clean(d.get('url') or '-')}")
        if d.get("language"):
            out.append(f"  language {docsets.clean(d['language'])} ({d['language_score']:.3f})"
                       if d.get("language_score") is not None else f"  language {docsets.clean(d['language'])}")
        for j, rule in enumerate(d["decided_by"]):
            out.append(f"  {'scores' if j == 0 else '':<8} {format_rule(rule)}")
        if d.get("kept_languages") is not None:
            langs = d["kept_languages"]
            out.append(f"  rule     keep only {', '.join(langs) if isinstance(langs, list) else langs}")
        if kept and d["decided_by"]:
            out.append("           (kept: the scores closest to their thresholds)")
        if d.get("kept_copy"):
            out.append(f"  kept copy {docsets.clean(d['kept_copy'])}  {docsets.clean(d.get('kept_copy_url') or '')}")
        text = d.get("text")
        n_lines = len([ln for ln in (text or "").splitlines() if ln.strip()])
        out.append(f"  text     {len(text or ''):,} characters, {n_lines} lines" if text else "  text     (none)")
        out += [f"    | {ln}" for ln in format_text(text, lines)]
        out.append("")
    return "\n".join(out).rstrip()


def to_json(docs: list[dict]) -> str:
    """JSON for scripts: ASCII only (every non-ASCII and control character escaped)."""
    keep = ["id", "url", "dropped_by", "reason", "decided_by", "kept_languages", "kept_copy", "kept_copy_url", "language",
            "language_score", "source", "source_offset", "warc_date", "scores", "meta", "text"]
    return json.dumps([{k: d.get(k) for k in keep} for d in docs], indent=2, default=str)
