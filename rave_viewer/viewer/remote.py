"""A .rave stream on a web host as a ViewSource that grows while its chunks arrive by HTTP range requests.

``open_remote(url, target)`` fetches the manifest (optional) and the header + chunk index, starts the range
loader (:class:`~rave_viewer.delivery.loader.StreamLoader`) and waits for the first chunk, so the viewer opens
on a picture. From then on:

* the selectable points are every chunk boundary of the *whole* stream (``stops``; ``stop_bytes`` are the bytes
  a range client holds there: header, the full index and the chunks);
* ``gaussians`` is the complete prefix decoded so far, replaced (never mutated) after chunks arrive, at most
  every :data:`DECODE_EVERY_S` seconds (longer when decoding takes longer), then the listeners are called;
* selecting a point (slider, typed rate, ``--rate/--count/--psnr``) makes it the loader's target: raising it
  fetches only the missing chunks, lowering it fetches nothing; ``--auto SECONDS`` lets the loader pick the
  target from the measured throughput until the user moves the slider;
* with the manifest of ``rave publish``: levels, the RD table (PSNR targets, the RD plot) and the start point.

:func:`attach` connects a running ViewerApp: new prefixes reach its renderer, and every tab gets a "Download"
folder: a progress bar (bytes of the stream held) and a line with bytes, Gaussians, level, throughput, state and
the last problem.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RaveError
from .sources import START_MAX_GAUSSIANS, ViewSource

DECODE_EVERY_S = 0.5
REMOTE_NOTE = ("Remote stream, fetched by HTTP range requests: moving the slider up fetches only the missing chunks, "
               "down fetches nothing.")  # fmt: skip


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.3f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{int(n)} B"


def progress_line(p) -> str:
    """One line for the panel and the terminal: bytes, Gaussians, level, throughput, state, last problem."""
    parts = [f"{_fmt_bytes(p.complete_bytes)} of {_fmt_bytes(p.total)}",
             f"{p.gaussians:,} of {p.n_gaussians:,} Gaussians"]  # fmt: skip
    if p.n_levels:
        parts.append(f"level {p.level} of {p.n_levels}")
    if p.throughput:
        parts.append(f"{8 * p.throughput / 1e6:.2f} Mbit/s")
    parts.append(p.state)
    line = " · ".join(parts)
    return f"{line} — {p.message}" if p.message else line


class RemoteSource(ViewSource):
    """ViewSource over a :class:`StreamLoader` (see the module docstring)."""

    def __init__(self, loader, decoded, note: str):
        info = loader.info
        super().__init__(
            path=Path(urlsplit(loader.url).path or "/stream.rave"), kind="rave", gaussians=decoded.gaussians,
            stops=list(loader.counts), stop_bytes=list(loader.ends), stream_info=info, note=note,
        )  # fmt: skip
        self.url = loader.url
        self.loader = loader
        self.manifest = loader.manifest
        self.listeners: list = []
        self._n_total = info.n_gaussians
        self._auto = loader.target.mode == "auto"
        self._quiet = threading.local()
        self._shown_chunks = decoded.info.n_complete_chunks
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._last_message: str | None = None
        self._thread = threading.Thread(target=self._decode_loop, name="rave-remote-decode", daemon=True)
        self._thread.start()
        loader.on_update = lambda p: self._dirty.set()

    # -- what the stream offers (whole stream, not only what has arrived) --------------------------------------
    @property
    def n(self) -> int:
        return self._n_total

    @property
    def n_loaded(self) -> int:
        return len(self.gaussians)

    @property
    def rd(self) -> dict | None:
        return self.manifest.rd if self.manifest is not None else None

    @property
    def targets(self) -> str:
        return self.manifest.targets if self.manifest is not None else "photos"

    @property
    def modes(self) -> tuple[str, ...]:
        return ("rate", "count", "psnr") if self.rd is not None and "psnr" in self.rd else ("rate", "count")

    @property
    def n_levels(self) -> int | None:
        return len(self.manifest.levels) if self.manifest is not None and self.manifest.levels else None

    def level_of(self, k: int) -> int | None:
        if not self.n_levels:
            return None
        return max((lv["level"] for lv in self.manifest.levels if lv["count"] <= k), default=0)

    def select(self, mode: str, value: float) -> int:
        """The chunk boundary for the target, which also becomes what the loader fetches up to."""
        self._check_mode(mode)
        if mode == "psnr":
            from ..delivery.adapt import Target

            k = self.stops[self.loader.chunks_for(Target("psnr", float(value))) - 1]
        else:
            k = super().select(mode, value)
        if not getattr(self._quiet, "on", False):
            self.want(k)
        return k

    def want(self, k: int) -> None:
        """Fetch up to the chunk boundary ``k`` (a user's choice: auto mode ends here)."""
        from ..delivery.adapt import Target

        self._auto = False
        if self.loader.progress().state == "failed":
            self.loader.retry()
        self.loader.set_target(Target("count", int(k)))

    def default_k(self) -> int:
        """Where a new tab starts: the loader's current target (auto: what it plans to fetch now)."""
        p = self.loader.progress()
        j = max(p.target_chunks, 1)
        return int(self.stops[min(j, len(self.stops)) - 1])

    def _cut_stream(self, k: int) -> bytes:
        from ..codec import cut_stream

        data, chunks = self.loader.complete_prefix()
        if k not in self.stops:
            raise RaveError(f"{k} Gaussians is not a chunk boundary of this stream", self.url)
        if self.stops.index(k) + 1 > chunks:
            raise RaveError(f"only {self.n_loaded:,} Gaussians have arrived so far; export a lower rate or wait",
                            self.url)  # fmt: skip
        return cut_stream(data, k, name=self.url)

    # -- growth --------------------------------------------------------------------------------------------
    def _decode_loop(self) -> None:
        interval, last = DECODE_EVERY_S, 0.0
        while not self._stop.is_set():
            # after news from the loader, and at least every second (a tab that connected since gets its line)
            if not self._dirty.wait(0.25) and time.monotonic() - last < 1.0:
                continue
            last = time.monotonic()
            self._dirty.clear()
            p = self.loader.progress()
            if p.message and p.message != self._last_message:
                print(f"rave-view: {self.url}: {p.message}", file=sys.stderr, flush=True)
            self._last_message = p.message
            if p.chunks > self._shown_chunks:
                t0 = time.perf_counter()
                try:
                    self._grow()
                except RaveError as e:
                    print(f"rave-view: {e}", file=sys.stderr, flush=True)
                interval = max(DECODE_EVERY_S, 2 * (time.perf_counter() - t0))
            for fn in list(self.listeners):
                try:
                    fn(self, p)
                except Exception:  # a display hook must never stop the decoding
                    import traceback

                    traceback.print_exc()
            if self._stop.wait(interval):
                return

    def _grow(self) -> None:
        from ..codec import decode

        data, chunks = self.loader.complete_prefix()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a prefix is "truncated" by design
            dec = decode(data, name=self.url, max_gaussians=self.loader.max_gaussians)
        self.gaussians = dec.gaussians.detach().float()
        self._shown_chunks = chunks

    def follow_auto(self, session) -> None:
        """Auto mode: move a tab's selection to what has arrived (without ending auto mode)."""
        if not self._auto or session.mode is None:
            return
        self._quiet.on = True
        try:
            session.set_target(self.value_of(session.mode, self.n_loaded) if session.mode != "psnr" else
                               self.value_of("count", self.n_loaded))  # fmt: skip
        finally:
            self._quiet.on = False

    def value_of(self, mode: str, k: int) -> float:
        if mode == "psnr" and self.rd is not None:
            return float(self.psnr_at(k))
        return super().value_of(mode, k)

    def close(self) -> None:
        self._stop.set()
        self.loader.close()


def start_target_of(manifest, n: int):
    """The default Target: the manifest's start point (the RD knee), else at most START_MAX_GAUSSIANS."""
    from ..delivery.adapt import Target

    if manifest is not None and manifest.start_count:
        return Target("count", manifest.start_count)
    return Target("count", min(n, START_MAX_GAUSSIANS)) if n > START_MAX_GAUSSIANS else Target("full")


def open_remote(url: str, target=None, *, max_gaussians: int | None = None, timeout: float = 10.0,
                first_chunk_s: float = 120.0, **loader_kw) -> RemoteSource:  # fmt: skip
    """Open a remote stream (see the module docstring); RaveError naming the URL when it cannot be read.
    ``loader_kw`` go to the StreamLoader (retries, backoff, use_manifest)."""
    from ..codec import decode
    from ..delivery.loader import StreamLoader

    loader = StreamLoader(url, target, timeout=timeout, max_gaussians=max_gaussians, **loader_kw)
    loader.open()
    if target is None:
        loader.set_target(start_target_of(loader.manifest, loader.info.n_gaussians))
    if target is not None and target.mode == "psnr" and (loader.manifest is None or loader.manifest.rd is None):
        loader.close()
        raise RaveError("--psnr needs the stream's RD table: publish it with `rave publish` (a manifest next to "
                        "the stream)", url)  # fmt: skip
    loader.start()
    _wait_first(loader, first_chunk_s)
    p = loader.progress()
    if p.chunks == 0:
        loader.close()
        raise RaveError(f"no complete chunk arrived ({p.message or 'timed out'})", url)
    data, _ = loader.complete_prefix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dec = decode(data, name=url, max_gaussians=max_gaussians)
    note = REMOTE_NOTE
    if loader.manifest is None:
        note += " No manifest next to it (publish with `rave publish` for levels, PSNR and the RD curve)."
    if loader.manifest_note:
        note += f" Note: {loader.manifest_note}."
    return RemoteSource(loader, dec, note)


def _wait_first(loader, seconds: float) -> None:
    """Wait for the first chunk with a terminal progress bar (bytes)."""
    from tqdm.auto import tqdm

    end = loader.ends[0] if loader.ends else 0
    t0 = time.monotonic()
    with tqdm(total=end, unit="B", unit_scale=True, desc="first chunk", leave=False) as bar:
        while time.monotonic() - t0 < seconds:
            p = loader.progress()
            bar.n = min(p.fetched, end)
            bar.refresh()
            if p.chunks >= 1 or p.state == "failed":
                return
            time.sleep(0.05)


def attach(app, source: RemoteSource) -> None:
    """Feed a running ViewerApp the prefixes as they arrive and show a "Download" line in every tab."""
    lines: dict[int, object] = {}
    lock = threading.Lock()

    def on_grow(src: RemoteSource, p) -> None:
        frames = getattr(app, "frames", None)
        if frames is not None and getattr(frames, "gaussians", None) is not None and len(frames.gaussians) != src.n_loaded:
            frames.gaussians = src.gaussians.to(frames.gaussians.means.device)
            if hasattr(app, "_splats"):
                app._splats = None  # browser-rendering arrays are rebuilt from the new prefix
            grew = True
        else:
            grew = False
        text = f"**Download:** {progress_line(p)}"
        pct = 100.0 * p.complete_bytes / p.total if p.total else 0.0
        busy = p.state in ("fetching", "retrying")
        for cid, cs in list(getattr(app, "clients", {}).items()):
            with lock:
                handles = lines.get(cid)
                if handles is None:
                    try:
                        with cs.client.gui.add_folder("Download"):
                            handles = (cs.client.gui.add_progress_bar(pct, animated=busy),
                                       cs.client.gui.add_markdown(text))  # fmt: skip
                    except Exception:
                        continue
                    lines[cid] = handles
            bar, md = handles
            if md.content != text:
                md.content = text
            if abs(bar.value - pct) > 1e-6 or bar.animated != busy:
                bar.value, bar.animated = pct, busy
            session = getattr(cs, "session", None)
            if session is not None:
                src.follow_auto(session)
            if grew:
                panel = getattr(cs, "panel", None)
                if panel is not None:
                    panel.refresh()
                _rebuild_browser_splats(cs)
                cs.request_render()

    source.listeners.append(on_grow)
    source._dirty.set()


def _rebuild_browser_splats(cs) -> None:
    """A tab rendering in the browser holds splat arrays of the old prefix: drop them on its splat worker and
    push the grown prefix (the app's own browser job; nothing happens for server rendering)."""
    worker = getattr(cs, "splat_worker", None)
    if getattr(cs, "splats", None) is None or worker is None:
        return

    def job():
        cs._remove_splats()
        cs._browser_job()

    worker.submit(job)


def is_remote(text) -> bool:
    from ..delivery.http import is_url

    return is_url(str(text)) if isinstance(text, str) else False


__all__ = ["RemoteSource", "attach", "open_remote", "progress_line", "is_remote", "remote_target", "start_target_of"]


def remote_target(args):
    """The loader's start Target from rave-view's --rate/--count/--psnr/--auto (None: the stream's default)."""
    from ..delivery.adapt import Target
    from ..rave.selection import parse_rate

    if getattr(args, "auto", None) is not None:
        return Target("auto", float(args.auto))
    if args.rate is not None:
        return Target("rate", float(parse_rate(args.rate)))
    if args.count is not None:
        return Target("count", float(args.count))
    if args.psnr is not None:
        return Target("psnr", float(args.psnr))
    return None
