"""`tokenmill sample`: dropped or kept documents of a stage, seeded, with the scores that decided;
crawled text never reaches the terminal with its control codes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from seeing_run import small_run
from tokenmill import cli
from tokenmill.manifests.docsets import clean
from tokenmill.manifests.sample import sample


def _ids(docs):
    return [d["id"] for d in docs]


def test_sample_dropped_by_reason_shows_the_deciding_score(capsys):
    run = small_run()
    assert cli.main(["sample", str(run), "--stage", "quality", "--reason", "top_2_gram_too_frequent", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("dropped by quality: top_2_gram_too_frequent") == 2
    assert "gopher_repetition.top_2_gram_frac = " in out and "(drop if > 0.2: top_2_gram_too_frequent)" in out
    assert "url      http" in out and "    | " in out  # the url and the first lines of text


def test_sample_is_seeded_and_draws_only_that_reason():
    run = str(small_run())
    removed = pq.read_table(run + "/removed/quality").to_pylist()
    want = {r["id"] for r in removed if r["reason"] == "top_2_gram_too_frequent"}
    a = sample(run, "quality", "top_2_gram_too_frequent", n=3, seed=1)
    assert _ids(a) == _ids(sample(run, "quality", "top_2_gram_too_frequent", n=3, seed=1))
    assert set(_ids(a)) <= want and len(a) == min(3, len(want))
    for d in a:
        rule = d["decided_by"][0]
        assert rule["value"] > rule["threshold"] == 0.2


def test_sample_kept_documents_are_those_the_stage_kept():
    run = str(small_run())
    kept = sample(run, "quality", kept=True, n=50)
    dropped = {r["id"] for r in pq.read_table(run + "/removed/quality").to_pylist()}
    assert kept and not set(_ids(kept)) & dropped
    for d in kept:
        assert all(not _fails(r) for r in d["decided_by"]), "a kept document passes every rule shown"


def _fails(r):
    return r["value"] < r["threshold"] if r["op"] == "<" else r["value"] > r["threshold"]


def test_sample_dedup_names_the_kept_copy():
    docs = sample(str(small_run()), "dedup", n=2)
    assert docs and all(d["reason"] == "near_duplicate" and d["kept_copy"] and d["kept_copy_url"] for d in docs)


def test_sample_json_and_terminal_safety(capsys):
    run = str(small_run())
    assert cli.main(["sample", run, "--stage", "url_filter", "-n", "20", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert any("<script>" in d["url"] and "\x1b" in d["url"] for d in docs), "JSON keeps the URL as it was"
    for stage in ("url_filter", "quality", "language"):
        assert cli.main(["sample", run, "--stage", stage, "-n", "50"]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u202e" not in out
    assert clean("a\x1b[2Jb\rc\u202ed\n") == "a\\x1b[2Jb\\x0dc\\u202ed\n"


def test_sample_says_what_the_run_has(capsys):
    run = str(small_run())
    assert cli.main(["sample", run, "--stage", "quality", "--reason", "no_such_reason"]) == 2
    assert "its reasons: top_2_gram_too_frequent" in capsys.readouterr().err
    assert cli.main(["sample", run, "--stage", "nope"]) == 2
    assert "its stages: url_filter, extract" in capsys.readouterr().err


def test_sample_names_the_languages_kept(capsys):
    from seeing_run import jsonl_run

    assert cli.main(["sample", str(jsonl_run()), "--stage", "language", "--reason", "language_not_kept"]) == 0
    out = capsys.readouterr().out
    assert out.count("dropped by language: language_not_kept") == 2 and "language de" in out
    assert "rule     keep only en" in out
