"""One browser tab's state (target, selection, test view, compare mode) and how it reads out, without viser.

Each connected tab owns a :class:`Session`; GUI callbacks change it and the render thread reads a consistent
:meth:`Session.snapshot`. ``version`` increases whenever the selection changes, so the render loop can tell a
frame rendered for an older selection (a stale frame) from a current one.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from .sources import MODE_LABELS, ViewSource

COMPARE_MODES = ("off", "side by side", "difference")
SHOW_MODES = ("render", "A/B split", "what the slider adds")  # what the view shows (RAVE-only views)
KB, MB = 1_000, 1_000_000  # SI units, as everywhere in rave_viewer
SLIDER_STEPS = 1000  # fine steps: about this many positions between the lowest and the highest target


# -- number formatting --------------------------------------------------------------------------------------
def fmt_bytes(n: float | None) -> str:
    """``1234567`` -> ``'1.235 MB'``; KB = 10^3 bytes, MB = 10^6 bytes."""
    if n is None:
        return "n/a"
    if n >= MB:
        return f"{n / MB:.3f} MB"
    if n >= KB:
        return f"{n / KB:.2f} KB"
    return f"{int(n)} B"


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


def rate_slug(n: int) -> str:
    """Compact rate for file names: ``'1.235MB'``, ``'12.34KB'``."""
    return fmt_bytes(n).replace(" ", "")


def nice_step(span: float, steps: int = SLIDER_STEPS) -> float:
    """A 1-2-5 x 10^e step giving about ``steps`` positions over ``span``."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / steps
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-12))


# -- slider -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SliderSpec:
    """How a target mode maps onto the slider: UI value = raw value / ``scale``, in ``unit``."""

    mode: str
    label: str
    unit: str
    scale: float
    lo: float  # UI units
    hi: float
    step: float
    precision: int

    def to_ui(self, raw: float) -> float:
        v = min(max(raw / self.scale, self.lo), self.hi)
        return int(round(v)) if self.precision == 0 else round(v, self.precision)

    def from_ui(self, value: float) -> float:
        return float(value) * self.scale


def slider_spec(source: ViewSource, mode: str) -> SliderSpec:
    """The slider for ``mode``: rates in KB or MB (whichever the highest rate needs), counts, or dB."""
    lo, hi = source.bounds(mode)
    if mode == "rate":
        scale, unit = (MB, "MB") if hi >= MB else (KB, "KB")
    elif mode == "count":
        scale, unit = 1.0, source.unit_label
    else:
        scale, unit = 1.0, "dB"
    lo_u, hi_u = lo / scale, hi / scale
    step = nice_step(hi_u - lo_u)
    if mode == "count":
        step = max(1, int(round(step)))
        lo_u, hi_u = int(lo_u), int(hi_u)
        precision = 0
    else:
        precision = max(0, -math.floor(math.log10(step) + 1e-9))
        lo_u = math.floor(lo_u / step + 1e-9) * step  # on the step grid, so keyboard steps land on round values
        hi_u = math.ceil(hi_u / step - 1e-9) * step
        lo_u, hi_u = round(lo_u, precision), round(hi_u, precision)
        if hi_u <= lo_u:
            hi_u = round(lo_u + step, precision)
    label = {"rate": f"Rate [{unit}]", "count": source.unit_label, "psnr": "PSNR [dB]"}[mode]
    return SliderSpec(mode, label, unit, scale, lo_u, hi_u, step, precision)


# -- state --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """The current operating point and its readouts."""

    mode: str | None
    target: float | None  # raw: bytes, Gaussians or dB
    k: int
    n: int
    nbytes: int | None
    level: int | None
    n_levels: int | None
    psnr: float | None  # mean over test views, interpolated in the RD table

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else 0.0


@dataclass(frozen=True)
class Snapshot:
    """What the render thread needs, read under the session lock."""

    k: int
    version: int
    view: int | None
    compare: str
    browser: bool
    show: str = "render"  # one of SHOW_MODES
    k_b: int = 0  # the B operating point (split screen, "what the slider adds")
    render_mode: str = "RGB"  # RGB | alpha | depth (frames.RENDER_MODES)


