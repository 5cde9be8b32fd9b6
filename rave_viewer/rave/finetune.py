"""Quantization-aware fine-tuning with stochastic level sampling: one shared parameter set serves every level.

Each step draws one level G_l (uniformly, as in the paper, or with given weights such as the authors'
.32 .20 .16 .12 .08 .04 .04 .04 finest → coarsest) and one training view (shuffled passes over the views, as
in 3DGS), renders only G_l — through the codec's straight-through quantizer when ``transform`` is given — and
takes an Adam step on L = 0.8 L1 + 0.2 (1 - SSIM). No densification or pruning: the units and their levels
stay fixed. The units must be in level order (``G_l`` = the first ``level_sizes[l]`` units).
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import metrics
from ..scene.cameras import Cameras
from .units import UnitModel


def level_weights(num_levels: int, sampling: str = "uniform", authors: tuple[float, ...] | None = None) -> list[float]:
    """Sampling probabilities per level, coarsest first. ``authors`` weights are given finest → coarsest."""
    if sampling == "uniform":
        return [1.0 / num_levels] * num_levels
    if sampling == "finest":
        return [0.0] * (num_levels - 1) + [1.0]
    if sampling == "authors":
        if authors is None or len(authors) != num_levels:
            raise ValueError(f"the authors' level weights need {len(authors or ())} levels, got {num_levels}")
        w = list(reversed(authors))
        return [x / sum(w) for x in w]
    raise ValueError(f"unknown level sampling {sampling!r}")


def finetune(
    units: UnitModel,
    cams: Cameras,
    level_sizes: list[int],
    *,
    steps: int,
    lrs: dict[str, float],
    weights: list[float] | None = None,
    transform: Callable | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[UnitModel, dict]:
    """Fine-tuned copy of ``units`` and statistics (levels drawn, mean loss per level over the last quarter).

    Args:
        level_sizes: |G_1| < … < |G_L| (units in level order).
        lrs: Adam learning rate per parameter name (names missing from it stay frozen).
        weights: per-level sampling probabilities, coarsest first (None: uniform).
        transform: applied to the rendered Gaussians (the codec's ``fake_quantize`` for QAT).
    """
    L = len(level_sizes)
    w = torch.tensor(weights if weights is not None else [1.0 / L] * L, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    params = {k: torch.nn.Parameter(v.detach().clone(), requires_grad=k in lrs and lrs[k] > 0)
              for k, v in units.params().items()}
    groups = [{"params": [p], "lr": lrs[k], "name": k} for k, p in params.items() if p.requires_grad]
    opt = torch.optim.Adam(groups, eps=1e-15) if groups else None
    drawn = [0] * L
    late_loss = [0.0] * L
    late_n = [0] * L
    perm: list[int] = []
    if opt is None or steps <= 0:
        return units.with_params({k: p.detach() for k, p in params.items()}), {"steps": 0, "levels_drawn": drawn}
    for step in tqdm(range(steps), desc="fine-tune (stochastic levels, QAT)" if transform else "fine-tune",
                     unit="step", disable=not progress, leave=False):
        if not perm:
            perm = torch.randperm(len(cams), generator=gen).tolist()
        v = perm.pop()
        li = int(torch.multinomial(w, 1, generator=gen))
        drawn[li] += 1
        c = cams[v]
        img = units.render(c, level_sizes[li], params=params, transform=transform)
        loss = metrics.rendering_loss(img, c.images.to(img))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= steps * 3 // 4:
            late_loss[li] += float(loss.detach())
            late_n[li] += 1
    stats = {
        "steps": int(steps),
        "levels_drawn": drawn,
        "late_loss_per_level": [late_loss[i] / late_n[i] if late_n[i] else None for i in range(L)],
    }
    return units.with_params({k: p.detach() for k, p in params.items()}), stats
