"""`tokenmill show RUN DOC_ID`: the lineage of one document, its WARC record re-read from the source."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from seeing_run import small_run
from tokenmill import cli
from tokenmill.manifests.show import lineage, read_record


def _row(run, where, pred):
    return next(r for r in pq.read_table(str(run / where)).to_pylist() if pred(r))


def test_show_a_near_duplicate(capsys):
    run = small_run()
    doc = _row(run, "removed/dedup", lambda r: True)
    assert cli.main(["show", str(run), doc["id"]]) == 0
    out = capsys.readouterr().out
    assert f"WARC-Record-ID: <{doc['warc_record_id']}>" in out and "WARNING" not in out
    assert "HTTP/1.1 200 OK" in out and "<!DOCTYPE html>" in out  # the record, re-read from the WARC
    assert "dedup       dropped: near_duplicate" in out and "kept copy urn:uuid:" in out
    assert "quality     kept" in out and "pii         not reached" in out
    assert f"byte {doc['source_offset']}" in out


def test_show_a_kept_document_with_pii():
    run = small_run()
    doc = _row(run, "docs", lambda r: "<EMAIL>" in (r["text"] or ""))
    d = lineage(str(run), doc["id"])
    assert d["dropped_by"] is None
    pii = next(s for s in d["stages"] if s["stage"] == "pii")
    assert pii["status"] == "kept" and pii["replacements"].get("email", 0) >= 1
    lang = next(s for s in d["stages"] if s["stage"] == "language")
    assert lang["language"] == doc["language"]


def test_show_a_dropped_document_is_terminal_safe(capsys):
    run = small_run()
    doc = _row(run, "removed/url_filter", lambda r: "<script>" in r["url"])
    assert cli.main(["show", str(run), doc["id"]]) == 0
    out = capsys.readouterr().out
    assert "url_filter  dropped: blocklisted_domain" in out and "extract     not reached" in out
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert cli.main(["show", str(run), doc["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["record"]["warc"]


def test_show_unknown_id(capsys):
    assert cli.main(["show", str(small_run()), "urn:uuid:nope"]) == 2
    assert "no document with this id" in capsys.readouterr().err


def test_read_record_inside_one_gzip_stream(tmp_path):
    """A WARC gzipped as one stream: the record is found by decompressing from the stream's start."""
    raw = io.BytesIO()
    w = WARCWriter(raw, gzip=False)
    offsets = []
    for i in range(3):
        offsets.append(raw.tell())
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(f"https://e.example/{i}", "response", payload=io.BytesIO(f"<p>page {i}</p>".encode()),
                                            http_headers=http))
    prefix = gzip.compress(b"")  # a member before the stream: the stream starts after it
    path = tmp_path / "one-stream.warc.gz"
    path.write_bytes(prefix + gzip.compress(raw.getvalue()))
    rec = read_record(str(path), len(prefix) + offsets[2], stream_start=len(prefix))
    assert dict(rec["warc"])["WARC-Target-URI"] == "https://e.example/2" and rec["body"] == b"<p>page 2</p>"


def test_show_a_jsonl_document_re_reads_its_line(capsys):
    from seeing_run import jsonl_run

    run = jsonl_run()
    assert cli.main(["show", str(run), "d3"]) == 0
    out = capsys.readouterr().out
    assert "line 4" in out and '"id": "d3"' in out and "a3@example.com" in out  # the source line, as read
    assert "replaced: email 1" in out and "Write to me at <EMAIL> please" in out
