"""Small builders shared by tests: tiny WARCs and document files made in-process."""

from __future__ import annotations

import importlib
import io
import json
import os

import pytest

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def html_page(title: str, body: str, charset: str = "utf-8") -> str:
    return f'<html><head><meta charset="{charset}"><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>'


def make_warc(path, pages: list[dict]) -> list[int]:
    """Write a record-gzipped WARC of response records; returns each record's byte offset.

    A page: {"url", "body": bytes | str, "content_type"?, "status"?, "type"?}.
    """
    offsets = []
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i, p in enumerate(pages):
            offsets.append(f.tell())
            body = p["body"].encode("utf-8") if isinstance(p["body"], str) else p["body"]
            rtype = p.get("type", "response")
            headers = {"WARC-Date": "2024-05-18T01:58:10Z", "WARC-Record-ID": f"<urn:uuid:00000000-0000-0000-0000-{i:012d}>"}
            if rtype == "response":
                http = StatusAndHeaders(f"{p.get('status', 200)} OK",
                                        [("Content-Type", p.get("content_type", "text/html; charset=utf-8"))],
                                        protocol="HTTP/1.1")
                rec = writer.create_warc_record(p["url"], "response", payload=io.BytesIO(body), http_headers=http,
                                                warc_headers_dict=headers)
            else:
                rec = writer.create_warc_record(p["url"], rtype, payload=io.BytesIO(body), warc_headers_dict=headers,
                                                warc_content_type="application/warc-fields")
            writer.write_record(rec)
    return offsets


def make_jsonl(path, rows: list) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def article(n: int, word: str = "river") -> str:
    """A page body with enough real-looking text for trafilatura to keep."""
    sentence = (f"The {word} study number {n} measured how water moves plastic from the city to the sea, "
                "and the authors describe their method in detail for other researchers. ")
    return "".join(f"<p>{sentence * 3}</p>" for _ in range(4))


def need(module: str):
    """Import an optional dependency; outside CI skip when it is missing, under CI=true fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def tokenmill_cli() -> str:
    """The installed `tokenmill` console script (what users run), beside this Python."""
    import sys
    from pathlib import Path

    path = Path(sys.executable).parent / "tokenmill"
    if not path.exists():
        raise FileNotFoundError(f"{path}: install the project (make setup) so the tokenmill command exists")
    return str(path)


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run the tokenmill command as a subprocess; returns CompletedProcess (text, captured)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([tokenmill_cli(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def snippet_scores(texts: dict, expected: dict) -> tuple[float, float, float]:
    """(precision, recall, F1) over the `with`/`without` snippets of shared/data/extraction's
    expected.jsonl (url -> row), as trafilatura's own evaluation counts them."""
    tp = fp = fn = 0
    for url, e in expected.items():
        t = texts.get(url) or ""
        tp += sum(s in t for s in e["with"])
        fn += sum(s not in t for s in e["with"])
        fp += sum(s in t for s in e["without"])
    p, r = tp / (tp + fp), tp / (tp + fn)
    return p, r, 2 * p * r / (p + r)


def run_stage(stage, docs, name: str):
    """Set a stage up, run `docs` through it and close it: (documents out, its StageContext)."""
    from tokenmill.stages.base import StageContext

    stage.setup()
    ctx = StageContext(name)
    try:
        return list(stage.run(iter(docs), ctx)), ctx
    finally:
        stage.close()


def run_extract(docs, **opts):
    """The extract stage with these ExtractConfig options over `docs`: (documents out, context)."""
    from tokenmill.stages.extract import ExtractConfig, ExtractStage

    return run_stage(ExtractStage(ExtractConfig(**opts)), docs, "extract")
