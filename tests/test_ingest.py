"""Readers: every record is a document or a counted, named skip; nothing crashes."""

from __future__ import annotations

import gzip
import io
import random
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import article, html_page, make_jsonl, make_warc
from tokenmill.stages.base import StageContext
from tokenmill.readers import InputConfig, Shard, detect_format, expand_paths, list_shards, read_shard
from tokenmill.readers.warc import WarcStreamError


def read_all(path, fmt=None, cfg=None, start=0, end=None):
    ctx = StageContext("ingest")
    shard = Shard(0, str(path), fmt or detect_format(str(path)), start, end)
    docs = list(read_shard(shard, cfg or InputConfig(), ctx))
    s = ctx.stats
    assert s.docs_in == s.docs_out + sum(s.drops.values()), "every record is a document or a counted skip"
    assert s.docs_out == len(docs)
    return docs, s


def test_common_crawl_excerpt(shared_data):
    docs, s = read_all(shared_data / "warc/cc-main-2020-34-excerpt.warc.gz")
    assert len(docs) == 16  # 16 response records, all HTML
    assert s.drops == {"skip_warcinfo": 1, "skip_request": 17, "skip_metadata": 16}
    d = docs[0]
    assert d.id.startswith("urn:uuid:") and d.warc_record_id == d.id
    assert d.url.startswith("http") and d.warc_date.startswith("2020-08")
    assert d.raw and d.source.endswith("cc-main-2020-34-excerpt.warc.gz")


def test_source_offset_rereads_the_record(shared_data):
    path = shared_data / "warc/wget-crawl-2024-sample-0000.warc.gz"
    docs, _ = read_all(path)
    target = docs[7]
    again, _ = read_all(path, start=target.source_offset)
    assert again[0].id == target.id and again[0].raw == target.raw


def test_eucjp_pages_with_broken_dates(shared_data):
    docs, s = read_all(shared_data / "warc/clueweb09-ja-eucjp-quirks.warc.gz")
    assert len(docs) == 29
    assert any(d.warc_date == "2008-10-294T05:21:46-0700" for d in docs)  # kept as given, not parsed
    assert {d.http_charset for d in docs} == {"euc-jp"}


def test_truncated_record_is_counted(shared_data):
    docs, s = read_all(shared_data / "warc/truncated-record.warc.gz")
    assert docs == [] and s.drops == {"truncated_record": 1}


def test_wget_uris_lose_their_brackets(shared_data):
    for name, n in [("wget-crawl-2024-sample-0000.warc.gz", 22), ("wget-crawl-2024-sample-0001.warc.gz", 15)]:
        docs, s = read_all(shared_data / "warc" / name)
        assert len(docs) == n
        assert all(d.url.startswith("http") and not d.url.endswith(">") for d in docs)


def test_wet_file_beside_its_warc(shared_data):
    wet, s = read_all(shared_data / "warc/cc-main-2024-22-whirlwind.warc.wet.gz")
    warc, _ = read_all(shared_data / "warc/cc-main-2024-22-whirlwind.warc.gz")
    assert len(wet) == 1 and len(warc) == 1
    assert wet[0].url == warc[0].url == "https://an.wikipedia.org/wiki/Escopete"
    assert wet[0].text and wet[0].raw is None and wet[0].meta["cc_language"]
    assert s.drops == {"skip_warcinfo": 1}


def test_http_header_parsed_for_non_http_uris(shared_data):
    docs, s = read_all(shared_data / "extraction/pages.warc.gz")
    assert len(docs) == 150 and not s.drops
    hard = [d for d in docs if d.url.startswith("hard::")]
    assert len(hard) == 3 and all(d.content_type == "text/html" and d.raw.lstrip()[:1] == b"<" for d in hard)


def test_skips_are_named(tmp_path):
    path = tmp_path / "mixed.warc.gz"
    make_warc(path, [
        {"url": "https://a.example/1", "body": html_page("one", article(1))},
        {"url": "https://a.example/404", "body": "<html>gone</html>", "status": 404},
        {"url": "https://a.example/logo.png", "body": b"\x89PNG....", "content_type": "image/png"},
        {"url": "https://a.example/empty", "body": b"  "},
        {"url": "https://a.example/meta", "body": b"x: y\r\n", "type": "metadata"},
    ])
    docs, s = read_all(path)
    assert [d.url for d in docs] == ["https://a.example/1"]
    assert s.drops == {"skip_http_status": 1, "skip_non_html": 1, "empty_body": 1, "skip_metadata": 1}


