"""Nested levels G_1 ⊂ … ⊂ G_L (paper Eq. 2) from level fractions, built coarse-from-fine by importance.

Fractions: geometric progression from ``coarsest`` to 1 (``f_l = coarsest^((L-l)/(L-1))``), the shape of the
authors' levels and of the paper's reported rates (each level ~1.37x the previous on Mip-NeRF360). A rate
step ΔR (relative: R(G_{l+1}) ≈ (1 + ΔR)·R(G_l), rate being close to proportional to the count) gives
``f_l = (1 + ΔR)^-(L-l)``. The finest level is always every unit.

Construction (``method``):

* ``"iterative"`` (default, the authors' way): score the units of G_{l+1} rendering G_{l+1} only, keep the
  |G_l| best as G_l, repeat down to G_1 (L-1 scoring passes). Units outside the rendered level have zero
  gradient, so the levels are nested by construction, and each drop is decided in the context of the level
  it is dropped from.
* ``"oneshot"``: one score on the full model, levels = prefixes of that order (1 pass).

The result is a permutation ``order`` of the units with ``order[:|G_l|]`` = G_l; inside each C_l (and G_1) the
units are sorted by the score of the pass that formed it (descending).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import RaveError
from ..scene.cameras import Cameras
from .importance import importance
from .units import UnitModel

METHODS = ("iterative", "oneshot")


def level_fractions(num_levels: int = 8, coarsest: float = 0.1, *, delta_rate: float | None = None,
                    fractions: list[float] | None = None) -> list[float]:
    """Increasing fractions f_1 < … < f_L = 1 of the units kept by each level."""
    if fractions is not None:
        fr = [float(f) for f in fractions]
        if len(fr) < 2 or any(not 0 < f <= 1 for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])) or fr[-1] != 1:
            raise RaveError(f"level fractions must be >= 2 increasing values in (0, 1] ending with 1, got {fr}")
        return fr
    L = int(num_levels)
    if L < 2:
        raise RaveError(f"need at least 2 levels, got {L}")
    if delta_rate is not None:
        if not delta_rate > 0:
            raise RaveError(f"the rate step must be > 0, got {delta_rate}")
        return [(1.0 + delta_rate) ** -(L - 1 - i) for i in range(L)]
    if not 0 < coarsest < 1:
        raise RaveError(f"the coarsest level fraction must be in (0, 1), got {coarsest}")
    return [math.exp(math.log(coarsest) * (L - 1 - i) / (L - 1)) for i in range(L)]


def level_sizes(n: int, fractions: list[float]) -> list[int]:
    """Strictly increasing unit counts |G_l| = round(f_l · n) (at least 1, at least one more than the level
    below), with |G_L| = n; RaveError when ``n`` is too small for that many levels."""
    L = len(fractions)
    if n < L:
        raise RaveError(f"{n} Gaussians cannot make {L} distinct levels")
    sizes = []
    for i, f in enumerate(fractions):
        s = max(1, int(round(f * n)), (sizes[-1] + 1) if sizes else 1)
        sizes.append(min(s, n - (L - 1 - i)))
    sizes[-1] = n
    if any(b <= a for a, b in zip(sizes, sizes[1:])):  # pragma: no cover - guarded by n >= L
        raise RaveError(f"cannot make {L} increasing levels from {n} Gaussians")
    return sizes


@dataclass
class Levels:
    """order: [N] int64 permutation, ``order[:sizes[l]]`` = G_{l+1}; sizes: |G_1| < … < |G_L| = N."""

    order: Tensor
    sizes: list[int]
    passes: int


def build_levels(units: UnitModel, cams: Cameras, sizes: list[int], *, method: str = "iterative",
                 progress: bool = True, **importance_kw) -> Levels:
    """Nested levels of ``units`` with the given ``sizes`` (see the module docstring)."""
    n = units.num_units
    if sizes[-1] != n:
        raise ValueError(f"the finest level must hold all {n} units, got {sizes[-1]}")
    if method == "oneshot":
        s = importance(units, cams, progress=progress, desc="levels (one-shot score)", **importance_kw)
        order = torch.sort(s, descending=True, stable=True).indices
        return Levels(order, list(sizes), 1)
    if method != "iterative":
        raise ValueError(f"unknown level method {method!r} (choose from {', '.join(METHODS)})")
    members = torch.arange(n)
    tail: list[Tensor] = []
    L = len(sizes)
    for li in range(L - 1, 0, -1):  # render G_{li+1} (0-based sizes[li]), keep the best sizes[li-1]
        s = importance(units, cams, subset=members, progress=progress,
                       desc=f"levels: score G_{li + 1} ({len(members)})", **importance_kw)
        ranked = members[torch.sort(s[members], descending=True, stable=True).indices]
        tail.insert(0, ranked[sizes[li - 1]:])
        members = ranked[: sizes[li - 1]]
    return Levels(torch.cat([members, *tail]), list(sizes), L - 1)
