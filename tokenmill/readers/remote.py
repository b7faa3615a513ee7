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
  reopens it and seeks to the offset reached; a throttled request (S3's 503 SlowDown) is retried.
  On S3 the requests are tried once by s3fs and botocore (their own retries off), so every retry
  is this module's: with backoff and jitter, and counted; reads ahead 8 MB (`S3_BLOCK_BYTES`).
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
per seek), no extra copies. The HTTP side (`HttpFile`, the fsspec filesystem) is in httpfile.py.
"""

from __future__ import annotations

import email.utils
import errno
import io
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import tenacity
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_FOUND_STATUSES = frozenset({404, 410})


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


def _throttled(e: BaseException) -> bool:
    """An object store's "slow down" (S3 503 SlowDown, a 429/5xx) as the backend raises it: s3fs
    turns SlowDown and 503 into OSError(EBUSY); botocore's ClientError keeps the HTTP status."""
    for err in (e, e.__cause__):
        if err is None:
            continue
        if isinstance(err, OSError) and err.errno == errno.EBUSY:
            return True
        status = (getattr(err, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in RETRY_STATUSES:
            return True
    return False


S3_BLOCK_BYTES = 8 << 20  # s3fs reads ahead one block: 8 MB, not its default 50 MB, per open input


def _requests_tried_once(fs):
    """The same S3 filesystem with botocore's and s3fs's own retries off, so that a throttled or
    dropped request reaches this module's retry loop (backoff with jitter, counted) instead of being
    retried up to 25 times unseen (botocore 5 x s3fs 5). Other backends are returned as they are."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "s3" not in protocols:
        return fs
    opts = dict(fs.storage_options)
    opts["config_kwargs"] = {**opts.get("config_kwargs", {}), "retries": {"total_max_attempts": 1, "mode": "standard"}}
    twin = type(fs)(**opts)
    twin.retries = 1  # s3fs's own loop (a class attribute, not a constructor option)
    return twin


class ResumableFile(io.RawIOBase):
    """An fsspec file (s3://, gs://, ...) that reopens at the offset reached when its connection
    drops, and retries a throttled request (S3 503 SlowDown) with backoff, counting both."""

    def __init__(self, url: str, policy: RetryPolicy | None = None, counters: Counter | None = None):
        super().__init__()
        from tokenmill import storage

        self.url = url
        self.policy = policy or RetryPolicy()
        self.counters = counters
        fs, self.path = storage.fs_and_path(url)
        self.fs = _requests_tried_once(fs)
        self._open_kw = {"block_size": S3_BLOCK_BYTES} if self.fs is not fs else {}
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
            except OSError as e:
                if not _throttled(e):
                    raise
                self._close_file()
                self._cut = True
                raise _Retryable(f"throttled at byte {self.pos}: {e}") from None
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
            self._f = self.fs.open(self.path, "rb", **self._open_kw)
            if self.pos:
                self._f.seek(self.pos)
        except FileNotFoundError as e:
            raise InputNotFound(f"{self.url}: does not exist ({e})", self.url) from None
        except _fsspec_retryable() as e:
            self._close_file()
            raise _Retryable(f"cannot open: {type(e).__name__}: {e}") from None
        except OSError as e:
            if not _throttled(e):
                raise
            self._close_file()
            raise _Retryable(f"cannot open, throttled: {e}") from None
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


# --- the entry point ------------------------------------------------------------------------

def is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def open_input(url: str, policy: RetryPolicy | None = None, counters: Counter | None = None,
               buffer_size: int = 1 << 20):
    """A buffered binary file for `url` (local path, http(s)://, or any fsspec URL); remote
    reads are retried and resumed as the module says. 404: `InputNotFound`."""
    from tokenmill import storage

    if is_http(url):
        from tokenmill.readers.httpfile import HttpFile

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
        from tokenmill.readers.httpfile import HttpFile

        f = HttpFile(url, policy, counters)
        try:
            return f.size
        finally:
            f.close()
    fs, path = storage.fs_and_path(url)
    return _retrying(lambda: fs.size(path), url, "size", policy or RetryPolicy(), counters)
