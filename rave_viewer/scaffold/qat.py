"""Quantization-aware training of anchors as the authors do it: 8-bit features, fp16 geometry, straight-through.

The quantizer is the anchor stream's own (:mod:`rave_viewer.codec.anchors`): feature ranges are fitted ONCE
over all anchors (:func:`fit_quant`) and then fixed, as the stream stores them, so what fine-tuning and
ranking render through :func:`fake_quantize_anchors` is bit for bit what a receiver decodes from any prefix
(fitting min/max on each rendered subset, as before, gave a different grid per level and matched no stream).
Positions, offsets and log-scalings make an fp16 round trip; the backward pass is the identity for all of them.
"""

from __future__ import annotations

from torch import Tensor

from ..codec.anchors import AnchorQuant
from ..codec.anchors import fake_quantize_anchors as _fake_quantize

FEATURE_BITS = 8  # the authors' feature bit depth


def fit_quant(anchors: dict[str, Tensor], feature_bits: int = FEATURE_BITS) -> AnchorQuant:
    """The fixed stream grid of ``anchors`` (every anchor of the model: fit before ranking or any prefix)."""
    return AnchorQuant.fit(anchors, feature_bits)


def fake_quantize_anchors(params: dict[str, Tensor], quant: AnchorQuant | None = None, *,
                          feature_bits: int = FEATURE_BITS) -> dict[str, Tensor]:
    """The anchors' parameters as the stream decodes them, differentiable straight through. ``quant``: the
    fixed grid (:func:`fit_quant` over all anchors); None fits it on ``params`` themselves (only right when
    ``params`` are every anchor)."""
    return _fake_quantize(params, quant if quant is not None else fit_quant(params, feature_bits))
