"""What a worker pays to build the quality rules' tokenizers (filters/words.py): spaCy without
torch, blank pipelines without other packages' `spacy_factories` entry points, same tokens."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

TEXTS = {
    "en": "The council met on Tuesday. It didn't agree: \"no funds\", said Mr. Smith (the mayor)! "
          "Costs rose 3.5% in 2023 -- see https://example.org/report?id=7 or e-mail info@example.org.",
    "de": "Die Stadtverwaltung hat am Dienstag einen neuen Plan vorgestellt. Er kostet ca. 4,5 Mio. Euro "
          "und soll bis 2027 fertig sein; viele Anwohner begrüßen das Vorhaben.",
    "fr": "Le conseil municipal s'est réuni mardi. L'adjoint a dit : « c'est trop cher ! » Aujourd'hui, "
          "rien n'est décidé.",
    "ru": "Городской совет собрался во вторник. Мэр сказал, что денег нет, т.е. проект отложен.",
    "sw": "Baraza la jiji lilikutana Jumanne. Meya alisema hakuna fedha.",  # no spaCy language: "xx"
}


def run_py(code: str, env: dict | None = None) -> dict:
    """Runs `code` in a fresh interpreter (nothing imported yet); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=300)
    if out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tokens_are_datatrove_spacy_tokens_and_torch_is_not_imported():
    got = run_py(f"""
        import json, sys
        from tokenmill.filters.words import language_tools
        texts = {TEXTS!r}
        ours = {{lang: [language_tools(lang).words(t), language_tools(lang).sentences(t)] for lang, t in texts.items()}}
        heavy = sorted(m for m in ("torch", "transformers", "presidio_analyzer") if m in sys.modules)
        # datatrove's own tokenizers, built its way: every entry point loaded, torch allowed
        from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer
        theirs = {{}}
        for lang, t in texts.items():
            try:
                tok = load_word_tokenizer(lang)
            except ValueError:
                tok = None
            tok = tok if isinstance(tok, SpaCyTokenizer) else SpaCyTokenizer("xx")
            theirs[lang] = [tok.word_tokenize(t), tok.sent_tokenize(t)]
        import torch  # still importable afterwards
        print(json.dumps({{"ours": ours, "theirs": theirs, "heavy": heavy, "torch": torch.zeros(2).tolist()}}))
    """)
    assert got["ours"] == got["theirs"]
    assert all(len(words) > 5 and sents for words, sents in got["ours"].values())
    if importlib.util.find_spec("torch") is not None:  # a venv with the train extra: thinc would import it
        assert got["heavy"] == [], f"building the tokenizers imported {got['heavy']}"
        assert got["torch"] == [0.0, 0.0]


def test_spacy_imported_after_torch_keeps_thincs_torch_support():
    pytest.importorskip("torch")
    got = run_py("""
        import json, torch
        from tokenmill.filters.words import import_spacy, language_tools
        import_spacy()
        language_tools("en")
        import thinc.compat
        print(json.dumps({"has_torch": thinc.compat.has_torch}))
    """)
    assert got["has_torch"] is True


def test_other_packages_spacy_factories_are_not_imported(tmp_path):
    """A package registering a `spacy_factories` entry point (presidio-analyzer does, importing
    transformers) is imported by spacy.blank(); building the quality tokenizers does not import it."""
    (tmp_path / "fakeplug_mod.py").write_text("LOADED = True\ndef make(nlp, name):\n    return lambda doc: doc\n")
    dist = tmp_path / "fakeplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[spacy_factories]\nfake_pipe = fakeplug_mod:make\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    got = run_py("""
        import json, sys
        from tokenmill.filters.words import import_spacy, language_tools
        tools = language_tools("en"), language_tools("de")
        words = tools[0].words("It works.")
        ours = "fakeplug_mod" in sys.modules
        import_spacy().blank("en")  # spaCy's own way: every entry point
        print(json.dumps({"ours": ours, "spacy_blank": "fakeplug_mod" in sys.modules, "words": words}))
    """, env)
    assert got["spacy_blank"] is True, "the fake entry point was not seen: the test proves nothing"
    assert got["ours"] is False
    assert got["words"] == ["It", "works", "."]


def test_entry_point_switch_is_restored_after_an_error():
    from tokenmill.filters.words import builtin_factories_only, import_spacy

    registry = import_spacy().util.registry._entry_point_factories
    before = registry.entry_points
    with pytest.raises(RuntimeError):
        with builtin_factories_only():
            assert registry.entry_points is False
            raise RuntimeError("boom")
    assert registry.entry_points == before


def test_pipeline_rebuilt_past_the_string_limit_gives_the_same_words(monkeypatch):
    from tokenmill.filters import words

    tools = words.language_tools("en")
    before = tools.words(TEXTS["en"])
    monkeypatch.setattr(words, "MAX_SPACY_STRINGS", 0)  # every call rebuilds the pipeline
    assert tools.words(TEXTS["en"]) == before
    assert tools.sentences(TEXTS["en"])[0] == "The council met on Tuesday."
