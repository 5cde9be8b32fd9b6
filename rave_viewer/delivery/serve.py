"""A static file server with HTTP byte ranges, an optional bandwidth limit and fault injection, loopback only.

Python's ``http.server`` ignores ``Range``; a published site needs it to behave like a real static host, so
``rave publish --serve`` (a local preview), the tests and benchmarks/streaming.py use this one. It serves the
files of one folder (no listing, no path outside it, GET and HEAD only), counts the body bytes it sent per
path, and can simulate a link (``rate`` bytes/s, ``latency`` s per request), a host that ignores Range, a
connection cut after some bytes, a corrupted byte, or a redirect. It refuses to bind anything but loopback:
it has no token or Origin check, it is a preview and test tool, not a deployment.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import RaveError

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".json": "application/json",
         ".rave": "application/octet-stream", ".ply": "application/octet-stream", ".spz": "application/octet-stream",
         ".png": "image/png", ".css": "text/css"}  # fmt: skip
SLICE = 8192  # bytes per write when throttled


@dataclass
class Faults:
    """Misbehaviour to simulate (tests): every field off by default."""

    ignore_range: bool = False  # answer 200 with the whole body
    cut_at: int | None = None  # close the connection when the body reaches this file offset (once, then behave)
    cut_path: str | None = None  # ...only for this path
    corrupt_offset: int | None = None  # flip this byte of the file in the first `corrupt_times` responses
    corrupt_path: str | None = None
    corrupt_times: int = 1
    redirect: dict[str, str] = field(default_factory=dict)  # path -> location (302)
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status (e.g. 503), once each
    stall_at: int | None = None  # stop sending (without closing) at this file offset, once
    stall_path: str | None = None


class Stats:
    """Body bytes sent and requests answered, per path (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)

    def add(self, path: str, n: int) -> None:
        with self.lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def bytes(self, path: str) -> int:
        with self.lock:
            return self.sent.get(path, 0)

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.requests.clear()


class _Handler(BaseHTTPRequestHandler):
    server: "RangeServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _file(self) -> tuple[str, Path | None]:
        rel = unquote(urlsplit(self.path).path)
        if rel.endswith("/"):
            rel += "index.html"
        root = self.server.root
        p = (root / rel.lstrip("/")).resolve()
        if root not in p.parents or not p.is_file():
            return rel, None
        return rel, p

    def _serve(self, head: bool) -> None:
        srv, faults = self.server, self.server.faults
        rel, p = self._file()
        rng = self.headers.get("Range")
        if srv.latency:
            time.sleep(srv.latency)
        with srv.lock:
            forced = faults.status.pop(rel, None)
            loc = faults.redirect.get(rel)
        if forced is not None:
            return self._simple(forced, rel, rng)
        if loc is not None:
            srv.stats.requests.append((rel, rng, 302))
            self.send_response(302)
            self.send_header("Location", loc)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if p is None:
            return self._simple(404, rel, rng)
        size = p.stat().st_size
        start, end, status = 0, size, 200
        if rng and not faults.ignore_range:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1, size) if m.group(2) else size
                else:  # suffix range: the last N bytes
                    start, end = max(size - int(m.group(2)), 0), size
                if start >= size or end <= start:
                    srv.stats.requests.append((rel, rng, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        srv.stats.requests.append((rel, rng, status))
        self.send_response(status)
        self.send_header("Content-Type", TYPES.get(p.suffix.lower(), "application/octet-stream"))
        self.send_header("Accept-Ranges", "none" if faults.ignore_range else "bytes")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Cache-Control", "no-store")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if head:
            return
        self._send_body(rel, p, start, end)

    def _simple(self, code: int, rel: str, rng) -> None:
        self.server.stats.requests.append((rel, rng, code))
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_body(self, rel: str, p: Path, start: int, end: int) -> None:
        srv, faults = self.server, self.server.faults
        with srv.lock:
            cut = faults.cut_at if faults.cut_path in (None, rel) and faults.cut_at is not None and (
                start < faults.cut_at < end) else None
            if cut is not None:
                faults.cut_at = None
            stall = faults.stall_at if faults.stall_path in (None, rel) and faults.stall_at is not None and (
                start <= faults.stall_at < end) else None
            if stall is not None:
                faults.stall_at = None
            corrupt = None
            if faults.corrupt_offset is not None and faults.corrupt_path in (None, rel) and faults.corrupt_times > 0:
                if start <= faults.corrupt_offset < end:
                    corrupt = faults.corrupt_offset
                    faults.corrupt_times -= 1
        sent = 0
        rate = srv.rate if srv.rate_paths is None or rel in srv.rate_paths else None
        with open(p, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                n = min(SLICE if rate else 1 << 16, end - pos)
                if cut is not None:
                    n = min(n, cut - pos)
                    if n <= 0:
                        break
                if stall is not None:
                    n = min(n, stall - pos) or n
                if stall is not None and pos >= stall:
                    time.sleep(srv.stall_seconds)
                    break
                buf = bytearray(f.read(n))
                if not buf:
                    break
                if corrupt is not None and pos <= corrupt < pos + len(buf):
                    buf[corrupt - pos] ^= 0xFF
                t0 = time.perf_counter()
                try:
                    self.wfile.write(buf)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(buf)
                srv.stats.add(rel, len(buf))
                pos += len(buf)
                if rate:
                    wait = len(buf) / rate - (time.perf_counter() - t0)
                    if wait > 0:
                        time.sleep(wait)
        if pos < end:  # cut, stalled or the client left: never reuse this connection
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(2)
            except OSError:
                pass


class RangeServer(ThreadingHTTPServer):
    """``with RangeServer(folder, rate=2e6/8) as s: s.url("scene.rave")``; ``s.stats.bytes("/scene.rave")``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, *,
                 rate: float | None = None, latency: float = 0.0, faults: Faults | None = None,
                 rate_paths: tuple[str, ...] | None = None):  # fmt: skip
        try:
            loop = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loop = host == "localhost"
        if not loop:
            raise RaveError(f"the preview server only binds loopback addresses, not {host!r}")
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise RaveError("not a folder", root)
        self.rate = rate  # bytes/s per response (None: unlimited)
        self.rate_paths = rate_paths  # throttle only these paths (None: all)
        self.latency = latency
        self.faults = faults or Faults()
        self.stats = Stats()
        self.lock = threading.Lock()
        self.stall_seconds = 30.0
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def handle_error(self, request, client_address) -> None:  # a client that left early is not an error here
        pass

    def url(self, rel: str = "") -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{rel.lstrip('/')}"

    def start(self) -> "RangeServer":
        self._thread = threading.Thread(target=self.serve_forever, name="rave-range-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> "RangeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["Faults", "RangeServer", "Stats"]
