"""decontaminate: documents that contain a benchmark item's 13-gram are dropped, named and counted.

Through the CLI (what users run): exactly the contaminated documents are dropped, a document that
shares only 10 words of an item is kept, every drop names its benchmark file, and the manifest
counts contaminated documents per benchmark. Bad benchmark files fail at start naming the key.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from helpers import make_jsonl, run_cli
from tokenmill.config import ConfigError, load
from tokenmill.doc import Doc
from tokenmill.filters.decontam import build_index, words
from tokenmill.manifests.inspect import stage_table
from tokenmill.stages.decontaminate import DecontaminateConfig, DecontaminateStage
from tokenmill.stats import StageContext

# 24 words: its 13-grams are what a document must share to be contaminated
QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May; "
            "how many clips did Natalia sell altogether?")
SHORT = "Which planet in our solar system has the most moons"  # 10 words: matched whole
TINY = "Jupiter"  # 1 word: too short to mean anything, left out
LINE = "The mitochondria is the powerhouse of the cell and it makes energy from food for every living thing"
FILLER = "The weather in the valley was mild this spring and the farmers planted their fields early. "


def _benchmarks(tmp_path):
    mmlu = tmp_path / "evals" / "mmlu-test.jsonl"
    mmlu.parent.mkdir()
    make_jsonl(mmlu, [{"question": QUESTION, "choices": [TINY, "Saturn"], "answer": "72"},
                      {"question": SHORT, "choices": ["Saturn", TINY], "answer": 1}])
    txt = tmp_path / "evals" / "biology.txt"
    txt.write_text(LINE + "\n\n")
    return [str(mmlu), str(txt)]


def _docs(tmp_path):
    q = QUESTION.split()
    docs = {
        # the question's first 13 words, in other case and punctuation, inside other text
        "thirteen": FILLER + " ".join(q[:13]).upper().replace(",", " ,;") + ". " + FILLER,
        # its last 13 words
        "tail": FILLER + " ".join(q[-13:]) + " " + FILLER,
        # 10 words of it, then something else: shares no 13-gram
        "ten_words": FILLER + " ".join(q[:10]) + " the market was closed. " + FILLER,
        # 12 words of it: still no 13-gram
        "twelve_words": " ".join(q[:12]) + " and then the story ends here. " + FILLER,
        "short_whole": FILLER + "Quiz: which planet in our Solar System has the most moons? " + FILLER,
        "short_part": FILLER + "which planet in our solar system has the most rings " + FILLER,
        "tiny": FILLER + "Jupiter is large. " + FILLER,
        "txt_line": "Notes. " + LINE.lower() + " End.",
        "clean": FILLER * 3,
    }
    make_jsonl(tmp_path / "docs.jsonl", [{"id": k, "text": v} for k, v in docs.items()])
    return str(tmp_path / "docs.jsonl")


def _config(tmp_path, section: dict, docs: str) -> str:
    cfg = {"input": {"paths": [docs]}, "output": str(tmp_path / "run"), "stages": ["decontaminate"],
           "decontaminate": section}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


CONTAMINATED = {"thirteen": ["mmlu-test.jsonl"], "tail": ["mmlu-test.jsonl"], "short_whole": ["mmlu-test.jsonl"],
                "txt_line": ["biology.txt"]}


def test_run_drops_exactly_the_contaminated_documents(tmp_path):
    path = _config(tmp_path, {"benchmarks": _benchmarks(tmp_path)}, _docs(tmp_path))
    proc = run_cli("run", path, "--executor", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    kept = {r["id"] for r in pq.read_table(run / "docs").to_pylist()}
    assert kept == {"ten_words", "twelve_words", "short_part", "tiny", "clean"}
    removed = pq.read_table(run / "removed" / "decontaminate").to_pylist()
    assert {r["id"]: r["reason"] for r in removed} == {k: "contaminated" for k in CONTAMINATED}
    for r in removed:  # the dropped row names the benchmark and the shared words
        meta = json.loads(r["meta"])["decontaminate"]
        assert meta["benchmarks"] == CONTAMINATED[r["id"]], r["id"]
        assert len(meta["match"].split()) in (10, 13) and meta["match"] in " ".join(words(r["text"]))
    _, table = stage_table(str(run))
    row = next(t for t in table if t["stage"] == "decontaminate")
    assert row["drops"] == {"contaminated": 4}
    assert row["counters"]["contaminated.mmlu-test.jsonl"] == 3
    assert row["counters"]["contaminated.biology.txt"] == 1
    assert "contaminated.mmlu-test.jsonl 3" in proc.stdout  # the inspect table the run prints


def test_annotate_keeps_and_marks(tmp_path):
    path = _config(tmp_path, {"benchmarks": _benchmarks(tmp_path), "action": "annotate"}, _docs(tmp_path))
    proc = run_cli("run", path, "--executor", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(tmp_path / "run" / "docs").to_pylist()
    assert len(rows) == 9
    marked = {r["id"]: json.loads(r["meta"])["decontaminate"]["benchmarks"] for r in rows if r["meta"]}
    assert marked == CONTAMINATED


@pytest.mark.parametrize("bad, words_", [
    ("missing.jsonl", "no such file"),
    ("notjson.jsonl", "line 2: not JSON"),
    ("empty.jsonl", "has no items"),
    ("items.csv", "is .jsonl or .txt"),
    ("binary.txt.gz", "cannot read it"),
])
def test_bad_benchmark_fails_at_start_naming_the_key(tmp_path, bad, words_):
    (tmp_path / "notjson.jsonl").write_text('{"q": "fine"}\n{"q": broken\n')
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "items.csv").write_text("a,b\n")
    (tmp_path / "binary.txt.gz").write_bytes(b"not gzip")
    good = _benchmarks(tmp_path)[0]
    docs = _docs(tmp_path)
    path = _config(tmp_path, {"benchmarks": [good, str(tmp_path / bad)]}, docs)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: decontaminate.benchmarks[1]: "), str(e.value)
    assert words_ in str(e.value)
    if bad == "missing.jsonl":  # and the command says so, exit 2, before running anything
        proc = run_cli("run", path, "--executor", "local", "--no-progress")
        assert proc.returncode == 2 and "decontaminate.benchmarks[1]" in proc.stderr and "no such file" in proc.stderr
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("section, key", [
    ({"ngram": 0}, "decontaminate.ngram"),
    ({"min_item_words": 20}, "decontaminate.min_item_words"),
    ({"action": "delete"}, "decontaminate.action"),
])
def test_bad_options(tmp_path, section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(_config(tmp_path, section, _docs(tmp_path)))


def test_same_file_name_twice_is_refused(tmp_path):
    a = tmp_path / "a" / "test.jsonl"
    b = tmp_path / "b" / "test.jsonl"
    for p in (a, b):
        p.parent.mkdir()
        make_jsonl(p, [{"q": QUESTION}])
    with pytest.raises(ConfigError, match=r"benchmarks\[1\]: another benchmark file is also named test.jsonl"):
        load(_config(tmp_path, {"benchmarks": [str(a), str(b)]}, _docs(tmp_path)))


def test_no_benchmarks_keeps_everything_and_adds_nothing():
    """The default recipe runs decontaminate without benchmarks: a pass-through."""
    stage = DecontaminateStage(DecontaminateConfig())
    stage.setup()
    ctx = StageContext("decontaminate")
    docs = [Doc(id=str(i), text=LINE) for i in range(3)]
    out = list(stage.run(iter(docs), ctx))
    assert out == docs and all(not d.meta for d in out)
    assert (ctx.stats.docs_in, ctx.stats.docs_out, dict(ctx.stats.drops)) == (3, 3, {})


def test_index_lengths_and_attribution(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text(LINE + "\n")
    b.write_text(LINE.upper() + "!\n" + SHORT + "\n")
    index = build_index([str(a), str(b)], ["a.txt", "b.txt"], ngram=13, min_item_words=8)
    assert index.stats["ngram_pieces"] == 2 and index.stats["whole_pieces"] == 1
    found, match = index.match("intro " + LINE + " outro")
    assert found == [0, 1] and match == " ".join(words(LINE)[:13])  # shared by both files: both named
    assert index.match(SHORT + "?")[0] == [1]
    assert index.match(" ".join(SHORT.split()[:-1]))[0] == []  # a short item must appear whole
    assert index.match("")[0] == [] and index.match("word " * 5)[0] == []
