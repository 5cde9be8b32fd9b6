"""Rate-distortion curves: quality (PSNR, SSIM) on test views of prefixes of one ranked model, or of separate models.

A curve is a list of operating points (unit count, exact ``.rave`` bytes, mean test-view PSNR and SSIM).
What is rendered is what a receiver decodes: the checkpoint's decoded units (its backbone's
:func:`~rave_viewer.rave.backbone.decoded_units`: dequantized Gaussians, or decoded anchors with their MLPs),
so the quality belongs to the byte count next to it; prefixes of either kind go through the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import metrics
from ..errors import RaveError
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians

LPIPS_NOTE = (
    "LPIPS not computed: it needs pretrained VGG/AlexNet weights downloaded from a model hub, "
    "and rave eval runs offline"
)


@dataclass
class RDCurve:
    """Operating points of one method, sorted by increasing bytes.

    continuous: True when every point is a prefix of one ranked model (drawn as a line), False for separately
    built models (fixed-rate points, drawn as markers).
    """

    label: str
    count: list[int]
    bytes: list[int]
    psnr: list[float]
    ssim: list[float]
    continuous: bool = True
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.count)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "continuous": self.continuous,
            "count": [int(c) for c in self.count],
            "bytes": [int(b) for b in self.bytes],
            "psnr": [float(p) for p in self.psnr],
            "ssim": [float(s) for s in self.ssim],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RDCurve":
        return cls(
            str(d["label"]), [int(c) for c in d["count"]], [int(b) for b in d["bytes"]],
            [float(p) for p in d["psnr"]], [float(s) for s in d["ssim"]], bool(d.get("continuous", True)),
            dict(d.get("meta", {})),
        )

    @classmethod
    def from_rd_table(cls, label: str, rd: dict, **kw) -> "RDCurve":
        """From a checkpoint's stored table ``{"count", "bytes", "psnr", "ssim"}``."""
        return cls(label, list(rd["count"]), list(rd["bytes"]), list(rd["psnr"]), list(rd["ssim"]), **kw)

    def sorted(self) -> "RDCurve":
        o = sorted(range(len(self)), key=lambda i: (self.bytes[i], self.count[i]))
        pick = lambda v: [v[i] for i in o]  # noqa: E731
        return RDCurve(self.label, pick(self.count), pick(self.bytes), pick(self.psnr), pick(self.ssim),
                       self.continuous, dict(self.meta))


def decoded_gaussians(ckpt) -> Gaussians:
    """The Gaussians a receiver decodes from ``ckpt``'s stream: quantized then dequantized with the fixed grid.

    The grid (``ckpt.bounds``) is the same for every prefix, so prefix k of the result equals the decoded
    prefix-k stream.
    """
    if hasattr(ckpt, "decoded_gaussians"):  # cached on the checkpoint
        return ckpt.decoded_gaussians()
    from ..codec import dequantize, quantize

    return dequantize(quantize(ckpt.gaussians, ckpt.quant, ckpt.bounds))


def checkpoint_background(ckpt) -> Tensor | None:
    """[3] background colour the checkpoint was built with (None: black)."""
    bg = ((ckpt.meta or {}).get("config") or {}).get("background")
    return None if bg is None else torch.tensor([float(v) for v in bg], dtype=torch.float32)


def rate_grid(ckpt, n: int) -> list[int]:
    """Prefix lengths for ``n`` target rates log-spaced over the checkpoint's range [R(G_1), R(G_L)].

    Each target rate goes through the user path (``ckpt.select(rate=R)``, Eq. 3); duplicates (possible on tiny
    scenes) are dropped, so fewer than ``n`` counts may come back. Always includes |G_1| and N.
    """
    if n < 2:
        raise RaveError(f"--rates must be at least 2 (got {n})")
    r0, r1 = float(ckpt.level_rates[0]), float(ckpt.level_rates[-1])
    counts = set()
    for i in range(n):
        r = math.exp(math.log(r0) + (math.log(r1) - math.log(r0)) * i / (n - 1)) if r1 > r0 else r0
        r = min(max(r, r0), r1)
        counts.add(int(ckpt.select(rate=r1 if i == n - 1 else r)))
    counts.add(int(ckpt.level_sizes[0]))
    counts.add(int(ckpt.level_sizes[-1]))
    return sorted(counts)


def as_units(model, *, backend: str = "auto", backgrounds: Tensor | None = None):
    """``model`` as a :class:`~rave_viewer.rave.units.UnitModel`: Gaussians are wrapped, unit models pass."""
    from ..rave.units import GaussianUnits

    if isinstance(model, Gaussians):
        return GaussianUnits(model, backend=backend, background=backgrounds)
    return model


