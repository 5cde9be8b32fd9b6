"""The Scaffold-GS anchor checkpoint: ranked anchors, their MLPs and the anchor stream's fixed quantizer.

Constructor (keywords; what the build passes)::

    AnchorCheckpoint(anchors={"anchor": [N, 3], "offset": [N, k, 3], "anchor_feat": [N, F], "scaling": [N, 6]},
                     spec=ScaffoldSpec(...).to_dict(), mlps=model.mlp_tensors(),  # name -> float32 tensor
                     quant=AnchorQuant.fit(all_anchors), order=[N] int64, level_sizes=[...], level_rates=[...],
                     chunk_rates=[M + 1] or None, rd={"count", "bytes", "psnr", "ssim"}, test_cameras=Cameras,
                     meta={}, codec="lzma", chunk_size=DEFAULT_ANCHOR_CHUNK, interpolate=True)

``anchors`` are the fine-tuned anchors in ranked order (float32, not yet quantized: the stream quantizes them
with ``quant``); ``order`` indexes the input model's anchors. Selection (``select(rate=|count=|psnr=)``,
``prefix_bytes``, ``level_of``, ``rate_range`` …) is :class:`~rave_viewer.rave.checkpoint.RankedCheckpoint`'s,
the same code as for Gaussians. Set ``ckpt._encoder`` to the build's :class:`AnchorEncoder` to reuse its
compressed chunks.

File: the ``.ckpt`` safetensors layout of :mod:`rave_viewer.rave.checkpoint` with ``unit_type`` "anchors"
and checkpoint format version 2; tensors ``anchors.<field>`` and ``mlp.<name>`` (float32) instead of
``gaussians.*`` and ``bounds``; the JSON document holds ``spec`` and ``quant`` (:meth:`AnchorQuant.to_dict`).
Loading checks the anchors, spec and MLP weights as a ``.scaffold`` file is checked (missing MLP weights,
a feature size the MLPs do not take, shapes, non-finite values) and the quantizer against the feature size:
one RaveError line naming the file. :func:`load_checkpoint` returns this class for such a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ..codec.anchors import ANCHOR_FIELDS, DEFAULT_ANCHOR_CHUNK, AnchorEncoder, AnchorQuant, fake_quantize_anchors
from ..codec.coders import DEFAULT_CODEC
from ..errors import RaveError
from ..scene.cameras import Cameras
from .checkpoint import (  # noqa: F401  (re-exported: one entry point for both unit types)
    RankedCheckpoint,
    _get,
    checkpoint_encoder,
    encode_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


@dataclass(eq=False)
class AnchorCheckpoint(RankedCheckpoint):
    """A RAVE model of Scaffold-GS anchors: every operating point with k anchors is the first k ranked anchors
    decoded by the shared MLPs (attributes: see the module docstring)."""

    anchors: dict[str, Tensor]
    spec: dict
    mlps: dict[str, Tensor]
    quant: AnchorQuant
    order: Tensor
    level_sizes: list[int]
    level_rates: list[int]
    chunk_rates: list[int] | None
    rd: dict
    test_cameras: Cameras
    meta: dict = field(default_factory=dict)
    codec: str = DEFAULT_CODEC
    chunk_size: int = DEFAULT_ANCHOR_CHUNK
    interpolate: bool = True
    unreadable_meta: tuple[str, ...] = ()
    _encoder: object = field(default=None, repr=False, compare=False)
    _decoded: dict | None = field(default=None, repr=False, compare=False)
    _psnr_max: tuple | None = field(default=None, repr=False, compare=False)
    unit_type: ClassVar[str] = "anchors"
    unit_label: ClassVar[str] = "anchors"

    def __len__(self) -> int:
        return int(self.anchors["anchor"].shape[0])

    def encoder(self) -> AnchorEncoder:
        """The cached :class:`~rave_viewer.codec.anchors.AnchorEncoder` over the ranked anchors."""
        if self._encoder is None:
            self._encoder = AnchorEncoder(self.anchors, {"spec": self.spec, "mlps": self.mlps}, self.quant,
                                          codec=self.codec, chunk_size=self.chunk_size)
        return self._encoder

    def decoded_anchors(self) -> dict[str, Tensor]:
        """The ranked anchors as a receiver decodes them (features on the fixed grid, fp16 geometry), in ranked
        order (prefix k = the first k); cached. Bit-identical to :func:`decode_anchors` up to the in-chunk order."""
        if self._decoded is None:
            with torch.no_grad():
                q = fake_quantize_anchors({f: self.anchors[f].detach().cpu().float() for f in ANCHOR_FIELDS},
                                          self.quant)
            self._decoded = {f: q[f].detach() for f in ANCHOR_FIELDS}
        return self._decoded

    def model(self, *, decoded: bool = True):
        """A :class:`~rave_viewer.scaffold.model.ScaffoldModel` of the decoded (or the stored) ranked anchors."""
        from ..scaffold.model import ScaffoldMLPs, ScaffoldModel, ScaffoldSpec

        spec = ScaffoldSpec(**self.spec)
        mlps = ScaffoldMLPs(spec)
        mlps.load_state_dict(self.mlps)
        return ScaffoldModel(spec, dict(self.decoded_anchors() if decoded else self.anchors), mlps)

    def _payload(self) -> tuple[dict[str, Tensor], dict, dict]:
        tensors = {f"anchors.{f}": self.anchors[f].detach().to("cpu", torch.float32).contiguous()
                   for f in ANCHOR_FIELDS}
        tensors.update({f"mlp.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in self.mlps.items()})
        return tensors, {"n": len(self), "spec": self.spec}, self.quant.to_dict()


def scaffold_model(anchors: dict[str, Tensor], spec: dict, mlps: dict[str, Tensor], path=None):
    """A checked :class:`~rave_viewer.scaffold.model.ScaffoldModel` of these parts: the checks of a ``.scaffold``
    file (spec types and ranges, every MLP weight present with its shape, the feature size the MLPs take,
    anchor shapes, float32, finite values, at least one anchor); one RaveError line naming ``path``."""
    from safetensors.torch import save

    from ..scaffold import io

    parts = {**{f: anchors[f] for f in ANCHOR_FIELDS if f in anchors}, **mlps}
    if len(parts) != len(mlps) + sum(f in anchors for f in ANCHOR_FIELDS):
        raise RaveError("MLP weight names clash with anchor fields", path)
    for k, v in parts.items():
        if not v.is_floating_point():
            raise RaveError(f"tensor '{k}' is {str(v.dtype).removeprefix('torch.')}, expected float32", path)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in parts.items()}
    meta = {"format": io.FORMAT, "format_version": str(io.FORMAT_VERSION), "spec": json.dumps(spec)}
    return io.from_bytes(save(tensors, metadata=meta), path)


def load_anchor_units(t: dict[str, Tensor], doc: dict, path) -> tuple[dict, int]:
    """The anchor checkpoint's own fields (``anchors``, ``spec``, ``mlps``, ``quant``) and its anchor count."""
    missing = [f"anchors.{f}" for f in ANCHOR_FIELDS if f"anchors.{f}" not in t]
    if missing:
        raise RaveError(f"checkpoint lacks the tensor(s) {', '.join(missing)}", path)
    spec = _get(doc, "spec", dict, path)
    mlps = {k[4:]: v for k, v in t.items() if k.startswith("mlp.")}
    model = scaffold_model({f: t[f"anchors.{f}"] for f in ANCHOR_FIELDS}, spec, mlps, path)
    n = len(model)
    if _get(doc, "n", int, path) != n:
        raise RaveError(f"checkpoint says {doc['n']} anchors but holds {n}", path)
    try:
        quant = AnchorQuant.from_dict(_get(doc, "quant", dict, path))
    except RaveError as e:
        raise RaveError(f"checkpoint quantization settings: {e}", path) from None
    if quant.feat_dim != model.spec.feat_dim:
        raise RaveError(f"checkpoint quantization has {quant.feat_dim} feature ranges but the anchors have "
                        f"{model.spec.feat_dim} feature channels", path)
    want = (3 * model.spec.n_offsets, int(model.params["scaling"].shape[1]))
    if quant.uniform_geometry and (len(quant.offset_lo), len(quant.scaling_lo)) != want:
        raise RaveError(f"checkpoint quantization has {len(quant.offset_lo)} offset and {len(quant.scaling_lo)} "
                        f"scaling ranges but the anchors have {want[0]} and {want[1]} values", path)
    return {"anchors": dict(model.params), "spec": model.spec.to_dict(), "mlps": model.mlp_tensors(),
            "quant": quant}, n


__all__ = ["AnchorCheckpoint", "checkpoint_encoder", "encode_checkpoint", "load_anchor_units", "load_checkpoint",
           "save_checkpoint", "scaffold_model"]
