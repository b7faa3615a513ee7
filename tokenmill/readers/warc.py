"""WARC and WET records → documents (warcio), every record that is not one a named skip.

A WARC `response` becomes a `Doc` with its raw HTTP body in `doc.raw` (the extract stage decodes
and extracts it); a WET `conversion` record carries Common Crawl's text. Records that are not
documents (request, metadata, warcinfo, revisit, non-HTML, non-2xx) yield `Skip("skip_*")`;
broken ones (a truncated record, a bad gzip member, broken headers) yield a named `Skip` and
reading goes on at the next gzip member.

A `.warc.gz` compressed as one gzip stream rather than one member per record (older tools and
wget-style writers; warcio: "non-chunked gzip file detected") is read as one stream from the
member that holds several records (`_read_gzip_stream`): such a stream has no member to restart
at, so it cannot be split by byte range (a byte-range shard starting inside it finds no record
and reads nothing; the shard holding its start reads all of it), a clipped end is counted as
`truncated_record` (as in a record-gzipped file), and corrupt data inside it fails the task naming the file (the records
after it cannot be reached). Its documents carry `meta["gzip_stream_start"]` (the byte where the
stream begins: 0 for a whole-file stream), and `source_offset - gzip_stream_start` is where the
record starts in the decompressed stream.

The file is opened with `remote.open_input`: remote
reads are retried and resumed there, and an input that cannot be read fails the task
(`remote.RemoteReadError`), never counted as a broken record.
"""

from __future__ import annotations

import gzip
import io
import logging
import posixpath
import re
import zlib
from collections.abc import Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParser

from tokenmill.doc import Doc
from tokenmill.readers import remote
from tokenmill.readers.paths import InputConfig, Shard
from tokenmill.readers.skip import Skip

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml")
GZIP_MAGIC = b"\x1f\x8b\x08"


def next_member(f, pos: int, limit: int | None = None) -> int | None:
    """Offset of the first gzip member at or after `pos` that holds a WARC record, or None."""
    chunk = 1 << 20
    while limit is None or pos < limit:
        f.seek(pos)
        buf = f.read(chunk + len(GZIP_MAGIC))
        if not buf:
            return None
        i = buf.find(GZIP_MAGIC)
        while i != -1 and i < chunk:
            try:
                head = zlib.decompressobj(wbits=31).decompress(buf[i : i + 4096], 16)
            except zlib.error:
                head = b""
            if head.startswith(b"WARC/"):
                return pos + i
            i = buf.find(GZIP_MAGIC, i + 1)
        pos += chunk
    return None


def _header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("'\"").lower()
    return None


def read_warc(shard: Shard, cfg: InputConfig, counters=None) -> Iterator[Doc | Skip]:
    gzipped = shard.path.endswith(".gz")
    with remote.open_input(shard.path, remote.RetryPolicy.from_config(cfg), counters) as f:
        pos = shard.start
        if pos > 0:
            pos = next_member(f, pos, shard.end)
        while pos is not None:
            if gzipped and _member_holds_records(f, pos):
                yield from _read_gzip_stream(f, shard, cfg, pos, skip=0)
                return
            f.seek(pos)
            it = ArchiveIterator(f, arc2warc=True)
            failed_at = None
            last = None  # offset of the last record yielded
            try:
                for record in it:
                    offset = it.offset  # start of this record (warcio sets it before yielding)
                    if shard.end is not None and offset >= shard.end:
                        return
                    last = offset
                    yield _record_to_doc(record, shard, cfg, offset)
            except ArchiveLoadFailed as e:
                if gzipped and last is not None and "non-chunked gzip" in str(e):
                    # The member that began at `last` holds more records: one gzip stream, not one
                    # member per record. Its first record was yielded; read the rest as a stream.
                    yield from _read_gzip_stream(f, shard, cfg, last, skip=1)
                    return
                failed_at = it.offset if it.offset > pos else pos
                # warcio reads a gzip member it cannot inflate as plain text, then finds no WARC
                # header in it ("Unknown archive format, first line: ['\x1f\x8b..."): a bad member.
                reason = "bad_gzip_member" if _looks_gzipped(str(e)) else "bad_record_headers"
                log.warning("%s: %s at byte %d: %s", shard.label, reason, failed_at, str(e)[:200])
                yield Skip(reason)
            except (EOFError, zlib.error) as e:
                failed_at = it.offset if it.offset > pos else pos
                log.warning("%s: bad_gzip_member at byte %d: %s", shard.label, failed_at, e)
                yield Skip("bad_gzip_member")
            except ValueError as e:  # a header warcio cannot parse (e.g. a bad Content-Length)
                failed_at = it.offset if it.offset > pos else pos
                log.warning("%s: bad_record_headers at byte %d: %s", shard.label, failed_at, e)
                yield Skip("bad_record_headers")
            # Other OSErrors (a disk or network failure, remote.RemoteReadError) are not the
            # record's fault: they fail the task, naming the file, instead of being counted here.
            if failed_at is None or not gzipped:
                return
            pos = next_member(f, failed_at + 1, shard.end)


def _looks_gzipped(message: str) -> bool:
    return "\x1f\x8b" in message or "\\x1f\\x8b" in message


