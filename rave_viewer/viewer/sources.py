"""Open what the viewer shows (.ckpt, .rave or .ply) as one ViewSource that says what the file can offer.

A ViewSource holds the Gaussians in *render order*: the operating point with ``k`` Gaussians is
``gaussians.prefix(k)``. What else it has depends on the file:

* ``.ckpt`` (``rave build``): any k between the coarsest level and N, selected by rate (Eq. 3), Gaussian count
  or PSNR (dense RD table); exact encoded sizes; levels; test views with ground truth.
* ``.rave`` stream: the prefixes that end on a chunk boundary (what a client that stopped downloading after a
  chunk would hold), with their exact byte sizes read from the stream's index; no test views, no PSNR.
* ``.ply``: one model, no ranking and no rate information, so no bitrate controls (``note`` says why).

A checkpoint of other units than Gaussians opens as a subclass chosen by the checkpoint's ``unit_type``
(:data:`CKPT_SOURCES`): Scaffold-GS anchors are :class:`~rave_viewer.viewer.anchor_source.AnchorViewSource`,
whose Gaussians depend on the camera. Code that draws asks the source through the per-camera hook
:meth:`ViewSource.gaussians_for` (and, for "what the slider adds", the subclass's ``added_for``) when
:attr:`ViewSource.view_dependent` is set;
``k`` then counts the source's units (:attr:`ViewSource.unit_label`), not Gaussians.

Rates are bytes; the UI shows them in KB (10^3 bytes) or MB (10^6 bytes).
"""

from __future__ import annotations

import bisect
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..codec.container import DEFAULT_MAX_GAUSSIANS
from ..errors import RaveError
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from .loading import PROGRESS_MIN_BYTES, LoadProgress

KINDS = ("ckpt", "rave", "ply")
LOAD_STEPS = {  # what the progress bar names while a file of each kind opens (see .loading)
    "ckpt": ["loading the checkpoint", "decoding (quantize, dequantize)"],
    "rave": ["decoding the stream"],
    "ply": ["parsing the .ply"],
}
MODES = ("rate", "count", "psnr")  # what the slider targets
MODE_LABELS = {"rate": "rate", "count": "Gaussian count", "psnr": "PSNR"}
START_DB_BELOW_BEST = 0.5  # dB: a new tab starts no further below the best PSNR point than this
START_MAX_GAUSSIANS = 1_000_000  # without an RD table, a new tab starts at most this large (a fast first frame)

PLY_NOTE = (
    "This .ply is a plain 3DGS model: it has no RAVE ranking, levels or rate table, so the bitrate controls "
    "are off. Build a .ckpt from it with `rave build` (or open a .rave stream) to get them."
)
RAVE_NOTE = (
    "A .rave stream holds no test views or RD table: the slider moves over the prefixes that end on a chunk "
    "boundary, and PSNR is not available. Open the scene's .ckpt for all controls."
)


