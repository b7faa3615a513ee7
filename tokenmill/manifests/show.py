"""`tokenmill show RUN DOC_ID`: one document's lineage, from the WARC record to where it ended.

In: a run directory and a document id (`tokenmill sample ... --json` prints some). Out: where
the document came from (source file, byte offset, the task that read it), its WARC record
re-read from there (WARC and HTTP headers, the start of the HTML; its WARC-Record-ID checked
against the document's), what each stage did (kept with its language and scores, PII
replacements per type, or the stage, reason and scores that dropped it, and for a duplicate
the kept copy), and the text as it left the run. Finding the document reads the id column of
each part file (removed/, docs/, work/); everything else reads one row.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter

from tokenmill import storage
from tokenmill.manifests import docsets
from tokenmill.manifests.inspect import latest_run
from tokenmill.manifests.sample import format_rule, format_text


class DocNotFound(LookupError):
    pass


def read_record(source: str, offset: int, stream_start: int | None = None, body_bytes: int = 4096) -> dict:
    """The WARC record at `offset` of `source`: {"warc": [(name, value)], "http": [status line,
    (name, value)...] or None, "body": first `body_bytes` of the payload}. `stream_start`: the
    record sits inside one gzip stream beginning there (readers/warc.py, `gzip_stream_start`)."""
    from warcio.archiveiterator import ArchiveIterator

    fs, path = storage.fs_and_path(source)
    with fs.open(path, "rb") as f:
        if stream_start is not None:
            f.seek(stream_start)
            stream = gzip.GzipFile(fileobj=f, mode="rb")
            left = offset - stream_start
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    raise ValueError(f"{source}: the gzip stream at byte {stream_start} ends before record offset {offset}")
                left -= len(chunk)
            it = ArchiveIterator(stream)
        else:
            f.seek(offset)
            it = ArchiveIterator(f)
        record = next(iter(it), None)
        if record is None:
            raise ValueError(f"{source}: no WARC record at byte {offset}")
        http = None
        if record.http_headers is not None:
            http = [record.http_headers.protocol + " " + record.http_headers.statusline, *record.http_headers.headers]
        return {"warc": list(record.rec_headers.headers), "http": http,
                "body": record.content_stream().read(body_bytes)}


def read_line(source: str, lineno: int) -> str | None:
    """Line `lineno` (0-based, as the JSONL reader counts) of a JSONL file, compressed or not."""
    import io

    import fsspec.compression
    import fsspec.utils

    fs, path = storage.fs_and_path(source)
    with fs.open(path, "rb") as raw:
        compression = fsspec.utils.infer_compression(source)
        f = fsspec.compression.compr[compression](raw, mode="rb") if compression else raw
        for i, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="replace")):
            if i == lineno:
                return line.rstrip("\n")
    return None


def _kind(source: str | None) -> str:
    name = (source or "").lower()
    if re.search(r"\.(warc|arc)(\.gz)?$", name):
        return "warc"
    if re.search(r"\.jsonl?(\.\w+)?$", name):
        return "jsonl"
    return "parquet" if ".parquet" in name else "other"


def _find(run_dir: str, run: dict, doc_id: str) -> tuple[str | None, str, dict, list[tuple[str, dict]]]:
    """(stage that dropped it or None, its file, its row, [(work dir, row)] of earlier copies)."""
    final = None
    for stage, d in docsets.places(run_dir, run):
        hit = docsets.find_doc(docsets.part_files(d)[0], doc_id)
        if hit:
            final = (stage, *hit)
            break
    copies = []
    for s in json.loads(run["steps"]):
        work = storage.join(run_dir, "work", f"step{s['step']}")
        if s["kind"] == "map" and storage.exists(work):
            hit = docsets.find_doc(docsets.part_files(work)[0], doc_id)
            if hit:
                copies.append((f"work/step{s['step']}", hit[1]))
    if final is None:
        raise DocNotFound(f"{doc_id}: no document with this id in {run_dir} (docs/, removed/<stage>/); "
                          f"`tokenmill sample {run_dir} --stage STAGE --json` prints ids")
    return final[0], final[1], final[2], copies


def lineage(run_dir: str, doc_id: str, body_bytes: int = 4096) -> dict:
    run_dir = run_dir.rstrip("/")
    if not storage.exists(storage.join(run_dir, "manifest")):
        raise FileNotFoundError(f"{run_dir}: no manifest/ here; run `tokenmill run CONFIG` first")
    run = latest_run(run_dir)
    cfg = docsets.config_of(run)
    stages = docsets.doc_stages(run)
    dropped_by, where, row, copies = _find(run_dir, run, doc_id)
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    rules = docsets.rules(run)
    shard = int(m.group(1)) if (m := re.search(r"part-(\d+)\.parquet$", where)) else None
    out = {"id": row["id"], "url": row.get("url"), "source": row.get("source"), "source_offset": row.get("source_offset"),
           "warc_record_id": row.get("warc_record_id"), "warc_date": row.get("warc_date"), "shard": shard,
           "file": where, "dropped_by": dropped_by, "reason": row.get("reason"), "language": row.get("language"),
           "language_score": row.get("language_score"), "meta": meta, "text": row.get("text"), "stages": []}
    out["task"] = f"s00-{shard:05d}" if shard is not None else None
    end = stages.index(dropped_by) if dropped_by else len(stages)
    for i, stage in enumerate(stages):
        step = {"stage": stage, "status": "kept" if i < end else "dropped" if i == end else "not reached"}
        if i == end:
            step["reason"] = row.get("reason")
            step["decided_by"] = docsets.decided_by(rules, stage, row.get("reason"), row)
            if stage == "dedup" and isinstance(meta.get("dedup"), dict):
                step["kept_copy"] = meta["dedup"].get("rep_id")
                step["cluster_size"] = meta["dedup"].get("cluster_size")
                from tokenmill.manifests.sample import _urls

                step["kept_copy_url"] = _urls(run_dir, {step["kept_copy"]}).get(step["kept_copy"])
        elif i < end:
            if stage == "language":
                step["language"], step["language_score"] = row.get("language"), row.get("language_score")
            elif stage == "quality":
                step["closest"] = docsets.decided_by(rules, stage, None, row)
            elif stage == "pii":
                step["replacements"] = _pii_counts(cfg, row.get("text"), [r for _, r in copies])
            elif stage == "dedup":
                step["duplicates_dropped"] = _duplicates_of(run_dir, doc_id)
        out["stages"].append(step)
    out["record"] = out["source_line"] = None
    out["source_kind"] = _kind(out["source"])
    if out["source"] and out["source_offset"] is not None and out["source_kind"] in ("warc", "jsonl"):
        try:
            if out["source_kind"] == "warc":
                out["record"] = read_record(out["source"], out["source_offset"], meta.get("gzip_stream_start"),
                                            body_bytes)
            else:
                out["source_line"] = read_line(out["source"], out["source_offset"])
        except (OSError, ValueError) as e:
            out["record_error"] = f"could not re-read the record: {e}"
    return out


def _pii_counts(cfg: dict, final_text: str | None, copies: list[dict]) -> dict:
    """PII replacements per type: the scrubber run again on the text before the pii stage (an
    earlier step's copy), else the placeholders counted in the final text."""
    from tokenmill.filters.pii import TYPES, PiiConfig, PiiScrubber

    pii_cfg = PiiConfig(**(cfg.get("pii") or {}))
    before = next((c.get("text") for c in reversed(copies) if c.get("text")), None)
    if before is not None:
        return dict(PiiScrubber(pii_cfg).scrub(before)[1])
    counts = Counter({t: (final_text or "").count(getattr(pii_cfg, f"{t}_placeholder")) for t in TYPES})
    return {k: v for k, v in counts.items() if v}


def _duplicates_of(run_dir: str, doc_id: str) -> int:
    """How many documents dedup dropped as copies of `doc_id`."""
    n = 0
    for f in docsets.part_files(storage.join(run_dir, "removed", "dedup"))[0]:
        for m in docsets.read(f, ["meta"]).column("meta").to_pylist():
            if m and doc_id in m and (json.loads(m).get("dedup") or {}).get("rep_id") == doc_id:
                n += 1
    return n


def format_lineage(d: dict, text_lines: int = 30, html_lines: int = 20) -> str:
    c = docsets.clean
    ended = f"dropped by {d['dropped_by']}: {d['reason']}" if d["dropped_by"] else "kept (in docs/)"
    lines = [f"document  {c(d['id'])}", f"url       {c(d['url'] or '-')}",
             f"source    {c(d['source'] or '-')}  {_where(d)}",
             f"warc      {c(d['warc_record_id'] or '-')}  {c(d['warc_date'] or '')}",
             f"ended     {ended}   ({c(d['file'])})", "", "what each stage did:"]
    for s in d["stages"]:
        head = f"  {s['stage']:<11} {s['status']}"
        if s["status"] == "dropped":
            head += f": {s['reason']}"
        lines.append(head)
        for rule in s.get("decided_by") or []:
            lines.append(f"              {format_rule(rule)}")
        if s.get("kept_copy"):
            lines.append(f"              kept copy {c(s['kept_copy'])} {c(s.get('kept_copy_url') or '')} "
                         f"(cluster of {s.get('cluster_size')})")
        if s.get("language"):
            score = s.get("language_score")
            lines.append(f"              language {c(s['language'])}" + (f" ({score:.3f})" if score is not None else ""))
        if s.get("closest"):
            lines.append("              closest to a threshold:")
            lines += [f"                {format_rule(r)}" for r in s["closest"]]
        if "replacements" in s:
            rep = s["replacements"]
            lines.append("              replaced: " + (", ".join(f"{k} {v}" for k, v in sorted(rep.items())) or "nothing"))
        if s.get("duplicates_dropped"):
            lines.append(f"              kept copy of {s['duplicates_dropped']} dropped duplicate(s)")
    lines += _source_lines(d, html_lines)
    text = d.get("text")
    lines += ["", f"text as it left the run ({len(text or ''):,} characters):" if text else "text: none (never extracted)"]
    lines += [f"    | {ln}" for ln in format_text(text, text_lines)]
    return "\n".join(lines)


def _source_lines(d: dict, html_lines: int) -> list[str]:
    """The input record re-read: a WARC record's headers and payload start, or a JSONL line."""
    c, kind, rec = docsets.clean, d.get("source_kind"), d.get("record")
    if d.get("record_error"):
        return ["", f"source: {c(d['record_error'])}"]
    if kind == "jsonl" and d.get("source_line") is not None:
        return ["", "the source line, re-read:"] + [f"    | {ln}" for ln in format_text(d["source_line"], 6, wrap=True)]
    if kind != "warc" or rec is None:
        return ["", f"source: a {kind} input, row {d['source_offset']} (not re-read)"]
    lines = ["", "WARC record, re-read from the source:"]
    rid = dict(rec["warc"]).get("WARC-Record-ID", "").strip("<>")
    if d["warc_record_id"] and rid != d["warc_record_id"]:
        lines.append(f"  WARNING: the record there is {c(rid)}, not this document's {c(d['warc_record_id'])}")
    lines += [f"  {c(k)}: {c(v)}" for k, v in rec["warc"]]
    if rec["http"]:
        lines += ["", f"  {c(rec['http'][0])}"] + [f"  {c(k)}: {c(v)}" for k, v in rec["http"][1:]]
    charset = (d["meta"] or {}).get("charset") or "utf-8"
    try:
        body = rec["body"].decode(charset, errors="replace")
    except LookupError:
        body = rec["body"].decode("utf-8", errors="replace")
    lines += ["", f"  start of the payload ({len(rec['body']):,} bytes shown):"]
    return lines + [f"    | {ln}" for ln in format_text(body, html_lines, wrap=True)]


def _where(d: dict) -> str:
    kind, off = d.get("source_kind"), d["source_offset"]
    where = {"warc": f"byte {off}", "jsonl": f"line {off + 1 if off is not None else '?'}"}.get(kind, f"row {off}")
    return where + (f"  (read by task {d['task']}, shard {d['shard']})" if d["task"] else "")


def to_json(d: dict) -> str:
    out = dict(d)
    if out.get("record"):
        rec = dict(out["record"])
        rec["body"] = rec["body"].decode("utf-8", errors="replace")
        out["record"] = rec
    return json.dumps(out, indent=2, default=str)
