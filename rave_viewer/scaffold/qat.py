"""Quantization-aware training of anchors as the authors do it: 8-bit features, fp16 geometry, straight-through.

:func:`fake_quantize_anchors` is a ``transform`` for :meth:`ScaffoldUnits.render` (and so for the RAVE core's
fine-tuning and scoring): features are rounded to ``bits``-bit uniform levels between each feature channel's
minimum and maximum over the rendered anchors, positions, offsets and log-scalings make an fp16 round trip;
the backward pass is the identity for all of them (straight-through estimator). The codec that stores the
anchors must quantize the same way for the fine-tuned model to match what is decoded (issue 17's codec part).
"""

from __future__ import annotations

import torch
from torch import Tensor

FP16_FIELDS = ("anchor", "offset", "scaling")


def _straight_through(x: Tensor, q: Tensor) -> Tensor:
    """``q`` in the forward pass, the identity's gradient w.r.t. ``x`` in the backward pass."""
    return x + (q - x).detach()


def quantize_uniform(x: Tensor, bits: int = 8) -> Tensor:
    """[N, C] rounded to 2^bits levels per column between the column's min and max (no gradient)."""
    with torch.no_grad():
        lo = x.amin(dim=0, keepdim=True) if x.shape[0] else x.new_zeros(1, x.shape[1])
        hi = x.amax(dim=0, keepdim=True) if x.shape[0] else x.new_zeros(1, x.shape[1])
        step = (hi - lo) / (2**bits - 1)
        safe = torch.where(step > 0, step, torch.ones_like(step))
        return torch.where(step > 0, torch.round((x - lo) / safe) * safe + lo, x)


def fake_quantize_anchors(params: dict[str, Tensor], *, feature_bits: int = 8) -> dict[str, Tensor]:
    """The anchors' parameters as the stored model would decode them, differentiable straight through."""
    out = dict(params)
    out["anchor_feat"] = _straight_through(params["anchor_feat"], quantize_uniform(params["anchor_feat"], feature_bits))
    for f in FP16_FIELDS:
        out[f] = _straight_through(params[f], params[f].detach().half().float())
    return out