@dataclass
class ViewSource:
    """Everything the viewer can show from one file (see the module docstring).

    Per-camera hook: :meth:`gaussians_for` gives the Gaussians the selection with k units shows to one camera.
    Here that is ``gaussians.prefix(k)`` for every camera; a subclass whose Gaussians depend on the camera sets
    :attr:`view_dependent` (renderers then decode per frame instead of caching a projection of ``gaussians``),
    supplies ``added_for(k_lo, k_hi, viewmat, K, width, height)`` -> (Gaussians of ``k_hi`` units, bool mask of
    those from units ``k_lo``..``k_hi``) for "what the slider adds", and says in :attr:`browser_note` why the
    browser cannot draw it.
    """

    #: True when the Gaussians depend on the camera: draw through gaussians_for(), not gaussians.prefix(k)
    view_dependent: ClassVar[bool] = False
    #: what k counts, as the panel and the frame labels name it ("Gaussians", "anchors")
    unit_label: ClassVar[str] = "Gaussians"
    #: why browser rendering (client-side splats of ``gaussians``) is not available; empty: it is
    browser_note: ClassVar[str] = ""

    path: Path
    kind: str  # "ckpt" | "rave" | "ply"
    gaussians: Gaussians  # render order: selection k = gaussians.prefix(k)
    test_cameras: Cameras | None = None  # with ground-truth images, or None
    checkpoint: Any = None  # RaveCheckpoint for .ckpt
    stops: list[int] | None = None  # .rave: selectable prefix lengths (chunk boundaries), increasing
    stop_bytes: list[int] | None = None  # .rave: exact file size of each stop
    stream_info: Any = None  # .rave: codec StreamInfo (cfg, bounds, codec, chunk size)
    note: str = ""  # shown in the panel: why some controls are missing
    _cache: dict = field(default_factory=dict, repr=False)

    # -- what is available ---------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.gaussians)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def targets(self) -> str:
        """What the test views' images are: "photos", or "self" (renders of the full model, a dataset-free build)."""
        meta = getattr(self.checkpoint, "meta", None) or {}
        return "self" if meta.get("targets") == "self" else "photos"

    @property
    def mode_labels(self) -> dict[str, str]:
        """UI label of each slider target (:data:`MODE_LABELS` with the count named after :attr:`unit_label`)."""
        unit = self.unit_label[:-1] if self.unit_label.endswith("s") else self.unit_label
        return {**MODE_LABELS, "count": f"{unit} count"}

    def mode_of(self, label: str) -> str:
        """The mode a UI label (or a mode name) stands for."""
        if label in self.modes:
            return label
        labels = self.mode_labels
        for m in self.modes:
            if label in (labels[m], MODE_LABELS[m]):
                return m
        raise RaveError(f"no slider target '{label}' (available: {', '.join(self.modes) or 'none'})", self.path)

    @property
    def has_rate_control(self) -> bool:
        return self.kind in ("ckpt", "rave")

    @property
    def rd(self) -> dict | None:
        """The dense RD table (keys count, bytes, psnr, ssim; increasing count) of a checkpoint, else None."""
        if self.checkpoint is None:
            return None
        rd = self.checkpoint.rd
        return rd if rd and len(rd.get("count", [])) >= 2 else None

    @property
    def modes(self) -> tuple[str, ...]:
        """Slider targets this file supports, the first being the default."""
        if self.kind == "ckpt":
            return MODES if self.rd is not None and "psnr" in self.rd else ("rate", "count")
        if self.kind == "rave":
            return ("rate", "count")
        return ()

    @property
    def min_count(self) -> int:
        """Smallest selectable prefix (the coarsest level, or the first chunk)."""
        if self.kind == "ckpt":
            return int(self.checkpoint.level_sizes[0])
        if self.kind == "rave":
            return int(self.stops[0])
        return self.n

    @property
    def n_levels(self) -> int | None:
        return len(self.checkpoint.level_sizes) if self.kind == "ckpt" else None

    # -- selection ----------------------------------------------------------------------------------------
    def bounds(self, mode: str) -> tuple[float, float]:
        """(lowest, highest) target value for ``mode`` in its own unit (bytes, Gaussians, dB)."""
        self._check_mode(mode)
        if mode == "rate":
            if self.kind == "ckpt":
                r = self.checkpoint.level_rates
                return float(r[0]), float(r[-1])
            return float(self.stop_bytes[0]), float(self.stop_bytes[-1])
        if mode == "count":
            return float(self.min_count), float(self.n)
        counts, best = self._psnr_reachable()
        return float(np.interp(self.min_count, counts, best)), float(best[-1])

    def _psnr_reachable(self) -> tuple[np.ndarray, np.ndarray]:
        """RD counts and the best PSNR reachable with at most that many Gaussians (running maximum)."""
        rd = self.rd
        return np.asarray(rd["count"], float), np.maximum.accumulate(np.asarray(rd["psnr"], float))

    def select(self, mode: str, value: float) -> int:
        """Prefix length k for a target ``value`` in ``mode`` (clamped to what the file holds)."""
        self._check_mode(mode)
        if not np.isfinite(value):
            raise RaveError(f"target {value!r} is not a number")
        if self.kind == "ckpt":
            lo, hi = self.bounds(mode)
            value = min(max(float(value), lo), hi)  # select() refuses targets outside the range
            if mode == "rate":
                k = self.checkpoint.select(rate=value)
            elif mode == "count":
                k = self.checkpoint.select(count=int(round(value)))
            else:
                k = self.checkpoint.select(psnr=value)
            return min(max(int(k), self.min_count), self.n)
        keys = self.stop_bytes if mode == "rate" else self.stops
        i = bisect.bisect_right(keys, value) - 1  # the largest stop not above the target
        return int(self.stops[max(i, 0)])

    def default_k(self) -> int:
        """Where a new tab starts: the knee of the RD curve (before its best point), else the full model.

        The full model is the slowest frame and, when fine-tuning or quantization hurt the top levels, not even
        the best picture. With an RD table the start is the knee (Kneedle: the point farthest above the chord
        of the curve, in normalised log-bytes and PSNR) among the points up to the best PSNR, moved up to the
        first point within :data:`START_DB_BELOW_BEST` of the best (on demo_objects: 9,926 of 33,097 Gaussians,
        153 of 455 KB, 35.07 vs 35.54 dB); without a table, the largest prefix of at most
        :data:`START_MAX_GAUSSIANS`.
        """
        if not self.has_rate_control:
            return self.n
        pts = self.rd
        if pts is not None and "psnr" in pts:
            counts = np.asarray(pts["count"], float)
            keep = counts >= self.min_count
            counts = counts[keep]
            rates = np.log(np.maximum(np.asarray(pts["bytes"], float)[keep], 1.0))
            psnr = np.asarray(pts["psnr"], float)[keep]
            if len(counts) >= 3 and np.isfinite(psnr).all() and np.isfinite(rates).all():
                best = int(np.argmax(psnr))  # the first best point: never start beyond it
                x, y = rates[: best + 1], psnr[: best + 1]
                i = best
                if len(x) >= 3 and x[-1] > x[0] and y[-1] > y[0]:
                    xn, yn = (x - x[0]) / (x[-1] - x[0]), (y - y[0]) / (y[-1] - y[0])
                    knee = int(np.argmax(yn - xn))
                    close = int(np.argmax(y >= y[-1] - START_DB_BELOW_BEST))  # first point that close to the best
                    i = max(knee, close)
                return int(min(max(counts[i], self.min_count), self.n))
        if self.n <= START_MAX_GAUSSIANS:
            return self.n
        return max(self.select("count", START_MAX_GAUSSIANS), self.min_count)

    def select_rate_cap(self, rate: float) -> int:
        """The largest selectable prefix whose exact encoded size is at most ``rate`` bytes (a typed budget)."""
        self._check_mode("rate")
        if self.kind == "ckpt":
            lo, hi = self.bounds("rate")
            if rate >= hi:
                return self.n
            return min(max(int(self.checkpoint.select(rate=max(float(rate), lo), cap=True)), self.min_count), self.n)
        return self.select("rate", rate)  # .rave: the largest chunk boundary not above the rate

    def value_of(self, mode: str, k: int) -> float:
        """The target value (in ``mode``'s unit) that the selection with k Gaussians has."""
        self._check_mode(mode)
        if mode == "rate":
            return float(self.bytes_of(k))
        if mode == "count":
            return float(k)
        return float(self.psnr_at(k))

    # -- readouts -----------------------------------------------------------------------------------------
    def bytes_of(self, k: int) -> int | None:
        """Exact encoded size in bytes of the selection with k Gaussians (None for a .ply).

        Cached per k (a checkpoint compresses the partial chunk for it: ~40 ms of LZMA at 4096 per chunk), so a
        slider event that reads the size for its readouts, plot and render label compresses it once."""
        if self.kind == "ckpt":
            sizes = self._cache.setdefault("bytes_of", {})
            k = int(k)
            if k not in sizes:
                if len(sizes) > 4096:
                    sizes.clear()
                sizes[k] = int(self.checkpoint.prefix_bytes(k))
            return sizes[k]
        if self.kind == "rave":
            i = bisect.bisect_left(self.stops, k)
            if i < len(self.stops) and self.stops[i] == k:
                return int(self.stop_bytes[i])
            return None
        return None

    def level_of(self, k: int) -> int | None:
        """1-based level l with |G_l| <= k < |G_l+1| (checkpoints only)."""
        return int(self.checkpoint.level_of(int(k))) if self.kind == "ckpt" else None

    def psnr_at(self, k: int) -> float | None:
        """Mean test-view PSNR at k Gaussians, interpolated in the dense RD table (None without one)."""
        rd = self.rd
        if rd is None or "psnr" not in rd:
            return None
        return float(np.interp(float(k), np.asarray(rd["count"], float), np.asarray(rd["psnr"], float)))

    def rd_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(bytes, psnr) of the RD table restricted to the selectable range, for plots."""
        rd = self.rd
        if rd is None or "psnr" not in rd:
            return None
        counts = np.asarray(rd["count"], float)
        keep = counts >= self.min_count
        if keep.sum() < 2:
            keep[:] = True
        return np.asarray(rd["bytes"], float)[keep], np.asarray(rd["psnr"], float)[keep]

    # -- what a camera sees ---------------------------------------------------------------------------------
    def gaussians_for(self, k: int, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> Gaussians:
        """The Gaussians the selection with ``k`` units shows to one camera (viewmat [4, 4] world-to-camera,
        K [3, 3], image size), on the CPU. Here: ``gaussians.prefix(k)`` whatever the camera."""
        return self.gaussians.prefix(int(k))

    # -- exports ------------------------------------------------------------------------------------------
    def encode_prefix(self, k: int) -> bytes:
        """The .rave stream of the selection with k Gaussians (exactly ``bytes_of(k)`` bytes)."""
        if self.kind == "ckpt":
            return self.checkpoint.encoder().encode(int(k))
        if self.kind == "rave":
            return self._cut_stream(int(k))
        raise RaveError("a .ply has no .rave encoding settings; build a .ckpt first", self.path)

    def _cut_stream(self, k: int) -> bytes:
        """The stream's own first chunks up to ``k`` Gaussians (a chunk boundary), re-headered."""
        from ..codec import cut_stream

        if k not in self.stops:
            raise RaveError(f"{k} Gaussians is not a chunk boundary of this stream", self.path)
        return cut_stream(self._cache["data"], k, name=str(self.path))

    def ply_bytes(self, k: int) -> bytes:
        """A standard INRIA .ply of the selection with k Gaussians."""
        from ..scene.ply import write_ply

        with tempfile.TemporaryDirectory(prefix="rave-view-") as tmp:
            p = Path(tmp) / "selection.ply"
            write_ply(self.gaussians.prefix(int(k)), p)
            return p.read_bytes()

    def _check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            have = ", ".join(self.modes) or "none"
            raise RaveError(f"cannot target by '{mode}' for a .{self.kind} (available: {have})", self.path)


