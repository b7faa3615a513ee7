"""Input files that survive a throttling server and a dropped connection.

In: a path or URL and the input config's retry limits. Out: a binary file object (read, seek,
tell) whose reads are retried at the I/O level, apart from (and long before) task retries:

- http(s)://  `HttpFile`: one streamed GET per position (urllib3), `Range: bytes=N-`. A 429 or
  5xx answer and a connection that drops or stalls are retried with exponential backoff and
  jitter, waiting at least what `Retry-After` asks; a read cut mid-file goes on from the byte
  it reached with a new Range request, so a 1 GB WARC cut at 900 MB costs the last 100 MB, not
  the whole file. A server that ignores Range (200) is read up to that byte again and skipped.
  Common Crawl's server throttles with 503/429 under load; this is what it is for.
- s3://, gs://, ... `ResumableFile` over the fsspec backend's own file: a dropped connection
  reopens it and seeks to the offset reached (s3fs/botocore also retry single requests).
- local paths: the file itself.
- fsspec's own http(s) filesystem is replaced (on import) by one whose `info`/`exists` retry the
  same way and tell 404 from 503, so a size or file-identity lookup elsewhere in the pipeline
  does not call a throttled file missing. Its limits: `use_policy`, set by the readers from the
  input config.

Each retry counts as `io_retries` (and each mid-file resume as `io_resumes`) in the counters
handed in, which reach the task's manifest row and `tokenmill inspect`.

404/410 is `InputNotFound` ("does not exist"); any other 4xx is not retried (`RemoteReadError`
with its status). When retries run out: `InputUnavailable` naming the URL, how many times it
was retried and the last status or error. All three are `OSError`s; format readers must let
them through (they fail the task), never count them as a broken record.

The backoff policy is tenacity's (`wait_exponential` + `wait_random`, `stop_after_attempt`), a
well-kept library, rather than a hand-written loop; urllib3's own `Retry` is not used because
it covers the request only, not a body cut halfway, and fsspec's HTTP backend turns a 503 on
its HEAD request into "file not found". Cost on a clean read: one request per file (plus one
per seek), no extra copies.
"""

from __future__ import annotations

