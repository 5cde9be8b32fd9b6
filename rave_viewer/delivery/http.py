"""HTTP byte-range reads from any static host, with the failure modes of real servers made explicit.

Why the standard library (``http.client``) and not urllib or httpx: the loader must read a response body only
as far as it needs and then drop the connection (servers that ignore ``Range`` send the whole file), count
every byte that arrived, see each redirect, and apply a timeout to every read. ``http.client`` gives exactly
that control with no new dependency; urllib hides redirects and the connection, and httpx would add a
dependency for features we do not use (HTTP/2, async).

:func:`fetch_range` reads ``[start, end)`` of a URL and hands each piece to a sink as it arrives:

* 206 with a matching ``Content-Range``: the range;
* 200 (``Range`` ignored): the body is skipped up to ``start``, read up to ``end``, then the connection is
  closed (the rest is never read); the skipped bytes are counted as ``wasted``;
* 301/302/303/307/308: followed (at most :data:`MAX_REDIRECTS`, http and https only); the final URL is
  returned so the next request goes there directly;
* 416: :class:`FetchError` ``kind="range"`` with the file size when the server states it;
* timeouts, refused or dropped connections, a body that ends early: :class:`FetchError` (retryable), after
  the sink got every byte that did arrive.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
READ_SIZE = 16 * 1024  # bytes per socket read: the granularity of progress and of a stop request
DEFAULT_TIMEOUT = 10.0  # seconds without a byte (connect or read) before a request counts as timed out
USER_AGENT = "rave-viewer/0.1 (range loader)"


class FetchError(Exception):
    """A request that failed; ``kind`` is timeout | connection | dropped | range | http | redirect | url."""

    def __init__(self, kind: str, message: str, *, retryable: bool, size: int | None = None):
        super().__init__(" ".join(message.split()))
        self.kind, self.retryable, self.size = kind, retryable, size


class Stopped(Exception):
    """The sink asked to stop reading (the loader's target was lowered or the loader closed)."""


@dataclass
class FetchResult:
    """What one :func:`fetch_range` call did."""

    url: str  # the final URL (after redirects)
    status: int  # 206 or 200
    ranged: bool  # the server honoured Range
    received: int  # bytes handed to the sink
    wasted: int  # bytes read but not handed to the sink (a 200 body before ``start``)
    size: int | None  # the whole file's size when the server said it (Content-Range total / Content-Length)
    seconds: float  # wall time from sending the request to the last byte
    redirected: bool = False


def is_url(text: str) -> bool:
    """True for ``http://`` and ``https://`` addresses (what the viewer treats as a remote stream)."""
    return isinstance(text, str) and bool(re.match(r"(?i)^https?://", text.strip()))


def _connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("url", f"not an http(s) URL: {url[:200]}", retryable=False)
    try:
        port = parts.port
    except ValueError:
        raise FetchError("url", f"bad port in {url[:200]}", retryable=False) from None
    if scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return conn, path


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)


