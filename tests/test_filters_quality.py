"""Quality stage: one test per drop reason, scores kept, German/Chinese pages survive, parity with datatrove."""

from __future__ import annotations

import dataclasses

import pytest

from tokenmill.doc import Doc
from tokenmill.filters.quality import (C4Rules, FineWebRules, GopherQualityRules, GopherRepetitionRules,
                                       QualityConfig, QualityFilter)
from tokenmill.stages.base import StageContext
from tokenmill.stages.filter import QualityStage

EN_LINES = [
    "The river that runs through the old town has been cleaned over the last ten years.",
    "Local volunteers removed plastic from the banks and planted trees along the water.",
    "Fish have returned to the shallow parts, and herons can be seen there in the morning.",
    "The council says that the project will continue with new funding from the region.",
    "Some residents want a footpath to be built, while others prefer to keep the banks wild.",
    "A public meeting on the plans will take place in the library at the end of the month.",
    "Children from two schools have been measuring the water quality every spring since 2016.",
    "Their results show that the oxygen level is now high enough for trout to live in the river.",
]
EN = "\n".join(EN_LINES)

DE = "\n".join([
    "Die Stadtverwaltung hat am Dienstag einen neuen Plan für den Ausbau der Radwege vorgestellt.",
    "In den nächsten fünf Jahren sollen mehr als vierzig Kilometer neue Wege entstehen.",
    "Besonders an den großen Straßen im Norden der Stadt fehlen bisher sichere Verbindungen.",
    "Der Bürgermeister sagte, dass die Kosten zum größten Teil vom Land getragen werden.",
    "Viele Anwohner begrüßen das Vorhaben, doch einige Geschäftsleute fürchten um ihre Parkplätze.",
    "Im Herbst soll es deshalb mehrere Veranstaltungen geben, bei denen alle Fragen stellen können.",
    "Die ersten Bauarbeiten beginnen voraussichtlich im kommenden Frühjahr an der Hauptstraße.",
])

ZH = "\n".join([
    "市政府星期二公布了一项新的计划，准备在未来五年内扩建城市的自行车道网络。",
    "根据这项计划，全市将新建四十多公里的专用车道，并对现有道路进行改造。",
    "北部地区的主要街道目前还缺少安全的连接，因此将成为第一批施工的重点。",
    "市长在记者会上表示，大部分费用将由省里承担，市财政只需要支付一小部分。",
    "许多居民对这个项目表示欢迎，但也有一些商户担心停车位会因此减少。",
    "为了听取各方意见，政府将在秋天举办几场公开说明会，欢迎市民提出问题。",
    "第一阶段的工程预计明年春天在主干道上开始，整个项目计划在五年内完成。",
])


def only(family: str, **rules) -> QualityConfig:
    """A config with one rule family enabled (its thresholds overridden by `rules`)."""
    cfg = QualityConfig()
    parts = {}
    for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb"):
        sub = getattr(cfg, name)
        parts[name] = dataclasses.replace(sub, enabled=(name == family), **(rules if name == family else {}))
    return QualityConfig(**parts)


def verdict(cfg: QualityConfig, text: str, language: str = "en"):
    doc = Doc("d", text=text, language=language)
    return QualityFilter(cfg).filter(doc), doc


REPEAT = " ".join(["green apples"] * 40) + " are sold here today."  # one line, no duplicate lines
NGRAM_OFF = {f"top_{n}_gram_frac": None for n in (2, 3, 4)}
PARA = "\n\n".join([EN_LINES[0]] * 3 + [EN_LINES[1]])
LINES = "\n".join([EN_LINES[0]] * 3 + [EN_LINES[1]])
OFF_PARA = {"dup_para_frac": None, "dup_para_char_frac": None}

