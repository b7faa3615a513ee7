"""Damaged and hostile WARCs, generated: each file holds good records (distinct real articles,
`https://good.example/<file>/<n>`) beside the damage, and `write_all` also writes the same good
records, undamaged, into `control.warc.gz`, so a run over both says whether every good record
survived the damage next to it.

    files = write_all(Path("hostile"), texts, bomb_bytes=1 << 30, big_record_bytes=200 << 20)

| file                       | damage                                                                 |
|----------------------------|------------------------------------------------------------------------|
| flipped.warc.gz            | random bytes flipped inside two records' gzip members                  |
| cut-at-<k>.warc.gz         | the file cut at every record boundary, and in the middle of each record |
| bomb.warc.gz               | one record of `bomb_bytes` of zeros: ~1,000x smaller on disk           |
| big-record.warc.gz         | one record of `big_record_bytes` of HTML                               |
| deep.warc.gz               | HTML nested 100,000 elements deep                                      |
| wrong-charsets.warc.gz     | every page declares a charset it is not written in                     |
| binary-as-html.warc.gz     | random bytes (and a PNG) served as text/html                           |
| one-stream.warc.gz         | the whole WARC gzipped as one stream, not one member per record        |
| empty.warc.gz              | an empty file                                                          |
| zero-length.warc.gz        | a response record with Content-Length 0                                |
"""

from __future__ import annotations

import gzip
import io
import random
import zlib
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

def article(key: str, text: str) -> str:
    """A page around a real article (paragraphs on blank lines): trafilatura keeps it, the rules pass it."""
    paras = "".join(f"<p>{p.strip()}</p>" for p in text.split("\n\n") if p.strip())
    return (f"<html><head><meta charset=\"utf-8\"><title>Report {key}</title></head><body><article>"
            f"<h1>Report {key}</h1>{paras}</article></body></html>")


class _Zeros(io.RawIOBase):
    """`n` bytes of a repeated chunk, made as read (a bomb's body is never held whole)."""

    def __init__(self, n: int, chunk: bytes = b"\0"):
        self.left = n
        self.chunk = chunk * ((1 << 20) // len(chunk))

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left, len(self.chunk))
        b[:k] = self.chunk[:k]
        self.left -= k
        return k


def _record(writer: WARCWriter, url: str, body, length: int | None = None, content_type="text/html; charset=utf-8",
            i: int = 0):
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    payload = io.BytesIO(body) if isinstance(body, bytes) else body
    headers = {"WARC-Date": "2024-05-18T01:58:10Z"}
    rec = writer.create_warc_record(url, "response", payload=payload, http_headers=http, warc_headers_dict=headers,
                                    length=length)
    writer.write_record(rec)


def good_records(name: str, n: int, texts: list[str]) -> list[tuple[str, bytes]]:
    """n pages, each around the next unused real article of `texts` (consumed)."""
    if len(texts) < n:
        raise ValueError("not enough articles for the good records: pass more texts")
    return [(f"https://good.example/{name}/{k}", article(f"{name}-{k}", texts.pop(0)).encode()) for k in range(n)]


def _write(path: Path, records: list, gzip_members: bool = True) -> list[int]:
    """Records (url, body[, length, content_type]) into a WARC; returns each record's start offset."""
    offsets = []
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=gzip_members)
        for r in records:
            offsets.append(f.tell())
            _record(w, *r)
        offsets.append(f.tell())
    return offsets