class Session:
    """Per-tab state. Thread-safe: GUI callbacks write, the render thread reads snapshots."""

    def __init__(self, source: ViewSource, start: tuple[str, float] | None = None):
        """``start``: (mode, raw target) of the first selection, e.g. ("rate", 2e6); default the source's knee."""
        self.source = source
        self.lock = threading.Lock()
        self.version = 0
        self.mode: str | None = source.modes[0] if source.modes else None
        if start is not None and self.mode is not None:
            self.mode = start[0]
            self.k = source.select_rate_cap(start[1]) if start[0] == "rate" else source.select(*start)
            self.target: float | None = float(start[1])
        else:
            self.k = source.default_k()
            self.target = source.value_of(self.mode, self.k) if self.mode else None
        self.view: int | None = None  # test view the camera sits on
        self.compare = "off"
        self.browser = False
        self.show = "render"
        self.render_mode = "RGB"
        self.k_b = source.min_count if self.mode else source.n  # B: the coarsest point until the user moves it
        self.target_b: float | None = source.value_of(self.mode, self.k_b) if self.mode else None
        self._view_psnr: dict[tuple[int, int], float] = {}

    # -- selection --------------------------------------------------------------------------------------
    def spec(self) -> SliderSpec | None:
        return slider_spec(self.source, self.mode) if self.mode else None

    def set_mode(self, mode: str) -> SliderSpec:
        """Target by ``mode`` from now on; the selection stays, the target becomes its value in the new unit."""
        if mode not in self.source.modes:
            mode = next(m for m in self.source.modes if MODE_LABELS[m] == mode)  # accept UI labels too
        with self.lock:
            self.mode = mode
            spec = slider_spec(self.source, mode)
            self.target = spec.from_ui(spec.to_ui(self.source.value_of(mode, self.k)))
            return spec

    def set_target(self, raw: float, cap: bool = False) -> Selection:
        """Select the prefix for target ``raw`` (bytes / Gaussians / dB) in the current mode.

        ``cap`` (rate mode): the largest prefix whose exact size is at most ``raw`` (a typed budget), instead of
        the slider's nearest point (Eq. 3)."""
        if self.mode is None:
            raise ValueError("this source has no bitrate controls")
        if cap and self.mode == "rate":
            k = self.source.select_rate_cap(raw) if raw >= self.source.bounds("rate")[0] else self.source.min_count
        else:
            k = self.source.select(self.mode, raw)
        with self.lock:
            self.target = float(raw)
            if k != self.k:
                self.k = k
                self.version += 1
        return self.selection()

    def selection(self) -> Selection:
        with self.lock:
            k, mode, target = self.k, self.mode, self.target
        src = self.source
        return Selection(
            mode=mode, target=target, k=k, n=src.n, nbytes=src.bytes_of(k), level=src.level_of(k),
            n_levels=src.n_levels, psnr=src.psnr_at(k),
        )  # fmt: skip

    # -- view -------------------------------------------------------------------------------------------
    def set_view(self, view: int | None) -> bool:
        """Record the test view the camera sits on; True if it changed."""
        with self.lock:
            changed = view != self.view
            self.view = view
            return changed

    def set_compare(self, how: str) -> None:
        if how not in COMPARE_MODES:
            raise ValueError(f"compare mode must be one of {COMPARE_MODES}")
        with self.lock:
            self.compare = how

    def set_show(self, show: str) -> None:
        if show not in SHOW_MODES:
            raise ValueError(f"view mode must be one of {SHOW_MODES}")
        with self.lock:
            if show != self.show:
                self.show = show
                self.version += 1

    def set_render_mode(self, mode: str) -> None:
        with self.lock:
            if mode != self.render_mode:
                self.render_mode = mode
                self.version += 1

    def set_target_b(self, raw: float) -> Selection:
        """Select the B operating point for target ``raw`` in the current mode (split screen, added view)."""
        if self.mode is None:
            raise ValueError("this source has no bitrate controls")
        k = self.source.select(self.mode, raw)
        with self.lock:
            self.target_b = float(raw)
            if k != self.k_b:
                self.k_b = k
                self.version += 1
        return self.selection_b()

    def selection_b(self) -> Selection:
        with self.lock:
            k, mode, target = self.k_b, self.mode, self.target_b
        src = self.source
        return Selection(
            mode=mode, target=target, k=k, n=src.n, nbytes=src.bytes_of(k), level=src.level_of(k),
            n_levels=src.n_levels, psnr=src.psnr_at(k),
        )  # fmt: skip

    def step(self, direction: int, steps: int = 1) -> bool:
        """Move the target ``steps`` rate steps (1/50 of the slider's range each) up (+1) or down (-1)."""
        spec = self.spec()
        if spec is None:
            return False
        cur = spec.to_ui(self.target if self.target is not None else spec.from_ui(spec.lo))
        span = (spec.hi - spec.lo) / 50.0
        v = min(max(cur + direction * steps * span, spec.lo), spec.hi)
        before = self.version
        self.set_target(spec.from_ui(spec.to_ui(spec.from_ui(v))))
        return self.version != before

    def set_browser(self, on: bool) -> None:
        with self.lock:
            self.browser = bool(on)

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(self.k, self.version, self.view, self.compare, self.browser, self.show, self.k_b,
                            self.render_mode)

    def is_current(self, version: int) -> bool:
        with self.lock:
            return version == self.version

    def record_view_psnr(self, k: int, view: int, value: float) -> None:
        with self.lock:
            self._view_psnr[(k, view)] = float(value)

    def view_psnr(self) -> float | None:
        """Exact PSNR of the current selection on the test view the camera sits on (once rendered)."""
        with self.lock:
            return None if self.view is None else self._view_psnr.get((self.k, self.view))