def test_bad_gzip_member_is_skipped_and_reading_goes_on(tmp_path):
    path = tmp_path / "corrupt.warc.gz"
    offsets = make_warc(path, [{"url": f"https://a.example/{i}", "body": html_page(str(i), article(i))} for i in range(5)])
    data = bytearray(path.read_bytes())
    mid = offsets[2] + 40  # inside the deflate stream of the third record
    data[mid:mid + 30] = b"\x00" * 30
    path.write_bytes(bytes(data))
    docs, s = read_all(path)
    assert s.drops == {"bad_gzip_member": 1}  # was counted as bad_record_headers: warcio read the member as text
    assert [d.url for d in docs] == [f"https://a.example/{i}" for i in (0, 1, 3, 4)]


def test_split_by_byte_ranges_reads_each_record_once(tmp_path):
    path = tmp_path / "big.warc.gz"
    rng = random.Random(0)
    noise = lambda: "".join(rng.choices(string.ascii_letters, k=40_000))  # noqa: E731 (incompressible padding)
    make_warc(path, [{"url": f"https://a.example/{i}", "body": html_page(str(i), article(i) + f"<!--{noise()}-->")}
                     for i in range(60)])
    cfg = InputConfig(paths=(str(path),), split_bytes=1_000_000)
    whole, _ = read_all(path)
    size = path.stat().st_size
    assert size > 1_000_000, "the test file must span several shards"
    shards = list_shards(cfg)
    assert len(shards) == -(-size // 1_000_000)
    parts = []
    for sh in shards:
        parts += read_all(path, start=sh.start, end=sh.end)[0]
    assert [d.id for d in parts] == [d.id for d in whole]


def test_jsonl_and_parquet_documents(tmp_path):
    jl = tmp_path / "docs.jsonl"
    make_jsonl(jl, [{"id": "a", "text": "hello", "url": "https://x/1", "lang_hint": "en"},
                    "{not json", {"id": "b"}, {"text": "no id here"}])
    docs, s = read_all(jl)
    assert [d.id for d in docs] == ["a", "docs.jsonl:3"]
    assert docs[0].meta == {"lang_hint": "en"} and docs[0].url == "https://x/1"
    assert s.drops == {"bad_json_line": 1, "no_text": 1}

    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(jl.read_bytes()))
    assert [d.id for d in read_all(gz)[0]] == ["a", "docs.jsonl.gz:3"]

    pqf = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["one", None], "score": [0.5, 0.1]}), pqf)
    docs, s = read_all(pqf)
    assert [d.id for d in docs] == ["p1"] and docs[0].meta == {"score": 0.5} and s.drops == {"no_text": 1}


def test_paths_listing_and_missing_inputs(shared_data, tmp_path):
    listing = shared_data / "warc/CC-MAIN-2024-22.warc.paths.gz"
    files = expand_paths(InputConfig(paths=(str(listing),), base_url="s3://commoncrawl/"))
    assert len(files) == 300 and files[0].startswith("s3://commoncrawl/part-00000")
    with pytest.raises(FileNotFoundError, match=r"input.paths\[0\]"):
        expand_paths(InputConfig(paths=(str(tmp_path / "nothing-*.warc.gz"),)))


def test_unreadable_file_raises(tmp_path):
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(OSError):
        read_all(bad)


# --- WARCs gzipped as one stream (issue 10, defect 2) ---------------------------------------

def single_stream(path, pages) -> bytes:
    """The records of `pages` written uncompressed by warcio, then gzipped as ONE stream (as
    older tools and wget-style writers do), instead of one gzip member per record."""
    plain = path.with_suffix(".plain")
    make_warc(plain, pages)
    raw = gzip.decompress(plain.read_bytes())  # make_warc writes members; undo them
    path.write_bytes(gzip.compress(raw))
    return raw


def pages(n, pad=0):
    rng = random.Random(1)
    noise = lambda: "".join(rng.choices(string.ascii_letters, k=pad))  # noqa: E731 (incompressible padding)
    return [{"url": f"https://a.example/{i}", "body": html_page(str(i), article(i) + (f"<!--{noise()}-->" if pad else ""))}
            for i in range(n)]


