"""WARC and WET records → documents (warcio), every record that is not one a named skip.

A WARC `response` becomes a `Doc` with its raw HTTP body in `doc.raw` (the extract stage decodes
and extracts it); a WET `conversion` record carries Common Crawl's text. Records that are not
documents (request, metadata, warcinfo, revisit, non-HTML, non-2xx) yield `Skip("skip_*")`;
broken ones (a truncated record, a bad gzip member, broken headers) yield a named `Skip` and
reading goes on at the next gzip member. The file is opened with `remote.open_input`: remote
reads are retried and resumed there, and an input that cannot be read fails the task
(`remote.RemoteReadError`), never counted as a broken record.
"""

from __future__ import annotations

import io
import logging
import posixpath
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
            f.seek(pos)
            it = ArchiveIterator(f, arc2warc=True)
            failed_at = None
            try:
                for record in it:
                    offset = it.offset  # start of this record (warcio sets it before yielding)
                    if shard.end is not None and offset >= shard.end:
                        return
                    yield _record_to_doc(record, shard, cfg, offset)
            except remote.RemoteReadError:
                raise  # the input itself could not be read: the task fails, naming it
            except (ArchiveLoadFailed, EOFError, zlib.error, OSError, ValueError) as e:
                failed_at = it.offset if it.offset > pos else pos
                reason = "bad_gzip_member" if isinstance(e, (zlib.error, EOFError, OSError)) else "bad_record_headers"
                log.warning("%s: %s at byte %d: %s", shard.label, reason, failed_at, e)
                yield Skip(reason)
            if failed_at is None or not gzipped:
                return
            pos = next_member(f, failed_at + 1, shard.end)


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