# -- opening files ------------------------------------------------------------------------------------------
def _sniff(path: Path) -> str:
    """Kind of file by suffix, else by content (magic bytes)."""
    suf = path.suffix.lower()
    if suf in (".ckpt", ".rave", ".ply"):
        return suf[1:]
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"RAVE"):
        return "rave"
    if head.startswith(b"ply"):
        return "ply"
    if len(head) >= 8 and int.from_bytes(head[:8], "little") < (1 << 31) and head[8:9] == b"{":
        return "ckpt"  # safetensors: u64 header length, then a JSON header
    raise RaveError("not a .ckpt, .rave or .ply file (unknown format)", path)


def _gaussian_ckpt_source(path: Path, ckpt, cams: Cameras | None) -> ViewSource:
    # what a receiver decodes (quantized, dequantized): the same Gaussians the RD table was measured on
    return ViewSource(path=path, kind="ckpt", gaussians=ckpt.decoded_gaussians(), test_cameras=cams, checkpoint=ckpt)


def _anchor_ckpt_source(path: Path, ckpt, cams: Cameras | None) -> ViewSource:
    from .anchor_source import AnchorViewSource

    return AnchorViewSource.from_checkpoint(path, ckpt, cams)


#: how a loaded checkpoint becomes a ViewSource, by its ``unit_type`` (the classes of rave.checkpoint.load_checkpoint)
CKPT_SOURCES = {"gaussians": _gaussian_ckpt_source, "anchors": _anchor_ckpt_source}