def write_all(d: Path, texts: list[str], bomb_bytes: int = 1 << 30, big_record_bytes: int = 200 << 20,
              seed: int = 12) -> dict:
    """Every hostile file into `d` (and control.warc.gz), good records around `texts` (real articles,
    25 needed); returns {file name: good URLs in it}."""
    texts = list(texts)
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    good: dict[str, list[str]] = {}
    control: list = []

    def keep(name, recs):
        good[name] = [u for u, _ in recs]
        control.extend(recs)

    # random byte flips inside records 1 and 3 of 5 (record-gzipped: the others are read)
    recs = good_records("flipped", 5, texts)
    offs = _write(d / "flipped.warc.gz", recs)
    data = bytearray((d / "flipped.warc.gz").read_bytes())
    for k in (1, 3):
        lo, hi = offs[k] + 30, offs[k + 1] - 10
        for pos in rng.sample(range(lo, hi), 8):
            data[pos] ^= 0xFF
    (d / "flipped.warc.gz").write_bytes(bytes(data))
    keep("flipped", [r for k, r in enumerate(recs) if k not in (1, 3)])

    # cut at every record boundary and in the middle of every record
    recs = good_records("cut", 4, texts)
    offs = _write(d / "uncut.tmp", recs)
    whole = (d / "uncut.tmp").read_bytes()
    (d / "uncut.tmp").unlink()
    for k in range(len(recs)):
        for c in (offs[k], (offs[k] + offs[k + 1]) // 2):  # at the boundary before record k; inside it
            (d / f"cut-at-{c}.warc.gz").write_bytes(whole[:c])
            good[f"cut-at-{c}"] = [u for u, _ in recs[:k]]  # records before k are whole
    control.extend(recs[:-1])  # every cut file's whole records are among these (the last is never whole)

    # a gzip bomb: bomb_bytes of zeros in one record (~1 MB per GB on disk), between good ones
    recs = good_records("bomb", 2, texts)
    _write(d / "bomb.warc.gz", [recs[0], ("https://bad.example/bomb", _Zeros(bomb_bytes), bomb_bytes), recs[1]])
    keep("bomb", recs)

    # one record of big_record_bytes of HTML
    recs = good_records("big", 2, texts)
    _write(d / "big-record.warc.gz", [recs[0], ("https://bad.example/big", _Zeros(big_record_bytes, b"<p>big page</p>"),
                                                big_record_bytes), recs[1]])
    keep("big", recs)

    # HTML nested 100,000 deep
    recs = good_records("deep", 2, texts)
    deep = b"<html><body>" + b"<div>" * 100_000 + b"deep text" + b"</div>" * 100_000 + b"</body></html>"
    _write(d / "deep.warc.gz", [recs[0], ("https://bad.example/deep", deep), recs[1]])
    keep("deep", recs)

    # every charset declared wrong: UTF-8 pages declared as other charsets, in header and meta
    recs = good_records("charset", 3, texts)
    wrong = []
    for (u, b), cs in zip(recs, ("iso-8859-1", "shift_jis", "utf-16")):
        wrong.append((u, b.replace(b'charset="utf-8"', f'charset="{cs}"'.encode()), None, f"text/html; charset={cs}"))
    _write(d / "wrong-charsets.warc.gz", wrong)
    good["charset"] = []  # decoded as declared, they are not the control's UTF-8 pages: only accounted for

    # binary content declared as text/html
    recs = good_records("binary", 2, texts)
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(20000))
    noise = bytes(rng.randrange(256) for _ in range(50000))
    _write(d / "binary-as-html.warc.gz", [recs[0], ("https://bad.example/png", png), ("https://bad.example/noise", noise),
                                          recs[1]])
    keep("binary", recs)

    # the whole WARC gzipped as one stream
    recs = good_records("stream", 3, texts)
    _write(d / "one-stream.tmp", recs, gzip_members=False)
    (d / "one-stream.warc.gz").write_bytes(gzip.compress((d / "one-stream.tmp").read_bytes()))
    (d / "one-stream.tmp").unlink()
    keep("stream", recs)

    # an empty file; a zero-length response record between good ones
    (d / "empty.warc.gz").write_bytes(b"")
    good["empty"] = []
    recs = good_records("zero", 2, texts)
    _write(d / "zero-length.warc.gz", [recs[0], ("https://bad.example/zero", b""), recs[1]])
    keep("zero", recs)

    ctl = d.parent / f"{d.name}-control"
    ctl.mkdir(exist_ok=True)
    _write(ctl / "control.warc.gz", control)
    return good


def zlib_ratio(path: Path) -> float:
    """Inflated size / size on disk of a gzip file (multi-member), read in steps."""
    inflated = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            inflated += len(chunk)
    return inflated / max(1, path.stat().st_size)


__all__ = ["write_all", "zlib_ratio", "zlib"]
