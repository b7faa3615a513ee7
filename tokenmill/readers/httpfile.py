"""HTTP(S) inputs: `HttpFile`, a file read as one streamed GET that resumes with Range where a
connection dropped, and fsspec's http(s) filesystem with the same retries (registered on import).

Policy, errors and what is retried: readers/remote.py. Cost on a clean read: one GET per file
(plus one per seek outside the 1 MB read buffer); no HEAD request.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter

import tenacity

from tokenmill.readers import remote
from tokenmill.readers.remote import (NOT_FOUND_STATUSES, RETRY_STATUSES, InputNotFound, InputUnavailable,
                                      RemoteReadError, RetryPolicy, _Retryable, _times, _WaitRetryAfter,
                                      retry_after_s)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0  # no byte for this long: the connection is treated as dropped
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")

_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        import urllib3

        # urllib3 follows redirects only; every other retry is ours (see the module docstring).
        only_redirects = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5,
                                       raise_on_status=False)
        _POOL = urllib3.PoolManager(num_pools=16, maxsize=4, retries=only_redirects,
                                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S))
    return _POOL


def _connection_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions as ue

    return (ue.ProtocolError, ue.TimeoutError, ue.SSLError, ue.NewConnectionError, ue.DecodeError,
            ue.MaxRetryError, ConnectionError, TimeoutError)


def _reason(e: BaseException) -> str:
    """urllib3's own words, once: "Connection broken: IncompleteRead(118429 bytes read, 118430 more expected)"."""
    first = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    return f"{type(e).__name__}: {first}"


def _discard(resp) -> None:
    """Close an answer we will not read (an error page, or a body we leave): the connection goes too."""
    try:
        resp.close()
        resp.release_conn()
    except Exception:  # noqa: BLE001 (closing a broken connection: nothing left to save)
        pass


def _status_line(resp) -> str:
    return f"HTTP {resp.status} {resp.reason or ''}".strip()


class HttpFile(io.RawIOBase):
    """A remote file over HTTP(S), read sequentially with resumable Range requests (see the module)."""

    def __init__(self, url: str, policy: RetryPolicy | None = None, counters: Counter | None = None):
        super().__init__()
        self.url = url
        self.policy = policy or RetryPolicy()
        self.counters = counters
        self.pos = 0
        self.size: int | None = None
        self._resp = None
        self._validator: str | None = None  # ETag or Last-Modified of the first answer
        self._cut_at: int | None = None  # where the last connection dropped, until it is resumed
        self._resp_end: int | None = None  # the byte after the current answer's last (a 206's range end)
        self._retrying(lambda: self._open_at(0), "open")  # a missing file fails here, not mid-read

    # io.RawIOBase
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self.pos
        elif whence == io.SEEK_END:
            if self.size is None:
                raise io.UnsupportedOperation(f"{self.url}: the server did not say the size; cannot seek from the end")
            offset += self.size
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if offset != self.pos:
            self._drop_response()
            self.pos = offset
        return self.pos

    def readinto(self, buf) -> int:
        if self.size is not None and self.pos >= self.size or len(buf) == 0:
            return 0
        n = self._retrying(lambda: self._readinto_once(buf), f"read at byte {self.pos}")
        self.pos += n
        return n

    def close(self) -> None:
        self._drop_response()
        super().close()

    # internals
    def _retrying(self, fn, what: str):
        return remote._retrying(fn, self.url, what, self.policy, self.counters)

    def _readinto_once(self, buf) -> int:
        if self._resp is None:
            self._open_at(self.pos)
            if self._resp is None:  # at or past the end
                return 0
        try:
            n = self._resp.readinto(buf)
        except _connection_errors() as e:
            self._drop_response()
            self._cut_at = self.pos
            raise _Retryable(f"connection dropped at byte {self.pos}: {_reason(e)}") from None
        if n == 0 and (self.size is None or self.pos < self.size):
            if self.size is None:  # a body of unknown length ended: that is the end of the file
                return 0
            if self.pos == self._resp_end:  # the server sent a shorter range than asked: ask for the next
                self._drop_response()
                return self._readinto_once(buf)
            self._drop_response()
            self._cut_at = self.pos
            raise _Retryable(f"body ended at byte {self.pos} of {self.size}")
        return n

    def _open_at(self, pos: int) -> None:
        if self.size is not None and pos >= self.size:
            self._resp = None
            return
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={pos}-"}
        try:
            resp = _pool().request("GET", self.url, headers=headers, preload_content=False, decode_content=False)
        except _connection_errors() as e:
            raise _Retryable(f"no connection: {_reason(e)}") from None
        status = resp.status
        if status in RETRY_STATUSES:
            wait = retry_after_s(resp.headers.get("Retry-After"))
            _discard(resp)
            raise _Retryable(_status_line(resp), status, wait)
        if status in NOT_FOUND_STATUSES:
            _discard(resp)
            raise InputNotFound(f"{self.url}: does not exist ({_status_line(resp)})", self.url, status)
        if status == 416:  # asked past the end (an empty file answers `Content-Range: bytes */0`)
            total = re.fullmatch(r"bytes\s+\*/(\d+)", resp.headers.get("Content-Range", "").strip())
            _discard(resp)
            if total is not None:
                self.size = int(total.group(1))
            if self.size is not None and pos >= self.size:
                self._resp = None
                return
            raise RemoteReadError(f"{self.url}: {_status_line(resp)} for bytes {pos}- (not retried)", self.url, status)
        if status not in (200, 206):
            _discard(resp)
            raise RemoteReadError(f"{self.url}: {_status_line(resp)} (not retried)", self.url, status)

        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        if self._validator is None:
            self._validator = validator
        elif validator and validator != self._validator:
            _discard(resp)
            raise RemoteReadError(f"{self.url}: changed while being read (was {self._validator}, now {validator})",
                                  self.url, status)
        skip = 0
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != pos:
                _discard(resp)
                raise RemoteReadError(f"{self.url}: asked for bytes {pos}-, got Content-Range "
                                      f"{resp.headers.get('Content-Range')!r}", self.url, status)
            if m.group(3) != "*":
                self.size = int(m.group(3))
            self._resp_end = int(m.group(2)) + 1
        else:  # 200: the whole file, whatever Range said
            length = resp.headers.get("Content-Length")
            self.size = int(length) if length and length.isdigit() else self.size
            self._resp_end = self.size
            skip = pos
        self._resp = resp
        if skip:
            log.warning("%s: the server ignores Range; reading %d bytes again to resume", self.url, skip)
            self._skip(skip)
        if self._cut_at is not None and pos > 0:
            if self.counters is not None:
                self.counters["io_resumes"] += 1
            log.info("%s: resumed at byte %d", self.url, pos)
        self._cut_at = None

    def _skip(self, n: int) -> None:
        chunk = bytearray(1 << 16)
        while n:
            view = memoryview(chunk)[: min(n, len(chunk))]
            try:
                got = self._resp.readinto(view)
            except _connection_errors() as e:
                self._drop_response()
                self._cut_at = self.pos
                raise _Retryable(f"connection dropped while skipping to byte {self.pos}: {e}") from None
            if not got:
                self._drop_response()
                raise _Retryable(f"body ended before byte {self.pos}")
            n -= got

    def _drop_response(self) -> None:
        if self._resp is not None:
            resp, self._resp = self._resp, None
            if resp.length_remaining == 0:  # read to the end: the connection can be used again
                resp.release_conn()
            else:
                _discard(resp)