def fetch_range(
    url: str,
    start: int,
    end: int,
    sink: Callable[[bytes], None],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    stop: Callable[[], bool] | None = None,
    on_wasted: Callable[[int], None] | None = None,
) -> FetchResult:
    """Read bytes ``[start, end)`` of ``url`` into ``sink`` (called once per arriving piece, in order).

    ``stop()`` is polled between reads: when it returns True the connection is closed and :class:`Stopped`
    raised (the sink has everything that arrived). ``on_wasted(n)`` hears of bytes skipped as they are read.
    Raises :class:`FetchError` as described in the module doc.
    """
    if not 0 <= start < end:
        raise ValueError(f"bad range [{start}, {end})")
    redirected = False
    for _ in range(MAX_REDIRECTS + 1):
        t0 = time.perf_counter()
        conn, path = _connect(url, timeout)
        try:
            try:
                conn.request("GET", path, headers={"Range": f"bytes={start}-{end - 1}", "User-Agent": USER_AGENT,
                                                   "Accept-Encoding": "identity"})
                resp = conn.getresponse()
            except socket.timeout:
                raise FetchError("timeout", f"no answer within {timeout:g} s", retryable=True) from None
            except ssl.SSLCertVerificationError as e:  # retrying cannot help
                raise FetchError("connection", f"TLS certificate not accepted: {e.verify_message or e}",
                                 retryable=False) from None  # fmt: skip
            except (ConnectionError, OSError, http.client.HTTPException) as e:
                raise FetchError("connection", f"cannot connect: {_why(e)}", retryable=True) from None
            status = resp.status
            if status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location")
                if not loc:
                    raise FetchError("redirect", f"HTTP {status} without a Location", retryable=False)
                url = urljoin(url, loc.strip())
                if urlsplit(url).scheme.lower() not in ("http", "https"):
                    raise FetchError("redirect", f"redirect to a non-http URL ({url[:120]})", retryable=False)
                redirected = True
                continue
            if status == 416:
                m = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", resp.getheader("Content-Range") or "")
                size = int(m.group(1)) if m else None
                of = f" (the file is {size} bytes)" if size is not None else ""
                raise FetchError("range", f"HTTP 416: bytes {start}-{end - 1} are past the end of the file{of}",
                                 retryable=False, size=size)  # fmt: skip
            if status == 206:
                m = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
                if not m or int(m.group(1)) != start:
                    raise FetchError("http", f"HTTP 206 with an unexpected Content-Range "
                                     f"({(resp.getheader('Content-Range') or 'none')[:60]})", retryable=True)
                size = int(m.group(3)) if m.group(3) != "*" else None
                want = min(end, int(m.group(2)) + 1) - start
                got, _ = _pump(resp, 0, want, sink, stop, timeout)
                return FetchResult(url, 206, True, got, 0, size, time.perf_counter() - t0, redirected)
            if status == 200:
                length = resp.getheader("Content-Length")
                size = int(length) if length and length.isdigit() else None
                if size is not None and size <= start:
                    raise FetchError("range", f"the file is {size} bytes, byte {start} was asked for",
                                     retryable=False, size=size)  # fmt: skip
                want = end - start if size is None else min(end, size) - start
                got, wasted = _pump(resp, start, want, sink, stop, timeout, on_wasted)
                return FetchResult(url, 200, False, got, wasted, size, time.perf_counter() - t0, redirected)
            raise FetchError("http", f"HTTP {status} {resp.reason or ''}".strip(),
                             retryable=status in (408, 425, 429, 500, 502, 503, 504))  # fmt: skip
        finally:
            conn.close()  # also drops what a 200 body has left unread
    raise FetchError("redirect", f"more than {MAX_REDIRECTS} redirects", retryable=False)


def _why(e: BaseException) -> str:
    return " ".join((getattr(e, "strerror", None) or str(e) or type(e).__name__).split())


def _pump(resp, skip: int, want: int, sink, stop, timeout: float, on_wasted=None) -> tuple[int, int]:
    """Read ``skip`` bytes to discard, then ``want`` bytes into the sink; (received, wasted)."""
    got = wasted = 0
    try:
        while wasted < skip:
            if stop is not None and stop():
                raise Stopped()
            piece = resp.read(min(READ_SIZE, skip - wasted))
            if not piece:
                raise FetchError("dropped", f"the connection closed after {wasted} bytes", retryable=True)
            wasted += len(piece)
            if on_wasted is not None:
                on_wasted(len(piece))
        while got < want:
            if stop is not None and stop():
                raise Stopped()
            piece = resp.read1(min(READ_SIZE, want - got)) if hasattr(resp, "read1") else resp.read(
                min(READ_SIZE, want - got))
            if not piece:
                raise FetchError("dropped", f"the connection closed after {got} of {want} bytes", retryable=True)
            got += len(piece)
            sink(piece)
    except socket.timeout:
        raise FetchError("timeout", f"no data for {timeout:g} s (after {got} of {want} bytes)",
                         retryable=True) from None  # fmt: skip
    except http.client.IncompleteRead:
        raise FetchError("dropped", f"the connection closed after {got} of {want} bytes", retryable=True) from None
    except (ConnectionError, OSError, http.client.HTTPException) as e:
        raise FetchError("dropped", f"connection lost after {got} of {want} bytes ({_why(e)})",
                         retryable=True) from None  # fmt: skip
    return got, wasted


def fetch_small(url: str, *, limit: int, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
    """The whole body of a small file (a manifest) of at most ``limit`` bytes; None when it does not exist
    (404/410); FetchError otherwise. Follows redirects like :func:`fetch_range`."""
    buf = bytearray()
    try:
        res = fetch_range(url, 0, limit + 1, buf.extend, timeout=timeout)
    except FetchError as e:
        if e.kind == "http" and str(e).startswith(("HTTP 404", "HTTP 410")):
            return None
        if e.kind == "range" and e.size == 0:
            return b""
        raise
    if res.received > limit:
        raise FetchError("http", f"{url[:120]} is larger than {limit} bytes", retryable=False)
    return bytes(buf)


__all__ = ["FetchError", "FetchResult", "Stopped", "fetch_range", "fetch_small", "is_url", "MAX_REDIRECTS"]
