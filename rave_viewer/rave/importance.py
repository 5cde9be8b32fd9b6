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

Self-distillation (``rave build`` without a dataset, rave/rig.py): the targets are the full model's own renders,
so wherever the rendered context is the whole model the loss is exactly 0 and so is its gradient (L1's
subgradient at 0 and SSIM's gradient at identity are 0): the first level-construction pass (it renders G_L),
the last context-ranking pass (C_L in context G_L: after fine-tuning only the small fine-tuning and quantization
residual remains, which says nothing about importance), the global ranking and the one-shot levels would rank
by nothing. There ``full_model_score="blend"`` uses each unit's **accumulated blending weight** instead:
sum over views and pixels of alpha_i T_i, LightGaussian's "global significance" (Fan et al. 2023, without its
volume factor): how much of the rendered images each Gaussian actually paints. It never vanishes for a visible
Gaussian, ranks big opaque visible Gaussians above hidden or transparent ones, and is what the gradient score
becomes when the model is pruned: dropping unit i changes each pixel by about alpha_i T_i (c_i - what is
behind). From the second level on the rendered context is a pruned model whose renders differ from the
targets, so the paper's gradient score applies unchanged.

How the weight is computed (:func:`blending_weight`): the rendered colour is linear in each Gaussian's colour
c_i with coefficient alpha_i T_i per pixel, so d(sum of image)/d(c_i) = sum_pixels alpha_i T_i exactly. The
units are rendered with SH DC = 0 and higher SH = 0 (colour 0.5 everywhere: no clamp at 0), and the gradient
w.r.t. SH DC divided by SH_C0 and the 3 channels is the weight. This is one forward and backward per view
batch through the normal render path, so it runs on every backend (compiled CPU, reference, gsplat: gsplat
1.5.3's rasterization returns no per-Gaussian weights in its meta, but its colour gradient is exact), with the
same alpha clamp (0.999), 1/255 threshold and early stop as the images (tests/rave/test_rave_self_distill.py
checks it against a brute-force per-pixel sum).
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
FULL_MODEL_SCORES = ("gradient", "blend")


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
    full_model_score: str = "gradient",
) -> Tensor:
    """[num_units] float64 importance of every unit, rendering only ``subset`` (None = all, int k = first k).

    Args:
        cams: views with ground-truth ``images`` (one pass over all of them).
        param_names: parameters whose gradients count (default: all).
        transform: applied to the rendered units (e.g. the codec's straight-through quantizer).
        batch: views per render in ``norm_of_sum`` mode (``sum_of_norms`` needs one view per backward).
        full_model_score: "gradient" (always the gradient score) or "blend" (the accumulated blending weight
            when ``subset`` renders every unit: self-distillation, see the module docstring).
    """
    if full_model_score not in FULL_MODEL_SCORES:
        raise ValueError(f"unknown full-model score {full_model_score!r} (choose from {', '.join(FULL_MODEL_SCORES)})")
    if full_model_score == "blend" and covers_all(subset, units.num_units):
        return blending_weight(units, cams, subset=subset, transform=transform, batch=batch, progress=progress,
                               desc=f"{desc} (blending weight)")
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


def covers_all(subset, n: int) -> bool:
    """Whether ``subset`` (None, int k, index or bool tensor) selects every one of ``n`` units."""
    if subset is None:
        return True
    if isinstance(subset, int):
        return subset >= n
    subset = torch.as_tensor(subset)
    if subset.dtype == torch.bool:
        return bool(subset.all()) and subset.numel() == n
    return subset.numel() >= n and torch.unique(subset).numel() == n


def blending_weight(
    units: UnitModel,
    cams: Cameras,
    *,
    subset=None,
    transform: Callable | None = None,
    batch: int = 1,
    progress: bool = True,
    desc: str = "blending weight",
) -> Tensor:
    """[num_units] float64 sum over ``cams`` and their pixels of the blending weight each unit paints (units
    outside ``subset``: 0); images are not needed. Each unit model computes its own (:meth:`UnitModel.
    blending_weight`): a Gaussian's alpha_i T_i (the gradient identity of the module docstring), an anchor's
    sum over its neural Gaussians."""
    return units.blending_weight(cams, subset, transform=transform, batch=batch, progress=progress, desc=desc)