# -- readouts -----------------------------------------------------------------------------------------------
def readout_rows(sel: Selection, view_psnr: float | None, view_name: str | None,
                 targets: str = "photos", unit: str = "Gaussians") -> list[tuple[str, str]]:
    """(label, value) rows of the live readout table; ``targets="self"`` (``meta["targets"]`` of a checkpoint
    built without a dataset) labels the PSNR rows "vs the full model": its test views are renders, not photos.
    ``unit``: what the source's units are called (``ViewSource.unit_label``: "Gaussians", "anchors")."""
    vs = " vs the full model" if targets == "self" else ""
    rows = []
    if sel.mode is not None and sel.target is not None:
        if sel.mode == "rate":
            rows.append(("Target rate", fmt_bytes(sel.target)))
        elif sel.mode == "count":
            rows.append(("Target count", f"{fmt_int(round(sel.target))} {unit}"))
        else:
            rows.append((f"Target PSNR{vs}", f"{sel.target:.2f} dB"))
    if sel.nbytes is not None:
        rows.append(("Encoded size", f"{fmt_bytes(sel.nbytes)} ({fmt_int(sel.nbytes)} bytes)"))
    rows.append((unit.capitalize(), f"{fmt_int(sel.k)} of {fmt_int(sel.n)} ({100 * sel.share:.1f} %)"))
    if sel.level is not None:
        rows.append(("Level", f"{sel.level} of {sel.n_levels}"))
    if sel.psnr is not None:
        rows.append((f"PSNR{vs}, test mean", f"{sel.psnr:.2f} dB"))
    if view_name is not None:
        rows.append((f"PSNR{vs}, {view_name}", "…" if view_psnr is None else f"{view_psnr:.2f} dB"))
    return rows


NBSP = "\u00a0"


def unbreakable(value: str) -> str:
    """``value`` with line breaks allowed only before a parenthesis (no-break spaces elsewhere), so a number
    never wraps away from its unit or the rest of its group ("152.90 KB" / "(152,901 bytes)")."""
    return " (".join(p.replace(" ", NBSP) for p in value.split(" ("))


def markdown_table(rows: list[tuple[str, str]]) -> str:
    body = "\n".join(f"| {a} | {unbreakable(b)} |" for a, b in rows)
    return f"| | |\n|:--|--:|\n{body}"


__all__ = [
    "COMPARE_MODES", "KB", "MB", "SHOW_MODES", "Selection", "Session", "SliderSpec", "Snapshot", "fmt_bytes", "fmt_int",
    "markdown_table", "nice_step", "rate_slug", "readout_rows", "slider_spec",
]  # fmt: skip
