"""Load a .rave stream from a static web host by HTTP range requests, exposing each complete prefix as it arrives.

:class:`StreamLoader` (one per remote stream):

1. ``open()``: the sidecar manifest when there is one (``<stem>.manifest.json``, optional), then the header and
   the whole chunk index in ONE range request (its exact size from the manifest; else a :data:`PROBE` request,
   completed by one more when a big index does not fit in it);
2. ``start()``: a thread fetches chunks in order, as range requests from the first byte it lacks to the target
   (each at most about :data:`SPAN_S` seconds of data at the measured throughput, so auto mode re-plans
   often). Every byte that arrives is kept: raising the target fetches only the missing bytes, lowering it
   stops at the next read and never refetches anything. A chunk is "complete" when all its bytes are here and
   its CRC32 matches the index; a CRC mismatch is refetched once, then reported (the prefix before it stays).
3. Failures (timeout, refused or dropped connection, 5xx) keep the complete prefix, put one line in
   ``progress.message`` and retry with exponential back-off (:data:`BACKOFF_S`, at most ``retries`` in a row);
   416, 404 and other permanent answers stop the loader with that line. A server that ignores ``Range`` (200)
   still works: each response is read only as far as needed, then the connection is closed.

Only the container's public parsing is used (:func:`~rave_viewer.codec.read_info` on a prefix);
:func:`header_extent` reads the two header fields that say how long the header and index are.
"""

from __future__ import annotations

import bisect
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from ..errors import RaveError
from . import manifest as mf
from .adapt import Target, Throughput, auto_chunks, chunks_for
from .http import DEFAULT_TIMEOUT, FetchError, Stopped, fetch_range, fetch_small

PROBE = 4096  # bytes of the first request without a manifest (v1: header + index of up to 330 chunks)
MAX_INDEX_BYTES = 64 << 20  # a header+index claimed larger than this is refused
SPAN_S = 2.0  # one request carries at most about this many seconds of data (at least one chunk)
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_RETRIES = 6


@dataclass(frozen=True)
class Progress:
    """A snapshot of a loader (what the panel shows)."""

    state: str  # opening | fetching | idle (target reached) | retrying | done | failed | closed
    fetched: int  # bytes held (contiguous from byte 0; may end inside a chunk)
    complete_bytes: int  # bytes of the complete prefix (header, index, complete chunks)
    total: int  # bytes of the whole stream
    chunks: int  # complete chunks
    n_chunks: int
    gaussians: int  # Gaussians in the complete chunks
    n_gaussians: int
    target_chunks: int
    level: int | None  # highest level fully held (manifest), None without levels
    n_levels: int | None
    throughput: float | None  # bytes/s (estimate over the last requests)
    wasted: int  # bytes that arrived but were dropped (200 bodies skipped, corrupt chunks)
    requests: int
    retries: int  # failed requests retried so far
    elapsed: float  # seconds since open()
    message: str | None  # the last problem, one line (None when all is well)
    ranged: bool | None  # whether the server honours Range (None before the first answer)


def header_extent(prefix: bytes) -> int | None:
    """Bytes the header plus the chunk index take, from the first 24 bytes of a format-1 stream (header size
    at offset 6, chunk count at offset 20, see codec/container.py); None for other versions or too few bytes."""
    if len(prefix) < 24 or prefix[:4] != b"RAVE":
        return None
    version, hsize = struct.unpack_from("<HH", prefix, 4)
    if version != 1:
        return None
    (n_chunks,) = struct.unpack_from("<I", prefix, 20)
    return hsize + 12 * n_chunks + 4


def _extent(prefix: bytes, name: str) -> int | None:
    """Bytes of header (+ codebook) + index the prefix says it needs: the container's ``bytes_needed`` where it
    has one (format 2), else :func:`header_extent`."""
    try:
        from ..codec.container import bytes_needed
    except ImportError:
        return header_extent(prefix)
    try:
        return bytes_needed(prefix)
    except RaveError as e:
        raise RaveError(str(e), name) from None


