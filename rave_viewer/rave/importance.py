"""Per-unit importance: the L2 norm of the rendering loss's gradient w.r.t. each unit's parameters (paper Eq. 4).

The loss is the 3DGS training loss L = 0.8 L1 + 0.2 (1 - SSIM) (paper Eq. 5, lambda = 0.2), over one pass of
the training views. Two ways to accumulate over the views (``accumulate``):

* ``"norm_of_sum"`` (default): ||dL/dtheta_i||_2 with L the sum of the per-view losses, i.e. the norm of the
  gradient summed over the views: the paper's formula read literally ("the gradients are calculated only once
  on the training set") and what the authors' code computes.
* ``"sum_of_norms"``: sum over views of the per-view gradient norms ||dL_v/dtheta_i||_2 (gradients of
  opposite sign from different views do not cancel; 3DGS accumulates its densification statistic this way).

Measured (benchmarks/SELECTION.md): on the trained demo scenes ``norm_of_sum`` builds better levels (+0.6 to
+0.85 dB mean level PSNR) and the context-aware order beats the global one with both (+0.25 / +0.27 dB and
+0.31 / +0.34 dB BD-PSNR, after 300 fine-tuning steps; after 3000 steps the two orders are within 0.02 dB,
benchmarks/REPRODUCTION.md), so the default stays ``norm_of_sum``. On tiny under-fitted scenes (the unit tests) the
levels are equally good, but after fine-tuning the summed gradient nearly cancels across views and the
context-aware advantage is only measurable with ``sum_of_norms``.

Only the units in ``subset`` are rendered (context-aware scoring); the others have exactly zero gradient and
therefore score 0. The sum over views (not the mean) only scales every score by the same factor.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import metrics
from ..scene.cameras import Cameras
from .units import UnitModel

MODES = ("norm_of_sum", "sum_of_norms")


def view_losses(img: Tensor, gt: Tensor, lam: float = 0.2) -> Tensor:
    """[C] per-view rendering loss (1 - lam) * L1 + lam * (1 - SSIM) of images [C, H, W, 3]."""
    l1 = (img - gt).abs().mean(dim=(-3, -2, -1))
    return (1.0 - lam) * l1 + lam * (1.0 - metrics.ssim(img, gt))


def importance(
    units: UnitModel,
    cams: Cameras,
    *,
    subset=None,
    accumulate: str = "norm_of_sum",
    param_names: list[str] | tuple[str, ...] | None = None,
    transform: Callable | None = None,
    batch: int = 1,
    progress: bool = True,
    desc: str = "importance",
) -> Tensor:
    """[num_units] float64 importance of every unit, rendering only ``subset`` (None = all, int k = first k).

    Args:
        cams: views with ground-truth ``images`` (one pass over all of them).
        param_names: parameters whose gradients count (default: all).
        transform: applied to the rendered units (e.g. the codec's straight-through quantizer).
        batch: views per render in ``norm_of_sum`` mode (``sum_of_norms`` needs one view per backward).
    """
    if accumulate not in MODES:
        raise ValueError(f"unknown importance accumulation {accumulate!r} (choose from {', '.join(MODES)})")
    if cams.images is None or len(cams) == 0:
        raise ValueError("importance needs views with images")
    base = units.params()
    names = list(param_names) if param_names is not None else list(base)
    leaves = {k: v.detach().requires_grad_(k in names) for k, v in base.items()}
    wrt = [leaves[k] for k in names]
    if accumulate == "sum_of_norms":
        batch = 1
    acc: list[Tensor] | None = None
    score = torch.zeros(units.num_units, dtype=torch.float64)
    n = len(cams)
    with tqdm(total=n, desc=desc, unit="view", disable=not progress, leave=False) as bar:
        for s in range(0, n, batch):
            c = cams[list(range(s, min(s + batch, n)))]
            img = units.render(c, subset, params=leaves, transform=transform)
            loss = view_losses(img, c.images.to(img)).sum()
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]
            if accumulate == "norm_of_sum":
                acc = grads if acc is None else [a + g for a, g in zip(acc, grads)]
            else:
                score += units.unit_scores(dict(zip(names, grads))).cpu()
            bar.update(len(c))
    if accumulate == "norm_of_sum":
        score = units.unit_scores(dict(zip(names, acc))).cpu()
    return score
