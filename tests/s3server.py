"""A real S3 API on loopback for tests: moto's server (a subprocess, `moto_server`) behind a small
fault-injecting proxy that answers some GETs with S3's `503 SlowDown` and cuts others mid-body.

    with S3Server(faults=True) as s3:        # s3.env: AWS_* variables pointing at the proxy
        s3.client().create_bucket(Bucket="crawl")
        ... tokenmill run CONFIG with env=s3.env ...
        s3.injected                           # {"slowdown": n, "dropped": m}

Faults, per object key read with GET (listings and WARCs alike): the first GET of a key is answered
503 SlowDown, the second is cut after half its body; later ones pass. Writes are never faulted.
The moto process is started under `timeout` so it cannot outlive a crashed test session.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        fault = self.server.fault_for(self.command, self.path)
        if fault == "slowdown":
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            self.wfile.write(SLOWDOWN)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        # a HEAD answer has no body: its Content-Length is the object's size, as moto said
        self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "drop" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: int, faults: bool):
        super().__init__(("127.0.0.1", 0), _Proxy)
        self.upstream = upstream
        self.faults = faults
        self.gets: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()

    def fault_for(self, method: str, path: str) -> str | None:
        if not self.faults or method != "GET":
            return None
        key = path.split("?", 1)[0]
        if not key.endswith(".gz"):
            return None
        with self.lock:
            self.gets[key] += 1
            n = self.gets[key]
            fault = {1: "slowdown", 2: "drop"}.get(n)
            if fault:
                self.injected["slowdown" if fault == "slowdown" else "dropped"] += 1
            return fault


class S3Server:
    """moto_server on a free loopback port, and the proxy in front of it (see the module)."""

    def __init__(self, faults: bool = False, lifetime_s: int = 1200):
        self.faults = faults
        self.lifetime_s = lifetime_s
        self.proc: subprocess.Popen | None = None
        self.proxy: _ProxyServer | None = None

    def __enter__(self) -> "S3Server":
        self.port = free_port()
        moto = Path(sys.executable).parent / "moto_server"
        if not moto.exists():
            raise FileNotFoundError(f"{moto}: install the dev extra (pip install -e '.[dev]') for moto's S3 server")
        self.proc = subprocess.Popen(["timeout", str(self.lifetime_s), str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        self.proxy = _ProxyServer(self.port, self.faults)
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy.server_address[1]}"

    @property
    def direct(self) -> str:
        """moto itself, without the faults."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint}

    @property
    def injected(self) -> dict:
        return dict(self.proxy.injected)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.direct, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")
