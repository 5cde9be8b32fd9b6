"""What ``rave build`` needs from a model kind (3DGS Gaussians, Scaffold-GS anchors), behind one interface.

The RAVE core (importance, levels, fine-tuning, ranking, selection) works on a
:class:`~rave_viewer.rave.units.UnitModel`; a :class:`Backbone` wraps one loaded model and supplies everything
around it that depends on the kind of unit: the units themselves, the quantizer fitted once over all units (the
straight-through QAT transform and the stream's fixed ranges are the same), Adam learning rates per parameter
at their end-of-training values, the progressive encoder of the ranked units (exact prefix sizes), the
checkpoint object, the decoded units a receiver renders (RD table, ``rave eval``) and the build record's
model fields. :class:`~rave_viewer.rave.build.Builder` picks the backbone from the registry, never by kind.

Registry: :data:`BACKBONES` names each implementation (module:class, imported on first use so the core never
imports a backbone's package); :func:`for_file` chooses by the model file's suffix, else by sniffing its first
bytes; :func:`for_object` by the in-memory model or checkpoint (each class says whether it ``accepts`` it).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor

from ..errors import RaveError
from ..scene.cameras import Cameras
from .config import PARAM_NAMES
from .units import GaussianUnits, UnitModel

#: name -> "module:Class" of every backbone (imported lazily; order = sniffing order).
BACKBONES: dict[str, str] = {
    "3dgs": "rave_viewer.rave.backbone:GaussianBackbone",
    "scaffold": "rave_viewer.scaffold.backbone:ScaffoldBackbone",
}


@runtime_checkable
class Backbone(Protocol):
    """One loaded model of one kind, and what the RAVE pipeline needs around its units."""

    name: ClassVar[str]  # registry name ("3dgs", "scaffold")
    unit_label: ClassVar[str]  # plural noun for messages ("Gaussians", "anchors")
    suffixes: ClassVar[tuple[str, ...]]  # model file suffixes, lower case (".ply")
    source_key: ClassVar[str]  # key of the model file in the build record's ``sources``
    default_chunk_size: ClassVar[int]  # units per .rave chunk when the config leaves it empty
    param_names: ClassVar[tuple[str, ...]]  # the units' parameters (what ``importance_params`` may name)
    default_importance_params: ClassVar[tuple[str, ...]]  # scored when the config leaves ``importance_params`` empty
    model: Any
    quant: Any  # fitted by fit_quant(); None before

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Backbone":
        """Read the model file (one RaveError line naming it for anything wrong)."""
        ...

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether a file starting with ``head`` (its first 4 KiB) is a model of this kind."""
        ...

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """Whether ``obj`` is an in-memory model or a checkpoint of this kind."""
        ...

    def __len__(self) -> int:
        """Number of units."""
        ...

    def cost(self) -> int:
        """Rendered Gaussians a view costs at most (the effort budget's N, rave/budget.py)."""
        ...

    def describe(self) -> str:
        """The model's size in words for the start line ("1,000 Gaussians", "850 anchors (8,500 ...)")."""
        ...

    def units(self, *, backend: str, background: Tensor | None) -> UnitModel:
        """The model as RAVE units (its own parameters, detached)."""
        ...

    def fit_quant(self, cfg) -> Any:
        """The stream's quantizer for build config ``cfg``, fitted once over every unit (sets ``quant``)."""
        ...

    def fake_quantize(self, x):
        """Straight-through quantization (what the stream decodes) of what ``units().render`` hands a transform."""
        ...

    def lrs(self, cfg, scene_scale: float) -> dict[str, float]:
        """Fine-tuning Adam learning rate per parameter name (names missing stay frozen)."""
        ...

    def encoder(self, ranked: UnitModel, cfg, *, progress: bool):
        """The progressive encoder of the ranked units (``size_of_prefix(k)``: exact bytes)."""
        ...

    def checkpoint(self, ranked: UnitModel, encoder, *, order: Tensor, level_sizes: list[int],
                   level_rates: list[int], chunk_rates: list[int], cfg, test_cameras: Cameras):
        """The checkpoint object (RD table and meta empty; the Builder fills them)."""
        ...

    @classmethod
    def decoded_units(cls, ckpt, *, backend: str = "auto", background: Tensor | None = None) -> UnitModel:
        """What a receiver decodes from ``ckpt``'s stream, in ranked order, as units (prefix k = k units)."""
        ...

    def save_checkpoint(self, ckpt, path: str | os.PathLike) -> int:
        """Write ``ckpt`` (safetensors, atomic); returns the bytes written."""
        ...

    def proxy_gaussians(self):
        """Standard Gaussians where the content is, for placing a camera rig (self-distillation)."""
        ...

    def meta(self) -> dict:
        """Model fields of the build record (e.g. input unit count, SH degree)."""
        ...


def _load_class(spec: str) -> type:
    mod, _, cls = spec.partition(":")
    return getattr(importlib.import_module(mod), cls)


def backbone_classes():
    """Every registered backbone class, in registry order (each imported when reached)."""
    return (_load_class(s) for s in BACKBONES.values())


def get(name: str) -> type:
    """The backbone class registered as ``name``."""
    if name not in BACKBONES:
        raise RaveError(f"unknown model kind {name!r} (choose from {', '.join(BACKBONES)})")
    return _load_class(BACKBONES[name])


def for_file(path: str | os.PathLike) -> type:
    """The backbone class of a model file: by suffix, else by its first bytes; one RaveError line otherwise."""
    p = Path(path)
    classes = list(backbone_classes())
    for cls in classes:
        if p.suffix.lower() in cls.suffixes:
            return cls
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    for cls in classes:
        if head and cls.sniff(head):
            return cls
    known = ", ".join(f"{s} ({c.name})" for c in classes for s in c.suffixes)
    raise RaveError(f"is not a model rave build reads (expected {known})", path)