def manifest_url(url: str) -> str:
    """``https://h/a/scene.rave?x`` -> ``https://h/a/scene.manifest.json?x`` (the sidecar `rave publish` writes)."""
    p = urlsplit(url)
    path = p.path[:-5] if p.path.lower().endswith(".rave") else p.path
    return urlunsplit((p.scheme, p.netloc, path + ".manifest.json", p.query, ""))


class _Corrupt(Exception):
    def __init__(self, index: int):
        self.index = index


class StreamLoader:
    """Range loader for one remote stream (see the module docstring); thread-safe, callbacks on its thread."""

    def __init__(
        self,
        url: str,
        target: Target | None = None,
        *,
        use_manifest: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: tuple[float, ...] = BACKOFF_S,
        on_update: Callable[[Progress], None] | None = None,
        max_gaussians: int | None = None,
    ):
        self.url = url.strip()
        self.name = self.url
        self._target = target or Target("full")
        self.use_manifest = use_manifest
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.on_update = on_update
        self.max_gaussians = max_gaussians
        self.manifest: mf.Manifest | None = None
        self.manifest_note: str | None = None
        self.info = None  # codec StreamInfo of the whole stream
        self.ends: list[int] = []
        self.counts: list[int] = []
        self._data = bytearray()
        self._complete = 0  # complete chunks (CRC checked)
        self._crc_retry: set[int] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._tp = Throughput()
        self._t0 = time.monotonic()
        self._state = "opening"
        self._message: str | None = None  # lasting notes (Range ignored, a corrupt chunk)
        self._problem: str | None = None  # the current transient failure (cleared by the next good request)
        self._wasted = 0
        self._requests = 0
        self._ranged: bool | None = None
        self._retries = 0
        self._req_bytes = 0
        self._req_t0 = 0.0

    # -- opening -----------------------------------------------------------------------------------------------
    def open(self) -> "StreamLoader":
        """Fetch the manifest (optional) and the header + chunk index; RaveError naming the URL on failure."""
        self._t0 = time.monotonic()
        if self.use_manifest:
            self._load_manifest()
        exact = self.manifest.header_bytes if self.manifest is not None else None
        want = exact if exact is not None else PROBE
        self._fetch_retrying(0, want, "the header")
        need = _extent(bytes(self._data), self.name) if exact is None else exact
        while True:
            if need is not None and need > MAX_INDEX_BYTES:
                raise RaveError(f"the stream's header claims a {need}-byte chunk index (over {MAX_INDEX_BYTES})",
                                self.name)  # fmt: skip
            if need is not None and need > len(self._data):
                self._fetch_retrying(len(self._data), need, "the chunk index")
                if exact is None:
                    grown = _extent(bytes(self._data), self.name)
                    if grown is not None and grown > need:  # v2: the codebook size said where the index starts
                        need = grown
                        continue
            try:
                info = self._read_info()
                break
            except RaveError as e:
                # a version whose header size this module cannot compute: fetch twice as much, up to the limit
                if "truncated" not in str(e) or len(self._data) >= MAX_INDEX_BYTES or self._ranged is False:
                    raise
                need = 2 * max(len(self._data), PROBE)
        self.info = info
        self.ends = [c.offset + c.length for c in info.chunks]
        self.counts = []
        total = 0
        for c in info.chunks:
            total += c.count
            self.counts.append(total)
        if self.max_gaussians is not None and info.n_gaussians > self.max_gaussians:
            raise RaveError(f"the stream declares {info.n_gaussians} Gaussians, more than the limit of "
                            f"{self.max_gaussians} (max_gaussians)", self.name)  # fmt: skip
        if self.manifest is not None:
            head = bytes(self._data[: self.index_end])
            try:
                mf.check_against(self.manifest, info, head)
            except mf.ManifestError as e:
                self.manifest_note = f"manifest ignored: {e}"
                self.manifest = None
        try:
            with self._cond:
                self._advance()
        except _Corrupt as c:
            self._on_corrupt(c.index)
        self._set_state("idle")
        return self

    @property
    def index_end(self) -> int:
        return self.info.chunks[0].offset if self.info is not None and self.info.chunks else (
            self.info.expected_size if self.info is not None else 0)

    def _read_info(self):
        from ..codec import read_info

        return read_info(bytes(self._data), name=self.name)

    def _load_manifest(self) -> None:
        murl = manifest_url(self.url)
        try:
            text = fetch_small(murl, limit=mf.MAX_BYTES, timeout=self.timeout)
        except FetchError as e:
            self.manifest_note = f"no manifest ({e})"
            return
        if text is None:
            return
        try:
            self.manifest = mf.parse(text)
        except mf.ManifestError as e:
            self.manifest_note = f"manifest ignored: {e}"

    def _fetch_retrying(self, start: int, end: int, what: str) -> None:
        """Synchronous fetch of ``[start, end)`` into the buffer (opening phase), with retries."""
        attempt = 0
        while len(self._data) < end:
            try:
                self._request(len(self._data), end)
                if self._file_size_hint is not None and len(self._data) >= self._file_size_hint:
                    return  # the file is shorter than the probe
            except FetchError as e:
                if not e.retryable or attempt >= self.retries:
                    raise RaveError(f"cannot fetch {what}: {e}", self.name) from None
                delay = self.backoff[min(attempt, len(self.backoff) - 1)]
                attempt += 1
                self._retries += 1
                self._problem = f"{e}; retrying in {delay:g} s ({attempt}/{self.retries})"
                if self._sleep(delay):
                    raise RaveError("closed", self.name) from None

    _file_size_hint: int | None = None

    # -- the byte path -----------------------------------------------------------------------------------------
    def _request(self, start: int, end: int) -> None:
        """One range request; bytes go into the buffer as they arrive (complete chunks checked on the way)."""
        self._requests += 1
        self._req_bytes, self._req_t0 = 0, time.monotonic()
        try:
            res = fetch_range(self.url, start, end, self._sink, timeout=self.timeout, stop=self._should_stop,
                              on_wasted=self._add_wasted)
        except Stopped:
            self._tp.add(self._req_bytes, time.monotonic() - self._req_t0)
            return
        except _Corrupt as c:
            self._tp.add(self._req_bytes, time.monotonic() - self._req_t0)
            self._on_corrupt(c.index)
            return
        except FetchError:
            self._tp.add(self._req_bytes, time.monotonic() - self._req_t0)
            raise
        if res.redirected:
            self.url = res.url  # later requests go to the final location
        if self._ranged is None or not res.ranged:
            self._ranged = res.ranged
        if not res.ranged and self._message is None:
            self._message = "the server ignores Range (HTTP 200): every request reads the file from its start"
        if res.size is not None:
            self._file_size_hint = res.size
        self._tp.add(res.received, res.seconds)

    def _add_wasted(self, n: int) -> None:
        with self._cond:
            self._wasted += n

    def _sink(self, piece: bytes) -> None:
        with self._cond:
            self._data += piece
            self._req_bytes += len(piece)
            if self._problem is not None:  # data flows again
                self._problem = None
                if self._state == "retrying":
                    self._state = "fetching"
            grown = self._advance()
        if grown:
            self._notify()

    def _advance(self) -> bool:
        """Mark the chunks whose bytes are all here as complete (CRC checked); True if any was. Lock held."""
        if self.info is None:
            return False
        grown = False
        while self._complete < len(self.ends) and self.ends[self._complete] <= len(self._data):
            c = self.info.chunks[self._complete]
            if zlib.crc32(memoryview(self._data)[c.offset : c.offset + c.length]) != c.crc:
                raise _Corrupt(self._complete)
            self._complete += 1
            grown = True
        return grown

    def _on_corrupt(self, i: int) -> None:
        c = self.info.chunks[i]
        with self._cond:
            self._wasted += len(self._data) - c.offset
            del self._data[c.offset :]
            if i in self._crc_retry:
                self._state = "failed"
                self._message = (f"chunk {i} is corrupt (CRC mismatch) again after a refetch; showing the "
                                 f"first {i} chunks")  # fmt: skip
                self._failed_chunk = i
            else:
                self._crc_retry.add(i)
                self._message = f"chunk {i} arrived corrupt (CRC mismatch): fetching it again"
        self._notify()

    _failed_chunk: int | None = None

    def _should_stop(self) -> bool:
        with self._cond:
            if self._closed:
                return True
            # lowered target: stop once the wanted chunks are complete (the partial bytes are kept)
            return self.info is not None and self._complete >= self._want()

    # -- targets -----------------------------------------------------------------------------------------------
    def _want(self) -> int:
        """Chunks the current target needs (lock held)."""
        t = self._target
        if t.mode == "auto":
            left = t.value - (time.monotonic() - self._t0)
            held = self.ends[self._complete - 1] if self._complete else self.index_end
            return auto_chunks(self._complete, held, self.ends, self._tp.estimate, left)
        rd = self.manifest.rd if self.manifest is not None else None
        return chunks_for(t, self.ends, self.counts, rd)

    def set_target(self, target: Target) -> None:
        """Aim for ``target`` from now on (raising fetches the missing chunks; lowering stops fetching)."""
        if target.mode == "psnr" and (self.manifest is None or self.manifest.rd is None):
            raise RaveError("a PSNR target needs the stream's RD table (publish it with `rave publish`)", self.name)
        with self._cond:
            self._target = target
            if self._state in ("done", "idle") and self.info is not None and self._complete < self._want():
                self._state = "fetching"
            self._cond.notify_all()

    @property
    def target(self) -> Target:
        return self._target

    def chunks_for(self, target: Target) -> int:
        with self._cond:
            rd = self.manifest.rd if self.manifest is not None else None
            return chunks_for(target, self.ends, self.counts, rd)

    # -- the fetch thread --------------------------------------------------------------------------------------
    def start(self) -> "StreamLoader":
        if self.info is None:
            self.open()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rave-range-loader", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                if self._closed:
                    return
                if self._state == "failed" and self._failed_chunk is not None:
                    self._cond.wait(0.5)
                    continue
                want = self._want()
                if self._complete >= want:
                    self._state = "done" if self._complete == len(self.ends) else "idle"
                    self._notify_locked()
                    self._cond.wait(0.25 if self._target.mode == "auto" else 1.0)
                    continue
                self._state = "fetching"
                start = len(self._data)
                end = self.ends[want - 1]
                tp = self._tp.estimate
                # one request: at most SPAN_S seconds of data at the current estimate, at least the next chunk
                nxt = self.ends[self._complete]
                span_end = max(nxt, start + int(tp * SPAN_S)) if tp else nxt
                j = bisect.bisect_left(self.ends, min(span_end, end))
                end = min(self.ends[min(j, want - 1)], end)
            try:
                self._request(start, end)
                attempt = 0
                with self._cond:
                    if self._state == "retrying":
                        self._state = "fetching"
                    self._problem = None
            except FetchError as e:
                if not e.retryable or attempt >= self.retries:
                    with self._cond:
                        self._state = "failed"
                        self._failed_chunk = self._complete
                        self._problem = None
                        self._message = (f"{e}; stopped with {self._complete} of {len(self.ends)} chunks "
                                         f"(raise the target to try again)")  # fmt: skip
                    self._notify()
                    attempt = 0
                    continue
                delay = self.backoff[min(attempt, len(self.backoff) - 1)]
                attempt += 1
                with self._cond:
                    self._retries += 1
                    self._state = "retrying"
                    self._problem = f"{e}; keeping {self._complete} chunks, retrying in {delay:g} s ({attempt}/{self.retries})"
                self._notify()
                if self._sleep(delay):
                    return
            self._notify()

    def retry(self) -> None:
        """Leave the failed state (the user asked again): the next loop iteration fetches from where it stopped."""
        with self._cond:
            if self._state == "failed":
                self._state = "fetching"
                self._failed_chunk = None
                self._crc_retry.clear()
                self._cond.notify_all()

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless closed first; True when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed, timeout=seconds)
            return self._closed

    # -- reading the state -------------------------------------------------------------------------------------
    def progress(self) -> Progress:
        with self._cond:
            return self._progress_locked()

    def _progress_locked(self) -> Progress:
        n_chunks = len(self.ends)
        complete_bytes = self.ends[self._complete - 1] if self._complete else self.index_end
        level = n_levels = None
        if self.manifest is not None and self.manifest.levels:
            lv = self.manifest.levels
            n_levels = len(lv)
            level = max((x["level"] for x in lv if x["chunks"] <= self._complete), default=0)
        try:
            want = self._want() if self.info is not None else 0
        except ValueError:
            want = 0
        state = self._state
        if n_chunks and self._complete == n_chunks and state in ("fetching", "idle", "retrying"):
            state = "done"
        elif state == "fetching" and self.info is not None and self._complete >= want:
            state = "idle"
        tp = self._tp.estimate
        if self._state == "fetching" and self._req_bytes and time.monotonic() - self._req_t0 > 0.2:
            live = self._req_bytes / (time.monotonic() - self._req_t0)
            tp = live if tp is None else tp
        return Progress(
            state=state, fetched=len(self._data), complete_bytes=complete_bytes,
            total=self.ends[-1] if self.ends else len(self._data), chunks=self._complete, n_chunks=n_chunks,
            gaussians=self.counts[self._complete - 1] if self._complete else 0,
            n_gaussians=self.info.n_gaussians if self.info is not None else 0, target_chunks=want, level=level,
            n_levels=n_levels, throughput=tp, wasted=self._wasted, requests=self._requests, retries=self._retries,
            elapsed=time.monotonic() - self._t0, message=self._problem or self._message, ranged=self._ranged,
        )  # fmt: skip

    def complete_prefix(self) -> tuple[bytes, int]:
        """(bytes of the complete prefix, complete chunk count): what decodes right now."""
        with self._cond:
            end = self.ends[self._complete - 1] if self._complete else self.index_end
            return bytes(self._data[:end]), self._complete

    def wait(self, chunks: int | None = None, timeout: float | None = None) -> bool:
        """Block until ``chunks`` complete chunks (None: the current target) are here or the loader stopped
        (failed, closed); True when they are here."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def ready():
            want = chunks if chunks is not None else self._want()
            return self._complete >= want or self._closed or self._state == "failed" or (
                self._complete == len(self.ends))

        with self._cond:
            while not ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.1 if left is None else min(left, 0.1))
            want = chunks if chunks is not None else self._want()
            return self._complete >= min(want, len(self.ends))

    def _set_state(self, s: str) -> None:
        with self._cond:
            self._state = s

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()
            p = self._progress_locked()
        if self.on_update is not None:
            try:
                self.on_update(p)
            except Exception:  # a display callback must never kill the loader
                import traceback

                traceback.print_exc()

    def _notify_locked(self) -> None:
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._state = "closed"
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


def load(url: str, target: Target | None = None, *, wait_s: float = 60.0, **kw) -> tuple[bytes, Progress]:
    """Fetch the prefix for ``target`` (default: the whole stream) and return (its bytes, the final progress);
    waits at most ``wait_s`` seconds; ``kw`` go to :class:`StreamLoader` (``timeout`` is per read)."""
    loader = StreamLoader(url, target, **kw).start()
    try:
        loader.wait(timeout=wait_s)
        data, _ = loader.complete_prefix()
        return data, loader.progress()
    finally:
        loader.close()


__all__ = ["PROBE", "Progress", "StreamLoader", "header_extent", "load", "manifest_url"]
