"""A Scaffold-GS anchor checkpoint as a ViewSource: the slider selects anchors, each frame decodes their Gaussians.

The operating point with k anchors is the first k ranked anchors of the checkpoint, as a receiver decodes them
(:meth:`~rave_viewer.rave.anchor_checkpoint.AnchorCheckpoint.model` with ``decoded=True``: the stream's
quantization grid; the ScaffoldModel is built once). Their neural Gaussians depend on the camera, so
:meth:`AnchorViewSource.gaussians_for` runs the MLPs for each camera (the anchors it sees, on the CPU) exactly as
``rave build`` rendered the RD table (:func:`~rave_viewer.scaffold.model.decode_for_camera`, culling on).

A camera keeps its decoded Gaussians (a few cameras, least recently used first out) and extends them when the
slider asks for more anchors: an anchor's neural Gaussians do not depend on the other anchors, and those of the
first k anchors are a prefix of those of any longer prefix (anchor-major order), so a slider step at rest
decodes only the anchors it adds and a step down decodes nothing.

An anchor ``.rave`` stream opens the same way (:meth:`AnchorViewSource.from_stream`): its chunk boundaries are the
stops, as for a Gaussian stream. Selection, sizes, levels, PSNR and .rave export are
:class:`~rave_viewer.viewer.sources.ViewSource`'s, through the checkpoint's :class:`~rave_viewer.rave.checkpoint.RankedCheckpoint` code (the same as for Gaussians).
``gaussians`` is one static snapshot of all anchors (each seen from the scene's typical view distance, as
``rave decode`` writes a PLY: :func:`~rave_viewer.scaffold.model.snapshot_gaussians`) for what needs one fixed
set: the scene's centre, radius and up axis. Browser rendering (client-side splats) cannot follow the view and is
refused (:attr:`browser_note`).
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from .sources import ViewSource, chunk_stops

ANCHOR_NOTE = (
    "Scaffold-GS anchors: the slider selects anchors; each frame decodes their neural Gaussians for the camera "
    "(the MLPs run on the server's CPU). Browser rendering is off: WebGL splats cannot follow the view."
)
BROWSER_NOTE = (
    "Browser rendering needs fixed Gaussians, but an anchor model's neural Gaussians are decoded for each "
    "camera (Scaffold-GS): this scene renders on the server."
)
MAX_CAMERAS = 3  # cameras whose decoded Gaussians are kept


@dataclass
class _Decoded:
    """One camera's neural Gaussians of the first ``n`` anchors and the anchor each came from."""

    n: int = 0
    gaussians: Gaussians | None = None
    owner: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class AnchorViewSource(ViewSource):
    """An :class:`~rave_viewer.rave.anchor_checkpoint.AnchorCheckpoint` for the viewer (see the module docstring);
    ``k`` counts anchors, ``gaussians`` is the static snapshot."""

    view_dependent: ClassVar[bool] = True
    unit_label: ClassVar[str] = "anchors"
    browser_note: ClassVar[str] = BROWSER_NOTE
    scaffold: Any = field(default=None, repr=False)  # ScaffoldModel of the decoded ranked anchors
    _views: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _views_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_checkpoint(cls, path: Path, ckpt, cams: Cameras | None) -> "AnchorViewSource":
        """The source of a loaded anchor checkpoint (decodes the anchors once, and the static snapshot)."""
        from ..scaffold.model import snapshot_gaussians

        model = ckpt.model(decoded=True)
        model.mlps.requires_grad_(False)
        snap, _ = snapshot_gaussians(model)
        return cls(path=path, kind="ckpt", gaussians=snap, test_cameras=cams, checkpoint=ckpt, note=ANCHOR_NOTE,
                   scaffold=model)

    @classmethod
    def from_stream(cls, path: Path, dec, note: str) -> "AnchorViewSource":
        """The source of a decoded anchor ``.rave`` stream (:class:`~rave_viewer.codec.anchors.DecodedAnchors`):
        the slider moves over its chunk boundaries, with the exact size of each cut; no test views, no PSNR."""
        from ..errors import RaveError
        from ..rave.anchor_checkpoint import scaffold_model
        from ..scaffold.model import snapshot_gaussians

        if dec.n_decoded == 0:
            raise RaveError("the anchor .rave stream holds no complete chunk (0 anchors decoded)", path)
        model = scaffold_model(dec.anchors, dec.spec, dec.mlps, path)
        model.mlps.requires_grad_(False)
        stops, stop_bytes = chunk_stops(dec.info, dec.n_decoded)
        snap, _ = snapshot_gaussians(model)
        src = cls(path=path, kind="rave", gaussians=snap, stops=stops, stop_bytes=stop_bytes, stream_info=dec.info,
                  note=f"{ANCHOR_NOTE} {note}", scaffold=model)  # fmt: skip
        src._cache["data"] = path.read_bytes()
        return src

    @property
    def n(self) -> int:
        """Anchors of the largest selection (the checkpoint's, or the stream's complete chunks)."""
        return len(self.checkpoint) if self.checkpoint is not None else int(self.stops[-1])

    def _cut_stream(self, k: int) -> bytes:
        """The stream's own first chunks up to ``k`` anchors (a chunk boundary), re-headered."""
        from ..codec.anchors import cut_anchor_stream
        from ..errors import RaveError

        if k not in self.stops:
            raise RaveError(f"{k} anchors is not a chunk boundary of this stream", self.path)
        return cut_anchor_stream(self._cache["data"], k, name=str(self.path))

    # -- what a camera sees ---------------------------------------------------------------------------------
    def _decoded(self, k: int, viewmat: Tensor, K: Tensor, width: int, height: int) -> tuple[Gaussians, Tensor]:
        """(neural Gaussians of at least the first ``k`` anchors for this camera, owner anchor of each)."""
        viewmat = viewmat.detach().to("cpu", torch.float32)
        K = K.detach().to("cpu", torch.float32)
        key = (viewmat.numpy().tobytes(), K.numpy().tobytes(), int(width), int(height))
        with self._views_lock:
            v = self._views.get(key)
            if v is None:
                v = self._views[key] = _Decoded()
                while len(self._views) > MAX_CAMERAS:
                    self._views.popitem(last=False)
            self._views.move_to_end(key)
        with v.lock:
            if k > v.n or v.gaussians is None:
                self._extend(v, max(k, v.n), viewmat, K, int(width), int(height))
            return v.gaussians, v.owner

    def _extend(self, v: _Decoded, k: int, viewmat: Tensor, K: Tensor, width: int, height: int) -> None:
        from ..scaffold.model import decode_for_camera

        m, a = self.scaffold, v.n
        params = {f: t[a:k] for f, t in m.params.items()}  # (views: no copy)
        with torch.no_grad():
            ng = decode_for_camera(params, m.mlps, m.spec, viewmat, K, width, height, cull=True)
        g, owner = ng.gaussians.detach(), ng.owners() + a
        if v.gaussians is not None:
            g, owner = Gaussians.cat([v.gaussians, g]), torch.cat([v.owner, owner])
        v.gaussians, v.owner, v.n = g, owner, k

    def gaussians_for(self, k: int, viewmat: Tensor, K: Tensor, width: int, height: int) -> Gaussians:
        """The neural Gaussians of the first ``k`` anchors decoded for this camera (the anchors it sees): equal to
        ``decode_for_camera`` of those anchors, as the RD table's renders."""
        k = min(max(int(k), 0), self.n)
        g, owner = self._decoded(k, viewmat, K, width, height)
        return g.prefix(int(torch.searchsorted(owner, k)))

    def added_for(self, k_lo: int, k_hi: int, viewmat: Tensor, K: Tensor, width: int,
                  height: int) -> tuple[Gaussians, Tensor]:
        """(neural Gaussians of the first ``k_hi`` anchors for this camera, bool: from anchors ``k_lo``..``k_hi``)."""
        k_hi = min(max(int(k_hi), 0), self.n)
        g, owner = self._decoded(k_hi, viewmat, K, width, height)
        m = int(torch.searchsorted(owner, k_hi))
        return g.prefix(m), owner[:m] >= int(k_lo)

    # -- exports ------------------------------------------------------------------------------------------
    def ply_bytes(self, k: int) -> bytes:
        """A standard .ply of the first ``k`` anchors: their snapshot as ``rave decode`` writes it for the .rave
        stream of that selection (one fixed viewpoint per anchor, SH degree 0; see snapshot_gaussians)."""
        from ..scaffold.model import snapshot_gaussians
        from ..scene.ply import write_ply

        g, _ = snapshot_gaussians(self.scaffold.subset(torch.arange(min(max(int(k), 1), self.n))))
        with tempfile.TemporaryDirectory(prefix="rave-view-") as tmp:
            p = Path(tmp) / "selection.ply"
            write_ply(g, p)
            return p.read_bytes()


__all__ = ["ANCHOR_NOTE", "AnchorViewSource", "BROWSER_NOTE"]