CASES = [
    # gopher_repetition
    ("too_many_duplicate_paragraphs", only("gopher_repetition"), PARA),
    ("too_many_duplicate_paragraph_chars", only("gopher_repetition", dup_para_frac=None), PARA),
    ("too_many_duplicate_lines", only("gopher_repetition", **OFF_PARA), LINES),
    ("too_many_duplicate_line_chars", only("gopher_repetition", **OFF_PARA, dup_line_frac=None), LINES),
    ("top_2_gram_too_frequent", only("gopher_repetition"), REPEAT),
    ("top_3_gram_too_frequent", only("gopher_repetition", top_2_gram_frac=None), REPEAT),
    ("top_4_gram_too_frequent", only("gopher_repetition", top_2_gram_frac=None, top_3_gram_frac=None), REPEAT),
] + [
    (f"too_many_duplicate_{n}_grams",
     only("gopher_repetition", **NGRAM_OFF, **{f"dup_{m}_gram_frac": None for m in range(5, n)}), REPEAT)
    for n in range(5, 11)
] + [
    # gopher_quality
    ("too_few_words", only("gopher_quality"), EN_LINES[0]),
    ("too_many_words", only("gopher_quality", max_doc_words=100), EN),
    ("mean_word_length_too_short", only("gopher_quality"), " ".join(["it is a an to of by me"] * 10) + "."),
    ("mean_word_length_too_long", only("gopher_quality"), " ".join(["internationalization characteristically"] * 30)),
    ("too_many_hashes", only("gopher_quality"), EN + "\n" + " ".join(["#news"] * 20)),
    ("too_many_ellipses", only("gopher_quality"), EN.replace(" ", " ... ", 30)),
    ("too_many_bullet_lines", only("gopher_quality"), "\n".join("- " + ln for ln in EN_LINES)),
    ("too_many_lines_ending_in_ellipsis", only("gopher_quality"), "\n".join(ln[:-1] + "..." for ln in EN_LINES)),
    ("too_few_alphabetic_words", only("gopher_quality"), EN + "\n" + " ".join(str(i) for i in range(200))),
    ("too_few_stop_words", only("gopher_quality"),
     " ".join(["Cats sleep most afternoons while dogs chase balls across green parks."] * 8)),
    # c4
    ("contains_lorem_ipsum", only("c4"), EN + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."),
    ("contains_curly_bracket", only("c4"), EN + "\nfunction main() { return the value; }"),
    ("too_few_sentences", only("c4"), "\n".join(EN_LINES[:4])),
    # fineweb
    ("too_few_lines_ending_in_punctuation", only("fineweb"), "\n".join(ln[:-1] for ln in EN_LINES)),
    ("too_many_short_lines", only("fineweb"), "\n".join(ln[:25] + "." for ln in EN_LINES)),
    ("too_much_text_in_duplicate_lines", only("fineweb"), EN + "\n" + EN_LINES[2]),
    ("too_many_newlines_per_word", only("fineweb", short_line_thr=None),
     "\n".join(f"Item {i}." for i in range(40))),
]


@pytest.mark.parametrize("reason,cfg,text", CASES, ids=[c[0] for c in CASES])
def test_each_drop_reason(reason, cfg, text):
    assert verdict(cfg, text)[0] == (False, reason)


def test_no_text():
    stage = QualityStage()
    stage.setup()
    ctx = StageContext("quality")
    assert list(stage.run(iter([Doc("a", text=""), Doc("b", text=None)]), ctx)) == []
    assert ctx.stats.drops == {"no_text": 2}


def test_clean_english_kept_with_scores():
    ok, doc = verdict(QualityConfig(), EN)
    assert ok is True
    assert doc.scores["gopher_quality.word_count"] > 100
    assert 3 < doc.scores["gopher_quality.mean_word_length"] < 6
    assert doc.scores["gopher_quality.stop_word_count"] >= 2
    assert doc.scores["fineweb.line_punct_ratio"] == 1.0
    assert doc.scores["c4.sentence_count"] == 8
    assert {k.split(".")[0] for k in doc.scores} == {"gopher_repetition", "gopher_quality", "c4", "fineweb"}


def test_dropped_document_keeps_the_scores_of_its_family():
    (ok, reason), doc = verdict(QualityConfig(), PARA)
    assert reason == "too_many_duplicate_paragraphs"
    assert doc.scores["gopher_repetition.dup_para_frac"] == 0.5
    assert "gopher_quality.word_count" not in doc.scores  # later families did not run


def test_c4_edits_lines_like_c4():
    text = EN + ("\nPlease enable JavaScript to view the comments on this page.\nMenu"
                 "\nThis site uses cookies to improve your visit.")
    ok, doc = verdict(QualityConfig(), text)
    assert ok is True and doc.text == EN and doc.scores["c4.lines_removed"] == 3


def test_german_and_chinese_pages_survive_when_their_language_is_kept():
    stage = QualityStage()
    stage.setup()
    ctx = StageContext("quality")
    docs = [Doc("de", text=DE, language="de"), Doc("zh", text=ZH, language="zh")]
    out = list(stage.run(iter(docs), ctx))
    assert [d.id for d in out] == ["de", "zh"], ctx.stats.drops
    assert docs[0].scores["gopher_quality.stop_word_count"] >= 2


def test_german_page_judged_with_english_stop_words_would_be_dropped():
    """Why language matters: Gopher's 8 English stop words do not occur in German."""
    assert verdict(QualityConfig(), DE, language="en")[0] == (False, "too_few_stop_words")


def test_same_verdicts_as_datatrove_on_english():
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    theirs = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
              FineWebQualityFilter()]
    texts = [EN, EN + "\nMenu\nThis site uses cookies."] + [c[2] for c in CASES]
    kept = 0
    for text in texts:
        doc = Document(text=text, id="x")
        their_keep = all(f.filter(doc) is True for f in theirs)
        our_keep = verdict(QualityConfig(), text)[0] is True
        assert our_keep == their_keep, text[:80]
        kept += our_keep
    assert 0 < kept < len(texts)


def test_config_validation():
    with pytest.raises(ValueError, match="gopher_repetition.dup_line_frac"):
        GopherRepetitionRules(dup_line_frac=1.5)
    with pytest.raises(ValueError, match="gopher_quality.min_doc_words"):
        GopherQualityRules(min_doc_words=-1)
    with pytest.raises(ValueError, match="c4.min_num_sentences"):
        C4Rules(min_num_sentences=-1)
    with pytest.raises(ValueError, match="fineweb.line_punct_thr"):
        FineWebRules(line_punct_thr=2.0)