def _open_ckpt(path: Path, lp: LoadProgress | None = None) -> ViewSource:
    from ..rave.checkpoint import load_checkpoint

    lp = lp or LoadProgress(path, [], enabled=False)
    lp.step("loading the checkpoint")
    ckpt = load_checkpoint(path)
    lp.step("decoding (quantize, dequantize)")
    cams = ckpt.test_cameras if ckpt.test_cameras is not None and len(ckpt.test_cameras) else None
    if cams is not None and cams.images is None:
        cams = None
    make = CKPT_SOURCES.get(getattr(ckpt, "unit_type", "gaussians"))
    if make is None:
        raise RaveError(f"the viewer cannot show a checkpoint of {ckpt.unit_label} (unit type "
                        f"'{ckpt.unit_type}')", path)
    return make(path, ckpt, cams)


def _with_warnings(note: str, caught: list) -> str:
    """The panel note followed by each warning caught while loading, each as one sentence."""
    return note + "".join(f" Warning: {' '.join(str(w.message).split())}." for w in caught)


def chunk_stops(info, n_decoded: int) -> tuple[list[int], list[int]]:
    """(units at each chunk boundary a decoded stream reaches, exact size of the stream cut there) from its
    ``info`` (container or anchor StreamInfo: ``chunks``, ``prefix_size``) and the units decoded."""
    stops, stop_bytes, count = [], [], 0
    for j, c in enumerate(info.chunks, start=1):
        if count + c.count > n_decoded:
            break
        count += c.count
        stops.append(count)
        stop_bytes.append(info.prefix_size(j))
    return stops, stop_bytes


