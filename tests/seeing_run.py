"""One small run for the tests of report, sample, show and inspect, made once per test session.

The demo crawl (40 articles: near-copies, spam, PII, a page with no main text, adult
domains) plus a WARC of hostile pages: a blocklisted URL carrying `<script>` and a terminal
escape, and a page whose text holds an escape sequence and a bidi override. Run through the
CLI (`tokenmill run`, local executor), so the report written at the end of a run is tested too.
~15 s, most of it the quality stage's first spaCy load.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml

from helpers import make_warc
from tokenmill import cli, demo

HOSTILE_URL = "https://www.pornhub.com/v?q=<script>alert(1)</script>\x1b[2J"
HOSTILE_TEXT = ("Council members said the \x1b[31mred\x1b[0m budget was \u202eevil\u202c approved after a long debate "
                "about the library, the school and the bridge over the river. ")


@lru_cache(maxsize=None)
def small_run() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tokenmill-seeing-"))
    atexit.register(shutil.rmtree, root, True)
    crawl = root / "crawl"
    crawl.mkdir()
    demo.write_warc(str(crawl / "demo-00000.warc.gz"), seed=0, n_articles=40)
    body = "<p>" + HOSTILE_TEXT * 6 + "</p><p>" + HOSTILE_TEXT * 5 + "</p>"
    make_warc(crawl / "hostile.warc.gz", [
        {"url": HOSTILE_URL, "body": f"<html><body><article><p>{body}</p></article></body></html>"},
        {"url": "https://hostile.example.org/story", "body": f"<html><head><title>x</title></head><body><article>"
                                                          f"<h1>Budget</h1>{body}</article></body></html>"},
    ])
    cfg = demo.demo_config(str(crawl), str(root / "run"), executor="local")
    # the FineWeb stages (not every stage there is): what the report, sample and show are about
    cfg["stages"] = ["url_filter", "extract", "language", "quality", "dedup", "pii", "tokenize"]
    cfg["tokenize"]["vocab_size"] = 512
    (root / "run.yaml").write_text(yaml.safe_dump(cfg))
    code = cli.main(["run", str(root / "run.yaml"), "--no-progress"])
    if code != 0:
        raise RuntimeError(f"the small run failed (exit {code}); see the output above")
    return root / "run"


@lru_cache(maxsize=None)
def jsonl_run() -> Path:
    """20 English JSONL lines with an e-mail address each and 2 German ones, through the
    language (English only) and pii stages alone (~3 s)."""
    import json

    root = Path(tempfile.mkdtemp(prefix="tokenmill-seeing-jsonl-"))
    atexit.register(shutil.rmtree, root, True)
    with open(root / "in.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"id": f"d{i}", "url": f"https://x.example/{i}", "text":
                                f"The council met on Tuesday {i} to discuss the budget of the city libraries. "
                                f"Write to me at a{i}@example.com please."}) + "\n")
        for i in range(2):
            f.write(json.dumps({"id": f"de{i}", "url": f"https://x.example/de/{i}", "text":
                                "Der Gemeinderat hat am Dienstag über das neue Budget der Bibliotheken gesprochen."})
                    + "\n")
    (root / "run.yaml").write_text(yaml.safe_dump({
        "input": str(root / "in.jsonl"), "output": str(root / "run"), "executor": {"kind": "local"},
        "stages": ["language", "pii"], "language": {"languages": ["en"], "min_score": 0.0}}))
    code = cli.main(["run", str(root / "run.yaml"), "--no-progress"])
    if code != 0:
        raise RuntimeError(f"the JSONL run failed (exit {code}); see the output above")
    return root / "run"