def for_object(obj: object) -> type:
    """The backbone class of an in-memory model or checkpoint."""
    for cls in backbone_classes():
        if cls.accepts(obj):
            return cls
    raise TypeError(f"no backbone accepts a {type(obj).__name__}")


def wrap(model: object) -> Backbone:
    """``model`` (a Backbone already, or an in-memory model of a registered kind) as a Backbone."""
    if isinstance(model, Backbone) and not isinstance(model, type):
        return model
    return for_object(model)(model)


def decoded_units(ckpt, *, backend: str = "auto", background: Tensor | None = None) -> UnitModel:
    """The checkpoint's decoded units (what a receiver renders), whatever its backbone."""
    return for_object(ckpt).decoded_units(ckpt, backend=backend, background=background)


# -- 3DGS ---------------------------------------------------------------------------------------------------
class GaussianBackbone:
    """Standard 3DGS: a unit is a Gaussian; the .rave v1/v2 codec (QuantConfig, fixed bounds) and RaveCheckpoint."""

    name: ClassVar[str] = "3dgs"
    unit_label: ClassVar[str] = "Gaussians"
    suffixes: ClassVar[tuple[str, ...]] = (".ply",)
    source_key: ClassVar[str] = "ply"
    default_chunk_size: ClassVar[int] = 4096
    param_names: ClassVar[tuple[str, ...]] = PARAM_NAMES
    default_importance_params: ClassVar[tuple[str, ...]] = PARAM_NAMES

    def __init__(self, gaussians):
        gaussians.validate("input model")
        self.model = gaussians.detach().float()
        self.quant = None
        self.bounds = None

    @classmethod
    def load(cls, path):
        from ..scene.ply import read_ply

        return cls(read_ply(path))

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(b"ply")

    @classmethod
    def accepts(cls, obj) -> bool:
        from ..scene.gaussians import Gaussians
        from .checkpoint import RaveCheckpoint

        return isinstance(obj, (Gaussians, RaveCheckpoint))

    @property
    def gaussians(self):
        return self.model

    def __len__(self) -> int:
        return len(self.model)

    def cost(self) -> int:
        return len(self.model)

    def describe(self) -> str:
        return f"{len(self.model):,} Gaussians"

    def units(self, *, backend, background) -> GaussianUnits:
        return GaussianUnits(self.model, backend=backend, background=background)

    def fit_quant(self, cfg):
        from ..codec import scene_bounds
        from .config import quant_config

        self.bounds = scene_bounds(self.model)
        self.quant = quant_config(cfg).fit(self.model)  # data-fitted SH ranges: fixed once, QAT and stream
        return self.quant

    def fake_quantize(self, g):
        from ..codec import fake_quantize

        return fake_quantize(g, self.quant, self.bounds)

    def lrs(self, cfg, scene_scale: float) -> dict[str, float]:
        """gsplat's end-of-schedule rates (positions scaled by the scene size)."""
        return {"means": cfg.means_lr * scene_scale, "quats": cfg.quats_lr, "scales": cfg.scales_lr,
                "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}

    def encoder(self, ranked: GaussianUnits, cfg, *, progress: bool):
        from ..codec import ProgressiveEncoder

        return ProgressiveEncoder(ranked.gaussians, self.quant, codec=cfg.codec, chunk_size=cfg.chunk_size,
                                  bounds=self.bounds, progress=progress)

    def checkpoint(self, ranked: GaussianUnits, encoder, *, order, level_sizes, level_rates, chunk_rates, cfg,
                   test_cameras):
        from .checkpoint import RaveCheckpoint

        ckpt = RaveCheckpoint(
            gaussians=ranked.gaussians, order=order, level_sizes=list(level_sizes), level_rates=list(level_rates),
            quant=self.quant, bounds=self.bounds, codec=cfg.codec, chunk_size=cfg.chunk_size,
            rd={k: [] for k in ("count", "bytes", "psnr", "ssim")}, test_cameras=test_cameras, meta={},
            chunk_rates=chunk_rates, interpolate=not cfg.anchors)
        ckpt._encoder = encoder
        return ckpt

    @classmethod
    def decoded_units(cls, ckpt, *, backend="auto", background=None) -> GaussianUnits:
        return GaussianUnits(ckpt.decoded_gaussians(), backend=backend, background=background)

    def save_checkpoint(self, ckpt, path) -> int:
        from .checkpoint import save_checkpoint

        return save_checkpoint(ckpt, path)

    def proxy_gaussians(self):
        return self.model

    def meta(self) -> dict:
        return {"backbone": self.name, "input_gaussians": len(self.model), "sh_degree": self.model.sh_degree}


def importance_params(bb: Backbone, cfg) -> list[str]:
    """The parameters whose gradients enter the importance score: the config's ``importance_params`` checked
    against the backbone's own names (one RaveError line otherwise), or the backbone's default when empty."""
    names = cfg.importance_params
    if names is None:
        return list(bb.default_importance_params)
    bad = [p for p in names if p not in bb.param_names]
    if bad:
        raise RaveError(f"config key 'importance_params' names {', '.join(map(repr, bad))}, not a parameter of "
                        f"{bb.unit_label} (this model's: {', '.join(bb.param_names)})")
    return list(names)


__all__ = ["BACKBONES", "Backbone", "GaussianBackbone", "backbone_classes", "decoded_units", "for_file",
           "for_object", "get", "importance_params", "wrap"]