def test_single_gzip_stream_reads_every_record(tmp_path):
    """Before: the first record, then the rest of the file counted as one bad_record_headers."""
    path = tmp_path / "one-stream.warc.gz"
    raw = single_stream(path, pages(6))
    docs, s = read_all(path)
    assert [d.url for d in docs] == [f"https://a.example/{i}" for i in range(6)]
    assert not s.drops
    # offsets count decompressed bytes: each one starts a record in the decompressed WARC
    assert all(raw[d.source_offset:].startswith(b"WARC/1.") for d in docs)
    assert all(d.meta["gzip_stream_start"] == 0 for d in docs[1:])


def test_member_of_several_records_after_record_members(tmp_path):
    """Mixed: two records gzipped one per member, then four in one member."""
    head, tail = tmp_path / "head.warc.gz", tmp_path / "tail.warc.gz"
    make_warc(head, pages(6)[:2])
    raw = single_stream(tail, pages(6)[2:])
    path = tmp_path / "mixed.warc.gz"
    path.write_bytes(head.read_bytes() + tail.read_bytes())
    docs, s = read_all(path)
    assert [d.url for d in docs] == [f"https://a.example/{i}" for i in range(6)] and not s.drops
    start = head.stat().st_size
    assert docs[2].source_offset == start  # the member's first record: read record by record
    for d in docs[3:]:
        assert d.meta["gzip_stream_start"] == start and raw[d.source_offset - start:].startswith(b"WARC/1.")


def test_real_warc_recompressed_as_one_stream_gives_the_same_documents(shared_data, tmp_path):
    original = shared_data / "warc/cc-main-2020-34-excerpt.warc.gz"
    path = tmp_path / "excerpt-one-stream.warc.gz"
    path.write_bytes(gzip.compress(gzip.decompress(original.read_bytes())))
    docs, s = read_all(path)
    want, want_stats = read_all(original)
    assert [(d.id, d.url, d.raw) for d in docs] == [(d.id, d.url, d.raw) for d in want]
    assert s.drops == want_stats.drops == {"skip_warcinfo": 1, "skip_request": 17, "skip_metadata": 16}


def test_clipped_single_stream_counts_the_cut_record(tmp_path):
    path = tmp_path / "clipped.warc.gz"
    single_stream(path, pages(6, pad=3000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    docs, s = read_all(path)
    assert 1 <= len(docs) < 6 and [d.url for d in docs] == [f"https://a.example/{i}" for i in range(len(docs))]
    assert s.drops == {"truncated_record": 1}


def test_corrupt_single_stream_fails_naming_the_file(tmp_path):
    path = tmp_path / "corrupt.warc.gz"
    single_stream(path, pages(6, pad=3000))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(WarcStreamError, match=r"corrupt\.warc\.gz: the gzip stream starting at byte 0 is corrupt"):
        read_all(path)


def test_single_stream_split_by_byte_ranges_reads_each_record_once(tmp_path):
    path = tmp_path / "big-one-stream.warc.gz"
    single_stream(path, pages(40, pad=40_000))
    assert path.stat().st_size > 1_000_000, "the test file must span several shards"
    shards = list_shards(InputConfig(paths=(str(path),), split_bytes=1_000_000))
    assert len(shards) > 1
    got = []
    for sh in shards:
        got += [d.url for d in read_all(path, start=sh.start, end=sh.end)[0]]
    assert got == [f"https://a.example/{i}" for i in range(40)]


def test_io_error_mid_file_is_not_a_bad_gzip_member(tmp_path, monkeypatch):
    """A disk or network error is not the record's fault: it fails the task, it is not counted."""
    import tokenmill.readers.remote as remote

    path = tmp_path / "five.warc.gz"
    make_warc(path, pages(5))

    class Failing(io.BufferedReader):
        def read(self, n=-1):
            if self.tell() > 2000:
                raise OSError(5, "Input/output error")
            return super().read(n)

    monkeypatch.setattr(remote, "open_input", lambda url, *a, **k: Failing(io.FileIO(url)))
    with pytest.raises(OSError, match="Input/output error"):
        read_all(path)
