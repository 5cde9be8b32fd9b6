"""One ranked order of all units, G_1, C_2, …, C_L, so that every operating point is a prefix (paper §2.2, Eq. 4).

The units come in level order (``G_l`` = the first ``level_sizes[l]``); ranking only permutes inside each
interval C_l = G_l \\ G_{l-1} (and inside G_1), so level prefixes stay exactly the levels.

* ``"context"`` (paper): for each l, score the units rendering G_{l+1} only and sort C_{l+1} by that score,
  highest first; G_1 is sorted by its own score rendering G_1 (L scoring passes). The units added first
  between two levels are the ones that matter most *given the level below them*.
* ``"global"`` (the paper's ablation): one score rendering every unit, reused to sort every interval (1 pass);
  it favours units that only matter once the finer structure is there.
* ``"keep"``: no re-scoring (the order from level construction), for the naive multi-anchor ablation where
  selection snaps to levels and the order inside an interval is never used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from .importance import importance
from .units import UnitModel

MODES = ("context", "global", "keep")


@dataclass
class Ranking:
    """perm: [N] int64 indices into the level-ordered units (a permutation within each interval)."""

    perm: Tensor
    passes: int


def _sorted_interval(scores: Tensor, lo: int, hi: int) -> Tensor:
    seg = scores[lo:hi]
    return lo + torch.sort(seg, descending=True, stable=True).indices


def rank(units: UnitModel, cams: Cameras, level_sizes: list[int], *, mode: str = "context",
         progress: bool = True, **importance_kw) -> Ranking:
    """Ranked permutation of ``units`` (in level order); see the module docstring for the modes."""
    n = units.num_units
    bounds = [0, *level_sizes]
    if mode == "keep":
        return Ranking(torch.arange(n), 0)
    if mode == "global":
        s = importance(units, cams, progress=progress, desc="ranking (global score)", **importance_kw)
        parts = [_sorted_interval(s, bounds[i], bounds[i + 1]) for i in range(len(level_sizes))]
        return Ranking(torch.cat(parts), 1)
    if mode != "context":
        raise ValueError(f"unknown ranking mode {mode!r} (choose from {', '.join(MODES)})")
    parts = []
    for i in range(len(level_sizes)):
        s = importance(units, cams, subset=bounds[i + 1], progress=progress,
                       desc=f"ranking: C_{i + 1} in context G_{i + 1}", **importance_kw)
        parts.append(_sorted_interval(s, bounds[i], bounds[i + 1]))
    return Ranking(torch.cat(parts), len(level_sizes))