def _member_holds_records(f, pos: int) -> bool:
    """Whether the gzip member at `pos` is to be read as a stream: it goes on past its first WARC
    record (a file gzipped as one stream, or a member of several records, rather than one member
    per record), or the file ends inside it (clipped: the stream reader counts what is cut).
    Inflates that one record (its headers say how long it is), then puts the file back at `pos`."""
    f.seek(pos)
    inflate = zlib.decompressobj(wbits=31)
    head = b""
    size = 0  # bytes inflated
    record_end = None  # where the first record ends, in inflated bytes
    try:
        pending = b""
        while True:
            if not pending:
                pending = f.read(1 << 16)
                if not pending:
                    return size > 0  # the file ends inside the member
            out = inflate.decompress(pending, 1 << 14)  # at most 16 kB out per step: stop early, err late
            pending = inflate.unconsumed_tail
            size += len(out)
            if record_end is None:
                head += out
                end = head.find(b"\r\n\r\n")
                if end == -1:
                    if len(head) > 1 << 20:  # no header end in 1 MB: not a WARC record; warcio will say
                        return False
                    continue
                m = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head[:end])
                if not head.startswith(b"WARC/") or m is None:
                    return False
                record_end = end + 4 + int(m.group(1)) + 4  # block, then the record's CRLF CRLF
                head = b""
            if size > record_end:  # the same member goes on after the record
                return True
            if inflate.eof:
                return False
    except zlib.error:
        return False  # a bad member: the record-by-record path counts it
    finally:
        f.seek(pos)


class WarcStreamError(ValueError):
    """A WARC's single gzip stream is corrupt: the records after the damage cannot be reached."""


def _read_gzip_stream(f, shard: Shard, cfg: InputConfig, start: int, skip: int) -> Iterator[Doc | Skip]:
    """The records of the gzip stream beginning at byte `start`, decompressed as one stream (one
    pass; memory: warcio's 16 kB buffer). The first `skip` records were already yielded."""
    f.seek(start)
    stream = gzip.GzipFile(fileobj=f, mode="rb")  # also reads any further members, in order
    it = ArchiveIterator(stream, arc2warc=True)
    seen = 0
    try:
        for record in it:
            seen += 1
            if seen <= skip:
                continue
            item = _record_to_doc(record, shard, cfg, start + it.offset)
            if isinstance(item, Doc):
                item.meta["gzip_stream_start"] = start
            yield item
        stream.read(1)  # warcio ends quietly when a record's headers are cut: the stream's end marker says
    except EOFError as e:  # the stream ends before its end marker: the file was clipped inside a record
        log.warning("%s: truncated_record after %d records (decompressed byte %d): %s",
                    shard.label, seen, stream.tell(), e)
        yield Skip("truncated_record")
    except (zlib.error, gzip.BadGzipFile, ArchiveLoadFailed, ValueError) as e:
        # No gzip member to restart at inside one stream: give up on the file, saying so.
        raise WarcStreamError(
            f"{shard.path}: the gzip stream starting at byte {start} is corrupt after {seen} records "
            f"(decompressed byte {stream.tell()}): {e}; the records after it cannot be read") from None
    log.info("%s: read as one gzip stream from byte %d (%d records): it cannot be split by byte range",
             shard.label, start, seen)


def _record_to_doc(record, shard: Shard, cfg: InputConfig, offset: int) -> Doc | Skip:
    rtype = record.rec_type
    wanted = "conversion" if shard.format == "wet" else "response"
    if rtype != wanted:
        return Skip(f"skip_{rtype}")
    headers = record.rec_headers
    url = (headers.get_header("WARC-Target-URI") or "").strip().strip("<>") or None
    record_id = (headers.get_header("WARC-Record-ID") or "").strip().strip("<>") or None
    date = headers.get_header("WARC-Date")
    doc_id = record_id or f"{posixpath.basename(shard.path)}@{offset}"
    base = dict(id=doc_id, url=url, source=shard.path, source_offset=offset, warc_record_id=record_id, warc_date=date)

    if rtype == "conversion":  # WET: text already extracted by Common Crawl
        text = record.content_stream().read().decode("utf-8", errors="replace")
        if _truncated(record):
            return Skip("truncated_record")
        meta = {}
        lang = headers.get_header("WARC-Identified-Content-Language")
        if lang:
            meta["cc_language"] = lang
        return Doc(text=text, meta=meta, **base)

    http = record.http_headers
    body = None
    if http is None and "application/http" in (headers.get_header("Content-Type") or ""):
        # warcio parses HTTP headers only for http(s) target URIs; parse them here for the rest.
        http, body = _parse_http(record.content_stream().read(cfg.max_body_bytes + 1))
    content_type = http.get_header("Content-Type") if http else None
    if http is not None:
        status = http.get_statuscode()
        if status and not status.startswith("2"):
            return Skip("skip_http_status")
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime and mime not in HTML_TYPES:
        return Skip("skip_non_html")
    if body is None:
        body = record.content_stream().read(cfg.max_body_bytes + 1)
    if len(body) > cfg.max_body_bytes:
        return Skip("body_too_large")
    if _truncated(record):
        return Skip("truncated_record")
    if not body.strip():
        return Skip("empty_body")
    if not mime and not body.lstrip()[:1] == b"<":
        return Skip("skip_non_html")
    return Doc(raw=body, content_type=content_type, http_charset=_header_charset(content_type), **base)


def _parse_http(block: bytes):
    """(StatusAndHeaders, body) from a raw HTTP response block; (None, block) when it is not one."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None, block
    parser = StatusAndHeadersParser([], verify=False)
    return parser.parse(io.BytesIO(head + b"\r\n\r\n")), body


def _truncated(record) -> bool:
    """The record's block ended before its Content-Length (a clipped file), after reading the payload."""
    stream = record.raw_stream
    remaining = getattr(stream, "limit", 0)
    if remaining:
        stream.read()  # drain what is there, then look again
        remaining = getattr(stream, "limit", 0)
    return bool(remaining)


