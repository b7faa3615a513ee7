"""The curated documents load in every common reader, scores included; the document format and
the package layout stay in their one place."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import make_jsonl, need
from tokenmill.config import from_dict
from tokenmill.doc import DOC_SCHEMA, Doc, doc_to_row, row_to_doc
from tokenmill.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parent.parent
N_KEPT = 3  # of the five articles; each reader below must load exactly these
@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory, shared_data):
    """A small run over five real English articles (language + quality: documents with scores)."""
    d = tmp_path_factory.mktemp("fmt")
    rows = [json.loads(line) for line in open(shared_data / "neardup/docs.jsonl", encoding="utf-8")]
    base = [r for r in rows if r["kind"] == "base"][:5]
    make_jsonl(d / "in.jsonl", [{"id": r["id"], "text": r["text"], "url": f"https://ex.org/{r['id']}"} for r in base])
    cfg = from_dict({"input": str(d / "in.jsonl"), "output": str(d / "run"), "executor": {"kind": "local"},
                     "stages": ["language", "quality"]}, "test.yaml")
    assert run_pipeline(cfg, progress=False).ok
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (d / "run" / "docs").glob("*.parquet"))
    assert kept == N_KEPT, "of the five articles one is not English and one has too few alphabetic words"
    return d / "run" / "docs"


def _scores_of(records) -> dict:
    """id -> {score name: value} from rows whose `scores` is a list of {name, value}."""
    return {r["id"]: {s["name"]: s["value"] for s in r["scores"]} for r in records}


def test_pyarrow_reads_docs_with_scores(docs_dir):
    rows = pq.read_table(docs_dir).to_pylist()
    assert len(rows) == N_KEPT
    scores = _scores_of(rows)
    assert all(s["gopher_quality.word_count"] > 50 for s in scores.values())


def test_pandas_reads_docs(docs_dir):
    import pandas as pd

    df = pd.read_parquet(docs_dir)
    assert len(df) == N_KEPT and set(df["language"]) == {"en"}
    assert {s["name"] for s in df["scores"].iloc[0]} >= {"gopher_quality.word_count"}


def test_duckdb_reads_and_unnests_scores(docs_dir):
    duckdb = need("duckdb")
    n, avg = duckdb.sql(f"SELECT count(DISTINCT id), avg(s.value) FROM (SELECT id, unnest(scores) AS s "
                        f"FROM '{docs_dir}/*.parquet') WHERE s.name = 'gopher_quality.word_count'").fetchall()[0]
    assert n == N_KEPT and avg > 50


def test_polars_reads_docs(docs_dir):
    pl = need("polars")
    df = pl.read_parquet(f"{docs_dir}/*.parquet")
    assert df.height == N_KEPT
    names = df.explode("scores").unnest("scores")["name"].unique().to_list()
    assert "gopher_quality.word_count" in names


def test_hf_datasets_loads_docs(docs_dir, tmp_path):
    datasets = need("datasets")
    ds = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in docs_dir.glob("*.parquet")),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == N_KEPT
    row = ds[0]
    assert row["text"] and row["language"] == "en"
    assert {s["name"]: s["value"] for s in row["scores"]}["gopher_quality.word_count"] > 50


def test_a_shard_with_no_documents_loads_beside_others(tmp_path, docs_dir):
    """A shard whose documents were all dropped is a valid file with no row groups: HF datasets
    failed on the empty row group it used to have ("BatchSize must be greater than 0")."""
    from tokenmill import storage

    empty = tmp_path / "part-00001.parquet"
    storage.write_docs(str(empty), [])
    assert pq.ParquetFile(empty).metadata.num_row_groups == 0
    datasets = need("datasets")
    files = [str(p) for p in sorted(docs_dir.glob("*.parquet"))] + [str(empty)]
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == N_KEPT


def test_row_round_trip_keeps_every_column():
    d = Doc("x", url="u", text="t", language="en", language_score=0.9, source="s", source_offset=7,
            warc_record_id="r", warc_date="2024-01-01", scores={"b": 2.0, "a": 1.0}, meta={"k": [1, 2]},
            raw=b"<html>", content_type="text/html", http_charset="utf-8")
    row = doc_to_row(d)
    assert set(row) == set(DOC_SCHEMA.names)  # the transient payload fields are not written
    assert [s["name"] for s in row["scores"]] == ["a", "b"]
    back = row_to_doc(row)
    assert back.scores == d.scores and back.meta == d.meta and back.source_offset == 7 and back.raw is None


# ---- the layout DESIGN.md draws ----------------------------------------------------------------

def _imports(pkg: str) -> set[tuple[str, str]]:
    out = set()
    for path in (ROOT / "tokenmill" / pkg).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.add((str(path.relative_to(ROOT)), node.module))
            elif isinstance(node, ast.Import):
                out.update((str(path.relative_to(ROOT)), a.name) for a in node.names)
    return out


@pytest.mark.parametrize("pkg", ["filters", "tokenize", "readers"])
def test_library_packages_never_import_stages_or_pipeline(pkg):
    bad = [(f, m) for f, m in _imports(pkg)
           if m.startswith(("tokenmill.stages", "tokenmill.pipeline")) or m in ("ray",)]
    assert not bad, f"tokenmill/{pkg} must stand alone: {bad}"


def test_only_pipeline_imports_ray():
    bad = [(f, m) for pkg in ("readers", "stages", "filters", "tokenize", "manifests", "train")
           for f, m in _imports(pkg) if m == "ray" or m.startswith("ray.")]
    assert not bad, bad


def test_train_needs_only_the_shards():
    bad = [(f, m) for f, m in _imports("train")
           if m.startswith("tokenmill.") and not m.startswith(("tokenmill.train", "tokenmill.tokenize"))]
    assert not bad, f"train/ imports only tokenmill.tokenize: {bad}"
