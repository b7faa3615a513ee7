"""The report page: `render(report.collect(RUN))` -> one HTML string, CSS inline, charts as SVG.

Every figure is `<figure class="chart" data-chart="NAME" data-points="N">`, N the number of
data points it draws (0: the run has nothing to show there, and the figure says why), so a
browser test (tests/test_report.py) can check each chart is there with data. Every string
from the run (URLs, languages, reasons, config values) is HTML-escaped; URLs are shown as
text, never as links (a crawled URL may be `javascript:`).
"""

from __future__ import annotations

import json

from tokenmill.manifests.charts import DROPPED, GREY, KEPT, OTHER, columns, esc, hbars, histogram, legend, num

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:0;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}
header .sub{opacity:.8;font-size:13px}main{max-width:1180px;margin:0 auto;padding:8px 28px 40px}
nav{font-size:13px;margin:10px 0}nav a{margin-right:12px;color:#1f5f9f;text-decoration:none}
section{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:16px;margin:4px 0 8px}h3{font-size:13px;margin:6px 0 2px;font-weight:600}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#fff;border:1px solid #e3e6ea;border-radius:6px;
padding:8px 14px;min-width:120px}.tile b{display:block;font-size:20px}.tile span{color:#666;font-size:12px}
.ok{color:#2a7d2a}.bad{color:#b00}figure{margin:6px 0}figcaption{color:#555;font-size:12px;max-width:900px}
.grid{display:flex;flex-wrap:wrap;gap:8px 18px}.grid figure{width:350px}
.legend{font-size:12px;color:#444;margin:2px 0 4px}.legend span{margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse;font-size:12.5px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child,td.l,th.l{text-align:left}code{font-size:12px;color:#444;word-break:break-all}
pre{background:#f3f4f6;padding:10px;overflow:auto;font-size:12px;max-height:480px}.empty{color:#888;font-style:italic}
"""


def _fig(name: str, points: int, body: str, caption: str, empty: str = "nothing to show") -> str:
    inner = body if points else f'<p class="empty">{esc(empty)}</p>'
    return (f'<figure class="chart" data-chart="{esc(name)}" data-points="{points}">{inner}'
            f"<figcaption>{caption}</figcaption></figure>")


def _section(sid: str, title: str, *parts: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def _table(head: list[str], rows: list[list], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _funnel(d: dict) -> str:
    f = d["funnel"]
    if not f:
        return _fig("funnel", 0, "", "Documents after each stage.")
    docs0 = f[1][1] if len(f) > 1 and f[1][1] else None
    rows = [{"label": n, "segments": [("documents", v)],
             "text": f"{num(v)}" + (f"  ({100 * v / docs0:.1f}% of documents read)" if docs0 and i > 0 else "")}
            for i, (n, v) in enumerate(f)]
    tok = d["tokens"]
    if tok:
        rows.append({"label": "tokenized", "segments": [("documents", sum(t["documents"] or 0 for t in tok))]})
    svg = hbars(rows, "documents per stage", colors=[KEPT])
    return _fig("funnel", len(rows), svg, "Documents left after each stage, in pipeline order. <i>records read</i>: "
                "every WARC record (requests, metadata, ...); <i>ingest</i> keeps the HTML responses.")


def _drops(d: dict) -> str:
    parts, points = [], 0
    for r in d["table"]:
        if r["global"] or not r["drops"]:
            continue
        items = list(r["drops"].items())
        top, rest = items[:12], items[12:]
        rows = [{"label": k, "segments": [(k, v)], "text": f"{num(v)}  ({100 * v / max(r['docs_in'], 1):.1f}% of "
                 f"{num(r['docs_in'])} in)"} for k, v in top]
        if rest:
            rows.append({"label": f"{len(rest)} other reasons", "segments": [("other", sum(v for _, v in rest))]})
        points += len(rows)
        parts.append(f"<h3>{esc(r['stage'])}: {num(r['dropped'])} dropped of {num(r['docs_in'])}</h3>"
                     + hbars(rows, f"drop reasons of {r['stage']}", colors=[DROPPED]))
        ex = d["examples"].get(r["stage"]) or {}
        if ex:
            lines = [[esc(reason), "<br>".join(f"<code>{esc(u)}</code>" for u in urls),
                      f"<code>tokenmill sample RUN --stage {esc(r['stage'])} --reason {esc(reason)}</code>"]
                     for reason, urls in list(ex.items())[:8]]
            parts.append("<details><summary>example URLs</summary>" + _table(["reason", "examples", "see more"], lines, 3)
                         + "</details>")
    return _fig("drops", points, "".join(parts), "Why each stage dropped documents (the ingest reader skips "
                "records that are not documents).", "no stage dropped anything")


def _languages(d: dict) -> str:
    langs = list(d["languages"].items())
    top, rest = langs[:20], langs[20:]
    rows = [{"label": k, "segments": [("kept", v.get("kept", 0)), ("dropped by language", v.get("dropped", 0))]}
            for k, v in top]
    if rest:
        rows.append({"label": f"{len(rest)} more", "segments": [
            ("kept", sum(v.get("kept", 0) for _, v in rest)), ("dropped", sum(v.get("dropped", 0) for _, v in rest))]})
    keep = (d["config"].get("language") or {}).get("languages")
    cap = f"Language of the documents the language stage saw (lid.176). Kept languages: {esc(json.dumps(keep))}."
    return _fig("languages", len(rows), legend(["kept", "dropped by language"], [KEPT, DROPPED]) +
                hbars(rows, "languages", colors=[KEPT, DROPPED]), cap, "no language stage in this run")


def _lengths(d: dict) -> str:
    ln = d["lengths"]
    if not ln:
        return _fig("lengths", 0, "", "Document length.", "no document text in this run")
    names = [n for n, _ in ln["series"]]
    svg = histogram(ln["edges"], ln["series"], "document length", width=640, height=200, log_x=True,
                    x_label="characters of text (log scale)", colors=[KEPT, DROPPED])
    med = f"median {num(ln['median_before'])} characters before"
    if ln["median_after"] is not None:
        med += f", {num(ln['median_after'])} after"
    cap = (f"Documents entering {esc(ln['stage'])} (whole bars: before) and those it kept (blue: after); {med}."
           if ln["stage"] else "Length of the kept documents.")
    return _fig("lengths", sum(sum(c) for _, c in ln["series"]), legend(names, [KEPT, DROPPED]) + svg, cap)


def _scores(d: dict) -> str:
    figs = []
    for c in d["scores"]:
        svg = histogram(c["edges"], c["series"], c["score"], thresholds=c["thresholds"], overflow=c["overflow"],
                        colors=[KEPT, DROPPED, OTHER, GREY], x_label=c["score"], width=350)
        cap = (f"<b>{esc(c['score'])}</b>: {num(c['documents'])} documents, {num(c['dropped_by_rule'])} dropped by "
               f"{esc(', '.join(c['reasons']))}" + (" (last bin: and above)" if c["overflow"] else ""))
        figs.append(_fig(f"score:{c['score']}", sum(sum(s) for _, s in c["series"]), svg, cap))
    body = (legend(["kept", "dropped by this rule", "dropped by another rule of the stage",
                    "kept, not judged by this rule (e.g. word length in zh, ja, th)"], [KEPT, DROPPED, OTHER, GREY])
            + '<div class="grid">' + "".join(figs) + "</div>")
    return _fig("scores", len(figs), body, "Each thresholded score over the documents that reached its rule, the "
                "threshold in red: what lies beyond the line is what the rule cut. Rules run in order, so a "
                "document dropped by an earlier family has no later scores.", "no thresholded scores in this run")


def _dedup(d: dict) -> str:
    cl = [(str(s), n) for s, n in d["clusters"]]
    if len(cl) > 30:  # many distinct sizes: powers of two (2, 3-4, 5-8, ...)
        buckets: dict[int, int] = {}
        for size, n in d["clusters"]:
            k = max(1, (size - 1).bit_length())
            buckets[k] = buckets.get(k, 0) + n
        cl = [(f"{2 ** (k - 1) + 1}-{2 ** k}" if k > 1 else "2", n) for k, n in sorted(buckets.items())]
    dup = d["duplicates"]
    svg = columns([s for s, _ in cl], [("clusters", [n for _, n in cl])], "duplicate cluster sizes",
                  x_label="documents in the cluster", y_label="clusters", colors=[OTHER])
    cap = (f"{num(dup.get('clusters', 0))} clusters; {num(dup.get('near_duplicates', 0))} near and "
           f"{num(dup.get('exact_duplicates', 0))} exact duplicates dropped (one document of each cluster is kept).")
    return _fig("clusters", len(cl), svg, cap, "no duplicates found (or no dedup stage)")


def _pii(d: dict) -> str:
    items = sorted(d["pii"].items(), key=lambda kv: -kv[1])
    rows = [{"label": k, "segments": [(k, v)]} for k, v in items]
    cap = f"Replacements per type, in {num(d['pii_documents'])} documents changed."
    return _fig("pii", len(rows), hbars(rows, "PII replacements", colors=[OTHER]) if rows else "", cap,
                "no PII replaced (or no pii stage)")


def _tokens(d: dict) -> str:
    tok = d["tokens"]
    if not tok:
        return _fig("tokens", 0, "", "Tokens per shard.", "no token shards (no tokenize stage)")
    split = {s: sum(t["tokens"] or 0 for t in tok if t["split"] == s) for s in ("train", "val")}
    total = sum(split.values()) or 1
    if len(tok) <= 200:
        labels = [t["shard"].rsplit("_", 2)[-2] + "_" + t["shard"].rsplit("_", 1)[-1].split(".")[0] for t in tok]
        svg = columns(labels, [(s, [t["tokens"] if t["split"] == s else 0 for t in tok]) for s in ("train", "val")],
                      "tokens per shard", x_label="shard", y_label="tokens", colors=[KEPT, OTHER])
    else:
        import numpy as np

        vals = np.array([t["tokens"] for t in tok], dtype=float)
        edges = np.linspace(0, vals.max() or 1, 31)
        svg = histogram(edges.tolist(), [(s, np.histogram([t["tokens"] for t in tok if t["split"] == s], edges)[0]
                                          .tolist()) for s in ("train", "val")], "tokens per shard", width=640,
                        x_label="tokens in a shard", colors=[KEPT, OTHER])
    t0 = tok[0]
    cap = (f"train {num(split['train'])} tokens, val {num(split['val'])} ({100 * split['val'] / total:.1f}%), "
           f"{num(sum(t['documents'] or 0 for t in tok))} documents in {len(tok)} shards; {esc(t0['dtype'])}, "
           f"vocabulary {num(t0['vocab_size'])}.")
    return _fig("tokens", len(tok), legend(["train", "val"], [KEPT, OTHER]) + svg, cap)


def _time(d: dict) -> str:
    rows = [{"label": r["stage"], "segments": [("seconds", r["seconds"])],
             "text": f"{num(round(r['seconds'], 1))} s" + (f", {num(round(r['docs_in'] / r['seconds']))} docs/s"
                                                           if r["docs_in"] and r["seconds"] and not r["global"] else "")}
            for r in d["table"] if r["seconds"]]
    svg = hbars(rows, "seconds per stage", colors=[GREY])
    steps = [[esc(f"{s['step']} {s['name']}"), esc(s["kind"]), num(s["tasks"]), num(s["attempts"]), num(s["retried"]),
              f'<span class="{"bad" if s["failed"] else ""}">{num(s["failed"])}</span>', num(s["workers"]),
              num(s["wall_seconds"]), num(s["docs_per_second"])] for s in d["steps"]]
    table = _table(["step", "kind", "tasks", "attempts", "retried", "failed", "workers", "wall s", "docs/s"], steps)
    fails = ""
    if d["failures"]:
        shown = d["failures"][:50]
        fails = "<h3>tasks failed for good</h3>" + _table(["task", "inputs", "error"], [
            [esc(f["task_id"]), esc(", ".join(f["inputs"] or [])), esc(str(f["error"])[:500])] for f in shown], 3)
        if len(d["failures"]) > len(shown):
            fails += f"<p>and {len(d['failures']) - len(shown)} more: <code>tokenmill inspect RUN --failed</code></p>"
    return _fig("time", len(rows), svg + "<h3>steps</h3>" + table + fails,
                "Task-seconds per stage (summed over tasks, so more than wall time when tasks run in parallel), "
                "with documents per task-second. Steps: wall time of this invocation, attempts, retries.")


def _when(run: dict) -> str:
    start, end = (run.get("started") or "")[:19], (run.get("finished") or "")[:19]
    if not end:
        return f"started {start} UTC, not finished"
    from datetime import datetime

    secs = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{start} UTC, {secs:,.0f} s"


def render(d: dict) -> str:
    run = d["run"]
    first = d["funnel"][1][1] if len(d["funnel"]) > 1 else None
    last = d["funnel"][-1][1] if d["funnel"] else None
    tokens = sum(t["tokens"] or 0 for t in d["tokens"])
    status = run.get("status")
    tiles = [("status", f'<span class="{"ok" if status == "done" else "bad"}">{esc(status)}</span>'),
             ("documents read", num(first)), ("documents kept", num(last)),
             ("kept", f"{100 * last / first:.1f}%" if first and last is not None else "-"),
             ("tokens", num(tokens)), ("tasks failed", num(len(d["failures"])))]
    sampled = ""
    if not (d["config"].get("executor") or {}).get("keep_removed", True):
        sampled += ("<p><b>executor.keep_removed is false</b>: dropped documents were not written, so the "
                    "distributions below show kept documents only (counts still come from the manifests).</p>")
    if d["sampled"]:
        sampled += "<p>Distributions are drawn from a sample: " + ", ".join(
            f"{esc(n)} {num(docs)} of {num(rows)} documents in {a} of {b} parts" for n, a, b, docs, rows in d["sampled"]
        ) + " (counts are exact: from the manifests).</p>"
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in [
        ("funnel", "funnel"), ("drops", "drop reasons"), ("languages", "languages"), ("lengths", "lengths"),
        ("scores", "scores"), ("dedup", "duplicates"), ("pii", "PII"), ("tokens", "tokens"), ("time", "time"),
        ("config", "config")])
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>tokenmill report {esc(run.get('run_id'))}</title><style>{CSS}</style></head><body>",
        f"<header><h1>tokenmill run {esc(run.get('run_id'))}</h1><div class=\"sub\">{esc(d['run_dir'])} &middot; "
        f"config {esc(run.get('config_file'))} (hash {esc(run.get('config_hash'))}) &middot; executor "
        f"{esc(run.get('executor'))} &middot; {esc(_when(run))}</div></header>",
        f'<main><nav>{nav}</nav><div class="tiles">',
        "".join(f'<div class="tile"><b>{v}</b><span>{esc(k)}</span></div>' for k, v in tiles), "</div>", sampled,
        _section("funnel", "Funnel: documents per stage", _funnel(d)),
        _section("drops", "What each stage dropped, and why", _drops(d)),
        _section("languages", "Languages", _languages(d)),
        _section("lengths", "Document length before and after quality filtering", _lengths(d)),
        _section("scores", "Scores and their thresholds", _scores(d)),
        _section("dedup", "Duplicate clusters", _dedup(d)),
        _section("pii", "PII replacements", _pii(d)),
        _section("tokens", "Tokens: shards and the train/val split", _tokens(d)),
        _section("time", "Time, throughput, retries and failures", _time(d)),
        _section("config", "Resolved config",
                 f"<pre>{esc(json.dumps(d['config'], indent=2, sort_keys=True, default=str))}</pre>"
                 f"<details><summary>package versions</summary><pre>{esc(run.get('versions'))}</pre></details>"),
        "</main></body></html>",
    ])