# --- fsspec's http(s) filesystem, for every other caller ----------------------------------

def _http_filesystem_class():
    """fsspec's HTTPFileSystem with our semantics: `info`/`exists` retry 429/5xx and dropped
    connections (tenacity's AsyncRetrying, same policy) and tell 404 from 503 (fsspec's own turns
    any failure, a 503 too, into FileNotFoundError, and `exists` into False); `open` gives an
    `HttpFile`. Registered for http:// and https:// when this module is imported, so storage
    helpers (sizes, file identities, `exists`) that go through fsspec behave like the readers."""
    import asyncio

    import aiohttp
    from fsspec.implementations.http import HTTPFileSystem, _file_info

    class RetryingHTTPFileSystem(HTTPFileSystem):
        async def _info(self, url, **kwargs):
            session = await self.set_session()
            policy = remote._PROCESS_POLICY

            async def once(size_policy: str):
                try:
                    return await _file_info(self.encode_url(url), session=session, size_policy=size_policy,
                                            **self.kwargs, **kwargs)
                except aiohttp.ClientResponseError as e:
                    if e.status in NOT_FOUND_STATUSES:
                        raise InputNotFound(f"{url}: does not exist (HTTP {e.status})", url, e.status) from None
                    if e.status in RETRY_STATUSES:
                        wait = retry_after_s((e.headers or {}).get("Retry-After"))
                        raise _Retryable(f"HTTP {e.status} {e.message}", e.status, wait) from None
                    if e.status in (405, 501) and size_policy == "head":  # HEAD not allowed: ask with GET
                        return await once("get")
                    raise RemoteReadError(f"{url}: HTTP {e.status} {e.message} (not retried)", url, e.status) from None
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as e:
                    raise _Retryable(f"no connection: {_reason(e)}") from None

            retrying = tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(policy.retries + 1), wait=_WaitRetryAfter(policy),
                retry=tenacity.retry_if_exception_type(_Retryable), reraise=False,
                before_sleep=lambda rs: log.warning("%s: info (%s); retry %d of %d in %.1f s", url,
                                                    rs.outcome.exception(), rs.attempt_number, policy.retries,
                                                    rs.next_action.sleep))
            try:
                info = await retrying(once, "head")
            except tenacity.RetryError as e:
                last = e.last_attempt.exception()
                raise InputUnavailable(f"{url}: unavailable, retried {_times(policy.retries)}; last: {last}", url,
                                       getattr(last, "status", None)) from None
            return {"name": url, "size": None, **info, "type": "file"}

        async def _exists(self, path, **kwargs):
            try:
                await self._info(path, **kwargs)
            except FileNotFoundError:
                return False
            return True

        async def _isfile(self, path, **kwargs):
            return await self._exists(path, **kwargs)

        def _open(self, path, mode="rb", **kwargs):
            if mode != "rb":
                raise NotImplementedError(f"{path}: http(s) inputs are read-only")
            return io.BufferedReader(HttpFile(path, remote._PROCESS_POLICY), buffer_size=1 << 20)

    return RetryingHTTPFileSystem


def register_http_filesystem() -> None:
    import fsspec

    cls = _http_filesystem_class()
    for protocol in ("http", "https"):
        fsspec.register_implementation(protocol, cls, clobber=True)


register_http_filesystem()
