"""The language pre-pass (extract.language_prefilter): what it strips, what it skips, how a skip is recorded."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from helpers import html_page, run_extract
from tokenmill import config as config_mod
from tokenmill.doc import Doc
from tokenmill.filters.language import LanguageConfig, LanguageFilter
from tokenmill.filters.prefilter import LanguagePrefilter, strip_tags
from tokenmill.readers import InputConfig, Shard, read_shard
from tokenmill.stages.base import StageContext
from tokenmill.stages.extract import ExtractConfig, ExtractStage, _extract, decode_html

GERMAN = ("Die Stadtverwaltung hat am Dienstag neue Pläne für den Ausbau der Radwege vorgestellt. "
          "Nach Angaben der Behörde sollen bis zum Ende des nächsten Jahres mehr als zwanzig Kilometer "
          "neue Wege entstehen, die vor allem Schüler und Pendler sicherer ans Ziel bringen. ")
ENGLISH = ("The city council presented new plans on Tuesday for expanding the network of cycle paths. "
           "According to the authority, more than twenty kilometres of new paths are to be built by the end "
           "of next year, mainly to bring pupils and commuters to their destinations more safely. ")


def page(text: str, title: str = "Nachrichten") -> bytes:
    nav = "<nav><a href='/'>Home</a> <a href='/login'>Login</a></nav>"
    script = "<script>var english = 'the and of to in is that for it with as was on';</script>"
    return html_page(title, nav + script + "".join(f"<p>{text}</p>" for _ in range(4))).encode()


def test_strip_tags_drops_markup_scripts_styles_comments_and_decodes_entities():
    html = ("<html><head><style>p {color: red}</style><script type='x'>alert('the and of')</script></head>"
            "<body><!-- hidden <b>comment</b> --><p>Caf&eacute; &amp; <b>Bar</b></p><noscript>enable js</noscript>"
            "<svg><text>chart</text></svg></body></html>")
    assert strip_tags(html) == "Café & Bar"
    assert strip_tags("<p>" + "a " * 30_000 + "</p>", limit=100) == "a " * 50


def test_prefilter_skips_confident_other_languages_only():
    pre = LanguagePrefilter(["en"], min_score=0.8)
    label, score, text = pre.predict(page(GERMAN).decode())
    assert label == "de" and score >= 0.8 and "Radwege" in text and "var english" not in text
    assert pre.decide(label, score)
    label, score, _ = pre.predict(page(ENGLISH, "News").decode())
    assert label == "en" and not pre.decide(label, score)
    assert pre.predict("<html><body><p>12 345 -- 678</p></body></html>")[:2] == (None, 0.0)
    assert not pre.decide(None, 0.0)
    # a low-confidence guess is not a skip
    assert not LanguagePrefilter(["en"], min_score=0.999).decide("de", 0.99)
    # codes as users write them
    assert LanguagePrefilter(["eng", "de-DE"], min_score=0.8).keep == {"en", "de"}


def test_extract_stage_drops_a_skipped_page_as_language_prefilter_with_what_decided_it():
    docs = [Doc("de", url="https://example.de/a", raw=page(GERMAN), http_charset="utf-8"),
            Doc("en", url="https://example.com/a", raw=page(ENGLISH, "News"), http_charset="utf-8"),
            Doc("wet", text="already text: never judged by the pre-pass, whatever its language. " + GERMAN)]
    out, ctx = run_extract(docs, language_prefilter=("en",))
    assert [d.id for d in out] == ["en", "wet"]
    assert "cycle paths" in out[0].text and out[0].language is None  # the language stage decides kept pages
    assert ctx.stats.drops == {"language_prefilter": 1}
    (dropped, reason), = ctx.removed
    assert reason == "language_prefilter" and dropped.id == "de"
    assert dropped.language == "de" and dropped.language_score >= 0.8 and "Radwege" in dropped.text
    assert dropped.raw is None
    # off (the default): the German page is extracted, for the language stage to judge
    out, ctx = run_extract([Doc("de", raw=page(GERMAN), http_charset="utf-8")])
    assert [d.id for d in out] == ["de"] and ctx.stats.drops == {}


@pytest.mark.parametrize("opts, message", [
    ({"language_prefilter": "en"}, "a list of language codes"),
    ({"language_prefilter": []}, "a list of language codes"),
    ({"language_prefilter": ["xx-nope"]}, "does not know"),
    ({"prefilter_min_score": 0}, "prefilter_min_score"),
    ({"prefilter_min_score": 1.5}, "prefilter_min_score"),
])
def test_bad_prefilter_options_fail_when_the_config_is_built(opts, message):
    with pytest.raises(ValueError, match=message):
        ExtractConfig(**opts)


def test_prefilter_from_yaml(tmp_path):
    warc = tmp_path / "a.warc"
    warc.write_bytes(b"")
    cfg = config_mod.from_dict({"input": {"paths": [str(warc)]}, "output": str(tmp_path / "out"),
                                "extract": {"language_prefilter": ["en"], "prefilter_min_score": 0.9}})
    opts = cfg.options("extract")
    assert opts.language_prefilter == ("en",) and opts.prefilter_min_score == 0.9
    with pytest.raises(config_mod.ConfigError, match="extract.language_prefilter"):
        config_mod.from_dict({"input": {"paths": [str(warc)]}, "output": str(tmp_path / "out"),
                              "extract": {"language_prefilter": "en"}})


@pytest.mark.parametrize("language, stages, expected", [
    ({"languages": ["en", "de"]}, None, ("en", "de")),
    ({"languages": "all"}, None, None),
    ({"languages": ["en"]}, ["url_filter", "extract", "quality"], None),  # no language stage: off
])
def test_prefilter_auto_follows_the_language_stage(tmp_path, language, stages, expected):
    warc = tmp_path / "a.warc"
    warc.write_bytes(b"")
    data = {"input": {"paths": [str(warc)]}, "output": str(tmp_path / "out"),
            "extract": {"language_prefilter": "auto"}, "language": language}
    if stages:
        data["stages"] = stages
    cfg = config_mod.from_dict(data)
    assert cfg.options("extract").language_prefilter == expected
    assert cfg.resolved()["extract"]["language_prefilter"] == expected  # what the run record stores and hashes


def test_prefilter_auto_must_be_resolved_before_the_stage_runs():
    with pytest.raises(ValueError, match="auto is resolved from the language stage"):
        ExtractStage(ExtractConfig(language_prefilter="auto")).setup()


def test_the_fineweb_config_runs_the_prefilter_on_the_language_stage_languages():
    root = pathlib.Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "configs/fineweb.yaml").read_text())
    assert data["extract"]["language_prefilter"] == "auto"
    cfg = config_mod.from_dict(data, check_inputs=False)
    assert cfg.options("extract").language_prefilter == tuple(data["language"]["languages"]) == ("en",)


def test_no_page_the_prefilter_skips_is_english_after_extraction(shared_data):
    """On the 150 real pages: every page the pre-pass skips (default min_score) has extracted text that
    the language stage drops too, so skipping it changes no verdict (bench/prefilter.py: every set)."""
    docs = list(read_shard(Shard(0, str(shared_data / "extraction/pages.warc.gz"), "warc"), InputConfig(),
                           StageContext("ingest")))
    pre = LanguagePrefilter(["en"], ExtractConfig().prefilter_min_score)
    lang = LanguageFilter(LanguageConfig(languages=("en",)))
    skipped = kept_anyway = 0
    for d in docs:
        html, _ = decode_html(d.raw, d.http_charset)
        label, score, _ = pre.predict(html)
        if not pre.decide(label, score):
            continue
        skipped += 1
        d.text = _extract(html, dict(favor_precision=True, include_comments=False, include_tables=True,
                                     deduplicate=False, include_images=False)) or ""
        kept_anyway += d.text.strip() != "" and lang.filter(d) is True
    print(f"pre-pass skips {skipped} of {len(docs)} pages; the language stage keeps {kept_anyway} of them")
    assert skipped >= 100  # the German and French pages: measured 116 at 0.8
    assert kept_anyway == 0
