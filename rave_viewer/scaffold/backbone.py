"""Scaffold-GS as a RAVE backbone: the anchor is the ranked unit (rave/backbone.py's interface).

* Units: :class:`~rave_viewer.scaffold.units.ScaffoldUnits` (MLPs frozen; the score is the norm of the summed
  gradient of each anchor's feature, the authors' default).
* Quantizer: the anchor stream's :class:`~rave_viewer.codec.anchors.AnchorQuant`, 8-bit features on ranges
  fitted once over all anchors, fp16 positions/offsets/scalings; QAT renders through exactly that
  (scaffold/qat.py), so fine-tuned and decoded anchors agree bit for bit. The 3DGS quality presets
  (``BuildConfig.quality`` / ``quant``) do not apply to anchors.
* Learning rates: Scaffold-GS's training rates at their end-of-schedule values (offsets ``offset_lr_final``
  times the scene scale, features ``feature_lr``, scalings ``scaling_lr``, positions ``anchor_lr`` = 0: the
  authors keep anchors fixed), read from the model's run record when it has one, else ScaffoldConfig's
  defaults. The 3DGS rates of the build config do not apply.
* Encoder / checkpoint: :class:`~rave_viewer.codec.anchors.AnchorEncoder` (MLP weights once in the header) and
  the anchor checkpoint of :mod:`rave_viewer.rave.anchor_checkpoint`.
"""

from __future__ import annotations

import os
from typing import ClassVar

from torch import Tensor

from ..codec.anchors import DEFAULT_ANCHOR_CHUNK
from .model import ANCHOR_FIELDS, ScaffoldModel
from .units import SCORE_DEFAULT, ScaffoldUnits

#: Learning-rate keys of ScaffoldConfig used for fine-tuning: parameter -> (config key, scaled by scene size).
LR_KEYS = {"anchor": ("anchor_lr", True), "offset": ("offset_lr_final", True), "anchor_feat": ("feature_lr", False),
           "scaling": ("scaling_lr", False)}


class ScaffoldBackbone:
    """A :class:`ScaffoldModel` for ``rave build``: anchors ranked, coded and checkpointed."""

    name: ClassVar[str] = "scaffold"
    unit_label: ClassVar[str] = "anchors"
    suffixes: ClassVar[tuple[str, ...]] = (".scaffold",)
    source_key: ClassVar[str] = "scaffold"
    default_chunk_size: ClassVar[int] = DEFAULT_ANCHOR_CHUNK  # (~40 KB per chunk at ~80 B per anchor)
    param_names: ClassVar[tuple[str, ...]] = ANCHOR_FIELDS
    default_importance_params: ClassVar[tuple[str, ...]] = SCORE_DEFAULT  # the feature's gradient (authors' code)

    def __init__(self, model: ScaffoldModel, train_config: dict | None = None):
        self.model = model.detached()
        self.quant = None
        self.train_config = dict(train_config or {})

    @classmethod
    def load(cls, path):
        from ..rave.build import training_record  # the run record beside the model (its training config)
        from .io import load

        cfg = training_record(path).get("config")
        return cls(load(path), cfg if isinstance(cfg, dict) else {})

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        from .io import FORMAT

        return len(head) > 8 and head[8:9] == b"{" and f'"format":"{FORMAT}"'.encode() in head

    @classmethod
    def accepts(cls, obj) -> bool:
        if isinstance(obj, ScaffoldModel):
            return True
        try:
            from ..rave.anchor_checkpoint import AnchorCheckpoint
        except ImportError:
            return False
        return isinstance(obj, AnchorCheckpoint)

    def __len__(self) -> int:
        return len(self.model)

    def cost(self) -> int:
        return self.model.num_neural()

    def describe(self) -> str:
        return f"{len(self.model):,} anchors (up to {self.cost():,} neural Gaussians per view)"

    def units(self, *, backend, background) -> ScaffoldUnits:
        # score_params None: every gradient importance() hands over counts (it computes just the configured ones)
        return ScaffoldUnits(self.model, backend=backend, background=background, score_params=None)

    def fit_quant(self, cfg):
        import warnings

        from .qat import fit_quant

        if cfg.quant or cfg.quality != "medium":
            warnings.warn(f"the 3DGS quantization settings (quality {cfg.quality!r}, quant {cfg.quant}) do not apply "
                          "to Scaffold-GS anchors: they are stored as the authors do (8-bit features on fixed "
                          "ranges, fp16 positions, offsets and scalings)", stacklevel=2)
        self.quant = fit_quant(self.model.params)
        return self.quant

    def fake_quantize(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        from .qat import fake_quantize_anchors

        return fake_quantize_anchors(params, self.quant)

    def lrs(self, cfg, scene_scale: float) -> dict[str, float]:
        from .config import ScaffoldConfig

        d = ScaffoldConfig().to_dict()
        d.update({k: v for k, v in self.train_config.items() if k in d and isinstance(v, (int, float))})
        return {p: float(d[key]) * (scene_scale if scaled else 1.0) for p, (key, scaled) in LR_KEYS.items()}

    def _model_dict(self) -> dict:
        return {"spec": self.model.spec.to_dict(), "mlps": self.model.mlp_tensors()}

    def encoder(self, ranked: ScaffoldUnits, cfg, *, progress: bool):
        from ..codec.anchors import AnchorEncoder

        return AnchorEncoder({f: ranked.anchors[f] for f in ANCHOR_FIELDS}, self._model_dict(), self.quant,
                             codec=cfg.codec, chunk_size=cfg.chunk_size, progress=progress)

    def checkpoint(self, ranked: ScaffoldUnits, encoder, *, order, level_sizes, level_rates, chunk_rates, cfg,
                   test_cameras):
        from ..rave.anchor_checkpoint import AnchorCheckpoint

        ckpt = AnchorCheckpoint(
            anchors={f: ranked.anchors[f].detach().float() for f in ANCHOR_FIELDS}, spec=self.model.spec.to_dict(),
            mlps=self.model.mlp_tensors(), order=order, level_sizes=list(level_sizes),
            level_rates=list(level_rates), quant=self.quant, codec=cfg.codec, chunk_size=cfg.chunk_size,
            rd={k: [] for k in ("count", "bytes", "psnr", "ssim")}, test_cameras=test_cameras, meta={},
            chunk_rates=chunk_rates, interpolate=not cfg.anchors)
        ckpt._encoder = encoder
        return ckpt

    @classmethod
    def decoded_units(cls, ckpt, *, backend="auto", background=None) -> ScaffoldUnits:
        """The decoded anchors (the stream's fixed grid, bit-identical to decoding) with the checkpoint's MLPs,
        in ranked order."""
        return ScaffoldUnits(ckpt.model(decoded=True), backend=backend, background=background)

    def save_checkpoint(self, ckpt, path: str | os.PathLike) -> int:
        from ..rave.anchor_checkpoint import save_checkpoint

        return save_checkpoint(ckpt, path)

    def proxy_gaussians(self):
        """The neural Gaussians decoded for a camera at the anchors' centroid (for the rig's bounds only)."""
        return self.model.to_gaussians(self.model.params["anchor"].mean(dim=0))

    def meta(self) -> dict:
        return {"backbone": self.name, "input_anchors": len(self.model), "spec": self.model.spec.to_dict(),
                "lrs_from": "run record" if self.train_config else "ScaffoldConfig defaults"}