def _open_rave(path: Path, max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS,
               lp: LoadProgress | None = None) -> ViewSource:  # fmt: skip
    """A .rave stream as a source, by the unit type in its first bytes (:data:`STREAM_SOURCES`)."""
    from ..codec.unit_type import unit_type_of

    if lp is not None:
        lp.step("decoding the stream")
    with open(path, "rb") as f:
        unit = unit_type_of(f.read(6)) or "gaussians"  # (not a known unit: the Gaussian reader says what is wrong)
    return STREAM_SOURCES[unit](path, max_gaussians)


def _anchor_stream_source(path: Path, max_units: int | None) -> ViewSource:
    from ..codec.anchors import decode_anchors
    from .anchor_source import AnchorViewSource

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dec = decode_anchors(path, max_anchors=max_units)
    return AnchorViewSource.from_stream(path, dec, _with_warnings(RAVE_NOTE, caught))


def _gaussian_stream_source(path: Path, max_gaussians: int | None) -> ViewSource:
    from ..codec import decode

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dec = decode(path, max_gaussians=max_gaussians)
    note = _with_warnings(RAVE_NOTE, caught)
    if dec.n_decoded == 0:
        raise RaveError("the .rave stream holds no complete chunk (0 Gaussians decoded)", path)
    stops, stop_bytes = chunk_stops(dec.info, dec.n_decoded)
    src = ViewSource(
        path=path, kind="rave", gaussians=dec.gaussians, stops=stops, stop_bytes=stop_bytes,
        stream_info=dec.info, note=note,
    )  # fmt: skip
    src._cache["data"] = path.read_bytes()
    return src