import email.utils
import io
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import tenacity
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_FOUND_STATUSES = frozenset({404, 410})
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0  # no byte for this long: the connection is treated as dropped
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class RemoteReadError(OSError):
    """A remote input could not be read; `url` and `status` (HTTP status, or None) say why."""

    def __init__(self, message: str, url: str, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class InputNotFound(RemoteReadError, FileNotFoundError):
    """The server says the file is not there (HTTP 404/410)."""


class InputUnavailable(RemoteReadError, ConnectionError):
    """Retryable failures (429/5xx, dropped connections) went on past `input.retries`."""


class _Retryable(Exception):
    """One failed attempt that may succeed later; `retry_after` is the server's wish, in seconds."""

    def __init__(self, what: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(what)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 8  # retries after the first attempt, per read position
    max_wait_s: float = 60.0  # the longest wait between two attempts (Retry-After included)
    initial_wait_s: float = 0.5  # then x2 per retry, plus up to 0.5 s of jitter
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_config(cls, cfg) -> "RetryPolicy":
        return cls(retries=cfg.retries, max_wait_s=cfg.retry_max_s)


_PROCESS_POLICY = RetryPolicy()


def use_policy(policy: RetryPolicy) -> None:
    """The policy for http(s) accesses made through fsspec in this process (file identities,
    sizes, `exists`): the readers set it from `input.retries` / `input.retry_max_s`."""
    global _PROCESS_POLICY
    _PROCESS_POLICY = policy


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff with jitter, but never sooner than the server's Retry-After (both
    capped at `max_wait_s`, so a config bounds every wait)."""

    def __init__(self, policy: RetryPolicy):
        self.backoff = (tenacity.wait_exponential(multiplier=policy.initial_wait_s, max=policy.max_wait_s, exp_base=2)
                        + tenacity.wait_random(0, 0.5))
        self.cap = policy.max_wait_s

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        asked = getattr(exc, "retry_after", None) or 0.0
        return min(self.cap, max(self.backoff(retry_state), asked))


def _retrying(fn, url: str, what: str, policy: RetryPolicy, counters: Counter | None):
    """fn() under the policy: `_Retryable` is retried, anything else passes through."""

    def before_sleep(rs):
        if counters is not None:
            counters["io_retries"] += 1
        log.warning("%s: %s (%s); retry %d of %d in %.1f s", url, what, rs.outcome.exception(),
                    rs.attempt_number, policy.retries, rs.next_action.sleep)

    started = time.monotonic()
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(policy.retries + 1), wait=_WaitRetryAfter(policy),
                                 retry=tenacity.retry_if_exception_type(_Retryable), before_sleep=before_sleep,
                                 sleep=policy.sleep, reraise=False)
    try:
        return retrying(fn)
    except tenacity.RetryError as e:
        last = e.last_attempt.exception()
        raise InputUnavailable(
            f"{url}: unavailable, retried {_times(policy.retries)} over {time.monotonic() - started:.0f} s "
            f"(input.retries); last: {last}", url, getattr(last, "status", None)) from None


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: "120" or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- http(s) --------------------------------------------------------------------------------

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
        return _retrying(fn, self.url, what, self.policy, self.counters)

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
            raise _Retryable(f"connection dropped at byte {self.pos}: {type(e).__name__}: {e}") from None
        if n == 0 and (self.size is None or self.pos < self.size):
            if self.size is None:  # a body of unknown length ended: that is the end of the file
                return 0
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
            raise _Retryable(f"no connection: {type(e).__name__}: {e}") from None
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
        else:  # 200: the whole file, whatever Range said
            length = resp.headers.get("Content-Length")
            self.size = int(length) if length and length.isdigit() else self.size
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


# --- other fsspec backends ----------------------------------------------------------------

def _fsspec_retryable() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import aiohttp

        kinds += [aiohttp.ClientPayloadError, aiohttp.ClientConnectionError]
    except ImportError:
        pass
    try:
        import botocore.exceptions as be

        kinds += [be.ConnectionError, be.HTTPClientError]
    except ImportError:
        pass
    return tuple(kinds)


class ResumableFile(io.RawIOBase):
    """An fsspec file (s3://, gs://, ...) that reopens at the offset reached when its connection drops."""

    def __init__(self, url: str, policy: RetryPolicy | None = None, counters: Counter | None = None):
        super().__init__()
        from tokenmill import storage

        self.url = url
        self.policy = policy or RetryPolicy()
        self.counters = counters
        self.fs, self.path = storage.fs_and_path(url)
        self.pos = 0
        self._f = None
        self._cut = False
        self._call(self._reopen, "open")

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
            offset += self._call(lambda: self.fs.size(self.path), "size")
        self.pos = offset
        if self._f is not None:
            self._f.seek(offset)
        return self.pos

    def readinto(self, buf) -> int:
        def once():
            if self._f is None:
                self._reopen()
            try:
                data = self._f.read(len(buf))
            except FileNotFoundError as e:
                raise InputNotFound(f"{self.url}: does not exist ({e})", self.url) from None
            except _fsspec_retryable() as e:
                self._close_file()
                self._cut = True
                raise _Retryable(f"connection dropped at byte {self.pos}: {type(e).__name__}: {e}") from None
            buf[: len(data)] = data
            return len(data)

        n = self._call(once, f"read at byte {self.pos}")
        self.pos += n
        return n

    def close(self) -> None:
        self._close_file()
        super().close()

    def _call(self, fn, what: str):
        return _retrying(fn, self.url, what, self.policy, self.counters)

    def _reopen(self) -> None:
        try:
            self._f = self.fs.open(self.path, "rb")
            if self.pos:
                self._f.seek(self.pos)
        except FileNotFoundError as e:
            raise InputNotFound(f"{self.url}: does not exist ({e})", self.url) from None
        except _fsspec_retryable() as e:
            self._close_file()
            raise _Retryable(f"cannot open: {type(e).__name__}: {e}") from None
        if self._cut and self.pos:
            if self.counters is not None:
                self.counters["io_resumes"] += 1
            log.info("%s: resumed at byte %d", self.url, self.pos)
        self._cut = False

    def _close_file(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except Exception:  # noqa: BLE001 (closing a broken connection: nothing left to save)
                pass


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
            policy = _PROCESS_POLICY

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
                    raise _Retryable(f"no connection: {type(e).__name__}: {e}") from None

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
            return io.BufferedReader(HttpFile(path, _PROCESS_POLICY), buffer_size=1 << 20)

    return RetryingHTTPFileSystem


def register_http_filesystem() -> None:
    import fsspec

    cls = _http_filesystem_class()
    for protocol in ("http", "https"):
        fsspec.register_implementation(protocol, cls, clobber=True)


register_http_filesystem()


# --- the entry point ------------------------------------------------------------------------

def is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def open_input(url: str, policy: RetryPolicy | None = None, counters: Counter | None = None,
               buffer_size: int = 1 << 20):
    """A buffered binary file for `url` (local path, http(s)://, or any fsspec URL); remote
    reads are retried and resumed as the module says. 404: `InputNotFound`."""
    from tokenmill import storage

    if is_http(url):
        raw = HttpFile(url, policy, counters)
    else:
        fs, path = storage.fs_and_path(url)
        if isinstance(fs, LocalFileSystem):
            return fs.open(path, "rb")
        raw = ResumableFile(url, policy, counters)
    return io.BufferedReader(raw, buffer_size=buffer_size)


def input_size(url: str, policy: RetryPolicy | None = None, counters: Counter | None = None) -> int | None:
    """The size of an input in bytes (None when an HTTP server does not say), with retries."""
    from tokenmill import storage

    if is_http(url):
        f = HttpFile(url, policy, counters)
        try:
            return f.size
        finally:
            f.close()
    fs, path = storage.fs_and_path(url)
    return _retrying(lambda: fs.size(path), url, "size", policy or RetryPolicy(), counters)
