"""A small HTTP file server for tests, on 127.0.0.1 only: Range requests, ETags, and fault modes
that act like a throttled or flaky crawl server. It serves the files it is given in place.

    with CrawlServer({"crawl/a.warc.gz": path}, fault="503-then-drop") as srv:
        srv.url("crawl/a.warc.gz")     # http://127.0.0.1:PORT/crawl/a.warc.gz
        srv.log                        # [(path, method, range header, status, bytes sent, time)]

Faults, per file, counted by method (a HEAD has no body to cut, so only "503" applies to it, and
only to the first; GETs are counted apart, so the GET faults hold whoever asks HEAD first):
  "503-then-drop"  1st answer: 503 with Retry-After: 1; 2nd: the answer's headers, then half its
                   body, then the connection is closed; later ones are served.
  "always-503"     every answer is 503 (Retry-After: 0).
  "ignore-range"   every answer is 200 with the whole file, whatever Range asks.
  "drop-always"    every answer is cut after half its body.
  "drop-then-503"  the 1st answer is cut after half its body; every later one is 503.
  "short-ranges"   a Range answer covers at most 10,000 bytes, however many were asked for.
The server stops itself after `max_requests` requests, and when the `with` block ends.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class CrawlServer:
    def __init__(self, files: dict[str, Path | bytes], fault: str | None = None, max_requests: int = 2000):
        self.files = files
        self.fault = fault
        self.max_requests = max_requests
        self.seen: Counter = Counter()
        self.log: list[tuple] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # an idle keep-alive connection ends its thread

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self)

            def do_HEAD(self):
                server._handle(self, head=True)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that hangs up: its business
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> "CrawlServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def requests_for(self, name: str, method: str = "GET") -> list[tuple]:
        return [r for r in self.log if r[0] == name and r[1] == method]

    def _data(self, name: str) -> bytes | None:
        src = self.files.get(name)
        if src is None:
            return None
        return src if isinstance(src, bytes) else Path(src).read_bytes()

    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False) -> None:
        name = h.path.lstrip("/").split("?")[0]
        with self._lock:
            self.seen[(h.command, name)] += 1
            nth = self.seen[(h.command, name)]
            total = sum(self.seen.values())
        rng = h.headers.get("Range")
        if total > self.max_requests:  # a runaway client: stop serving
            threading.Thread(target=self.httpd.shutdown, daemon=True).start()
            return self._reply(h, name, rng, 503, b"", {"Connection": "close"}, head=head)
        data = self._data(name)
        if data is None:
            return self._reply(h, name, rng, 404, b"not found\n", head=head)
        if (self.fault == "always-503" or (self.fault == "503-then-drop" and nth == 1)
                or (self.fault == "drop-then-503" and nth > 1)):
            wait = "1" if self.fault == "503-then-drop" else "0"
            return self._reply(h, name, rng, 503, b"slow down\n", {"Retry-After": wait}, head=head)
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        status, body, headers = 200, data, {"ETag": etag, "Accept-Ranges": "bytes"}
        m = _RANGE.match(rng or "")
        if m and self.fault != "ignore-range":
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if self.fault == "short-ranges":
                end = min(end, start + 9_999)
            if start >= len(data):
                return self._reply(h, name, rng, 416, b"", {"Content-Range": f"bytes */{len(data)}"}, head=head)
            status, body = 206, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        cut = not head and (self.fault == "drop-always" or (self.fault == "503-then-drop" and nth == 2)
               or (self.fault == "drop-then-503" and nth == 1))
        self._reply(h, name, rng, status, body, headers, head=head, cut=cut)

    def _reply(self, h, name, rng, status, body, headers=None, head=False, cut=False) -> None:
        part = b"" if head else (body[: len(body) // 2 or len(body)] if cut else body)
        # Logged before the answer goes out: a client that has its answer finds the request logged
        # (logged after, a test reading the log right away raced the handler thread).
        with self._lock:
            self.log.append((name, h.command, rng, status, len(part), time.monotonic()))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            try:
                h.wfile.write(part)
                h.wfile.flush()
            except OSError:  # the client went away
                h.close_connection = True
        if cut:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
