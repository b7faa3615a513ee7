"""extract.extractor: resiliparse as a fast mode beside trafilatura (bench/extract_modes.py has the numbers)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import article, html_page, need, run_extract, snippet_scores
from tokenmill import config as config_mod
from tokenmill.doc import Doc
from tokenmill.readers import InputConfig, Shard, read_shard
from tokenmill.stages.base import StageContext
from tokenmill.stages.extract import ExtractConfig

NAV = "<nav><ul><li><a href='/'>Home</a></li><li><a href='/about'>About us</a></li></ul></nav>"
FOOTER = "<footer><p>Copyright 2024 Example Media. All rights reserved. Imprint. Privacy policy.</p></footer>"


def docs():
    page = html_page("Rivers", NAV + article(1) + FOOTER).encode()
    return [Doc("a", raw=page, http_charset="utf-8"),
            Doc("b", raw=b"<html><head><script>var x = 1;</script></head><body><div></div></body></html>")]


def test_resiliparse_mode_extracts_main_text_and_drops_empty_pages():
    need("resiliparse")
    out, ctx = run_extract(docs(), extractor="resiliparse")
    assert [d.id for d in out] == ["a"]
    assert "water moves plastic" in out[0].text and "var x" not in out[0].text
    assert ctx.stats.drops == {"no_text_extracted": 1}


def test_resiliparse_gives_the_same_text_in_the_child_process_and_in_process():
    need("resiliparse")
    isolated, _ = run_extract(docs(), extractor="resiliparse")
    inproc, _ = run_extract(docs(), extractor="resiliparse", isolate=False)
    assert [d.text for d in isolated] == [d.text for d in inproc]


def test_a_missing_resiliparse_fails_when_the_config_is_built(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resiliparse" else real(name, *a))
    with pytest.raises(ValueError, match=r"resiliparse is not installed: pip install 'tokenmill\[fast\]'"):
        ExtractConfig(extractor="resiliparse")
    warc = tmp_path / "a.warc"
    warc.write_bytes(b"")
    with pytest.raises(config_mod.ConfigError, match="extract.extractor"):
        config_mod.from_dict({"input": {"paths": [str(warc)]}, "output": str(tmp_path / "o"),
                              "extract": {"extractor": "resiliparse"}})
    with pytest.raises(config_mod.ConfigError, match="extract.extractor"):
        config_mod.from_dict({"input": {"paths": [str(warc)]}, "output": str(tmp_path / "o"),
                              "extract": {"extractor": "justext"}})


def test_resiliparse_f1_on_the_real_pages(shared_data):
    """Snippet F1 on the 150 pages: measured 0.863 (trafilatura: 0.917), at ~1/10 of the CPU."""
    need("resiliparse")
    expected = {}
    for line in open(shared_data / "extraction/expected.jsonl", encoding="utf-8"):
        row = json.loads(line)
        expected[row["url"]] = row
    pages = list(read_shard(Shard(0, str(shared_data / "extraction/pages.warc.gz"), "warc"), InputConfig(),
                            StageContext("ingest")))
    out, _ = run_extract(pages, extractor="resiliparse", isolate=False)
    texts = {d.url: d.text for d in out}
    p, r, f1 = snippet_scores(texts, expected)
    print(f"resiliparse snippet F1 {f1:.3f} (P {p:.3f}, R {r:.3f})")
    assert f1 > 0.84