#: how a .rave stream becomes a ViewSource, by the unit type of its version field (codec/unit_type.py)
STREAM_SOURCES = {"gaussians": _gaussian_stream_source, "anchors": _anchor_stream_source}


def _open_ply(path: Path, lp: LoadProgress | None = None) -> ViewSource:
    from ..scene.ply import read_ply

    if lp is not None:
        lp.step("parsing the .ply")
    with warnings.catch_warnings(record=True) as caught:  # repairs, drops, ignored extras: shown in the panel
        warnings.simplefilter("always")
        g = read_ply(path)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)  # still a warning for the terminal (one line)
    return ViewSource(path=path, kind="ply", gaussians=g, note=_with_warnings(PLY_NOTE, caught))


def open_source(path: str | os.PathLike, max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS,
                progress: bool | None = None, progress_min_bytes: int = PROGRESS_MIN_BYTES) -> ViewSource:
    """Open ``path`` for viewing; any problem (missing, truncated, wrong format) is one RaveError naming it.

    ``max_gaussians`` bounds what a .rave stream may declare (None: no limit; see ``codec.decode``).
    An http(s):// URL is a stream on a web host, fetched by byte ranges (viewer/remote.py).
    ``progress``: tqdm bars on stderr while a local file is read and decoded (None: for files of at least
    ``progress_min_bytes``; see :mod:`.loading`)."""
    if isinstance(path, str) and path.strip().lower().startswith(("http://", "https://")):
        from .remote import open_remote

        return open_remote(path.strip(), max_gaussians=max_gaussians)
    path = Path(path)
    if not path.exists():
        raise RaveError("no such file", path)
    if path.is_dir():
        raise RaveError("is a directory, expected a .ckpt, .rave or .ply file", path)
    lp, src = None, None
    try:
        kind = _sniff(path)
        lp = LoadProgress(path, LOAD_STEPS[kind], min_bytes=progress_min_bytes, enabled=progress)
        lp.read()
        if kind == "rave":
            src = _open_rave(path, max_gaussians, lp)
        else:
            src = {"ckpt": _open_ckpt, "ply": _open_ply}[kind](path, lp)
    except RaveError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as e:  # a loader that let a low-level error through
        msg = " ".join(str(e).split()) or type(e).__name__
        raise RaveError(f"cannot open as .{path.suffix.lstrip('.') or '?'} ({msg})", path) from None
    finally:
        if lp is not None:
            lp.close(ok=src is not None)
    src.gaussians = src.gaussians.detach().float()
    return src


def find_demo_scene(root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The bundled demo scene in ``trained_scenes/``: a .ckpt, else a .ply (with a note saying so)."""
    roots = [Path(root)] if root is not None else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for r in roots:
        d = r / "trained_scenes"
        if not d.is_dir():
            continue
        ckpts = sorted(d.glob("*.ckpt"))
        if ckpts:
            return ckpts[0], ""
        plys = sorted(d.glob("*.ply"))
        if plys:
            return plys[0], f"no .ckpt in {d}; showing {plys[0].name} without bitrate controls"
    where = " or ".join(str(r / "trained_scenes") for r in roots)
    raise RaveError(f"no demo scene found (looked for *.ckpt / *.ply in {where}); pass a file to open")


__all__ = ["CKPT_SOURCES", "KINDS", "MODES", "MODE_LABELS", "ViewSource", "open_source", "find_demo_scene"]