@torch.no_grad()
def view_quality(
    model,
    cams: Cameras,
    *,
    backend: str = "auto",
    backgrounds: Tensor | None = None,
    batch: int = 4,
    subset=None,
) -> tuple[Tensor, Tensor]:
    """Per-view PSNR [C] and SSIM [C] of ``model`` (Gaussians, or any unit model such as decoded anchors; its
    units ``subset``, None = all) rendered from ``cams`` against ``cams.images``.

    backgrounds: [3] colour behind the scene for Gaussians (default black, the dataset default; a unit model
    renders with its own).
    """
    if cams.images is None or len(cams) == 0:
        raise RaveError("no test views with images to evaluate on")
    units = as_units(model, backend=backend, backgrounds=backgrounds)
    ps, ss = [], []
    for s in range(0, len(cams), batch):
        c = cams[list(range(s, min(s + batch, len(cams))))]
        img = units.render(c, subset).clamp(0.0, 1.0)
        gt = c.images.to(img)
        ps.append(metrics.psnr(img, gt))
        ss.append(metrics.ssim(img, gt))
    return torch.cat(ps).cpu(), torch.cat(ss).cpu()


def evaluate_prefixes(
    model,
    counts: Sequence[int],
    bytes_of: Callable[[int], int],
    cams: Cameras,
    *,
    label: str,
    backend: str = "auto",
    backgrounds: Tensor | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> RDCurve:
    """RD curve of the first k units of ``model`` (ranked Gaussians or a unit model) for k in ``counts``."""
    units = as_units(model, backend=backend, backgrounds=backgrounds)
    counts = sorted(int(k) for k in counts)
    if not counts:
        raise RaveError("no operating points to evaluate")
    if counts[0] < 1 or counts[-1] > units.num_units:
        raise RaveError(f"prefix lengths must be in [1, {units.num_units}], got {counts[0]}..{counts[-1]}")
    ps, ss, bs = [], [], []
    for k in tqdm(counts, desc=desc or f"eval {label}", unit="rate", disable=not progress, leave=False):
        p, s = view_quality(units, cams, subset=k)
        ps.append(metrics.mean(p))
        ss.append(metrics.mean(s))
        bs.append(int(bytes_of(k)))
    return RDCurve(label, counts, bs, ps, ss, continuous=True, meta={"n_views": len(cams)})


def evaluate_models(
    models: Iterable[tuple[Gaussians, int]],
    cams: Cameras,
    *,
    label: str,
    backend: str = "auto",
    backgrounds: Tensor | None = None,
    progress: bool = True,
) -> RDCurve:
    """RD points of separately built models: ``models`` yields (decoded Gaussians, exact bytes) pairs."""
    models = list(models)
    cs, bs, ps, ss = [], [], [], []
    for g, nbytes in tqdm(models, desc=f"eval {label}", unit="model", disable=not progress, leave=False):
        p, s = view_quality(g, cams, backend=backend, backgrounds=backgrounds)
        cs.append(len(g))
        bs.append(int(nbytes))
        ps.append(metrics.mean(p))
        ss.append(metrics.mean(s))
    return RDCurve(label, cs, bs, ps, ss, continuous=False, meta={"n_views": len(cams)}).sorted()


def evaluate_checkpoint(
    ckpt,
    cams: Cameras | None = None,
    *,
    n_rates: int = 32,
    label: str = "RAVE",
    backend: str = "auto",
    backgrounds: Tensor | None = None,
    progress: bool = True,
) -> RDCurve:
    """RD curve of a RAVE checkpoint at ``n_rates`` target rates spanning its range, on ``cams`` (default: the
    test views stored in the checkpoint). Bytes are exact ``.rave`` prefix sizes. ``backgrounds`` [3]
    defaults to the background the checkpoint was built with."""
    cams = ckpt.test_cameras if cams is None else cams
    if backgrounds is None:
        backgrounds = checkpoint_background(ckpt)
    from ..rave.backbone import decoded_units, for_object

    counts = rate_grid(ckpt, n_rates)
    units = decoded_units(ckpt, backend=backend, background=backgrounds)
    curve = evaluate_prefixes(units, counts, ckpt.prefix_bytes, cams, label=label, backend=backend,
                              backgrounds=backgrounds, progress=progress)
    curve.meta.update({
        "n_rates_requested": int(n_rates),
        "level_sizes": [int(x) for x in ckpt.level_sizes],
        "level_rates": [int(x) for x in ckpt.level_rates],
        "ranking": (ckpt.meta or {}).get("ranking", (ckpt.meta or {}).get("config", {}).get("ranking")),
        "backbone": for_object(ckpt).name,
        "units": for_object(ckpt).unit_label,
    })
    return curve
