"""The unit RAVE scores, ranks and selects, behind one small interface (3DGS Gaussians now, Scaffold-GS anchors later).

Everything in ``rave/`` (importance, levels, fine-tuning, ranking) talks to a :class:`UnitModel`: a set of
``num_units`` units whose parameters have the unit index as leading dimension and that renders any subset of
its units. :class:`GaussianUnits` implements it for standard 3DGS, where a unit is one Gaussian.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from ..scene.gaussians import FIELDS, Gaussians

@runtime_checkable
class UnitModel(Protocol):
    """What the RAVE core needs from a model: per-unit parameters, subset rendering, per-unit scores."""

    @property
    def num_units(self) -> int: ...

    def params(self) -> dict[str, Tensor]:
        """Parameter tensors, each with leading dimension ``num_units``."""
        ...

    def render(self, cams: Cameras, subset=None, *, params: dict[str, Tensor] | None = None,
               transform: Callable | None = None) -> Tensor:
        """Images [C, H, W, 3] of the units in ``subset`` only, from ``params`` (default: own parameters).

        ``subset``: None (all units), an int k (the first k units) or an index tensor (LongTensor [M] or
        bool [N]); units outside it get exactly zero gradient."""
        ...

    def unit_scores(self, grads: dict[str, Tensor | None]) -> Tensor:
        """[num_units] L2 norm over each unit's gradient entries (missing/None gradients count as 0)."""
        ...

    def select(self, index: Tensor) -> "UnitModel":
        """The model made of the units at ``index`` (LongTensor [M], in that order)."""
        ...

    def blending_weight(self, cams: Cameras, subset=None, *, transform: Callable | None = None, batch: int = 1,
                        progress: bool = True, desc: str = "blending weight") -> Tensor:
        """[num_units] float64: the summed blending weight each unit paints over ``cams`` (units outside
        ``subset``: 0), the self-distillation score where the loss gradient vanishes (importance.py)."""
        ...

    def with_params(self, params: dict[str, Tensor]) -> "UnitModel":
        """The same kind of model with replaced parameters (same leading dimension)."""
        ...


class GaussianUnits:
    """Standard 3DGS: one unit = one Gaussian; rendering goes through :func:`rave_viewer.render.render`.

    ``renders`` counts rendered views (a forward, plus its backward when one follows), for build statistics;
    the count is shared with every model derived by :meth:`select` / :meth:`with_params`.
    """

    def __init__(self, gaussians: Gaussians, *, backend: str = "auto", background: Tensor | None = None,
                 sh_degree: int | None = None, _counter: list[int] | None = None):
        self.gaussians = gaussians
        self.backend = backend
        self.background = None if background is None else torch.as_tensor(background, dtype=torch.float32)
        self.sh_degree = sh_degree
        self._counter = _counter if _counter is not None else [0]

    @property
    def renders(self) -> int:
        return self._counter[0]

    @property
    def num_units(self) -> int:
        return len(self.gaussians)

    def params(self) -> dict[str, Tensor]:
        return self.gaussians.as_dict()

    def _gaussians(self, subset, params: dict[str, Tensor] | None) -> Gaussians:
        g = self.gaussians if params is None else Gaussians.from_dict(params)
        if subset is None:
            return g
        if isinstance(subset, int):
            return g.prefix(subset)
        return g.subset(subset)

    def render(self, cams: Cameras, subset=None, *, params: dict[str, Tensor] | None = None,
               transform: Callable[[Gaussians], Gaussians] | None = None) -> Tensor:
        """[C, H, W, 3] images of the subset (differentiable w.r.t. ``params``); ``transform`` is applied to the
        selected Gaussians first (e.g. the codec's straight-through quantizer)."""
        from ..render import render

        g = self._gaussians(subset, params)
        if transform is not None:
            g = transform(g)
        bg = None
        if self.background is not None:
            bg = self.background.to(g.means.device).reshape(1, 3).expand(len(cams), 3)
        self._counter[0] += len(cams)
        img, _, _ = render(g, cams.viewmats, cams.Ks, cams.width, cams.height, sh_degree=self.sh_degree,
                           backgrounds=bg, backend=self.backend)
        return img

    def unit_scores(self, grads: dict[str, Tensor | None]) -> Tensor:
        total = torch.zeros(self.num_units, dtype=torch.float64, device=self.gaussians.device)
        for name, g in grads.items():
            if g is None:
                continue
            total += g.detach().reshape(self.num_units, -1).double().square().sum(dim=1)
        return total.sqrt()

    def blending_weight(self, cams: Cameras, subset=None, *, transform: Callable | None = None, batch: int = 1,
                        progress: bool = True, desc: str = "blending weight") -> Tensor:
        """sum over views and pixels of alpha_i T_i: the render with SH DC = 0 and higher SH = 0 (colour 0.5, no
        clamp) is linear in c_i with that coefficient, so the SH DC gradient of the image sum divided by SH_C0
        and the 3 channels is the weight (importance.py's module docstring)."""
        from tqdm.auto import tqdm

        from ..render.sh import SH_C0

        leaves = {k: v.detach() for k, v in self.params().items()}
        dc = torch.zeros_like(leaves["sh0"]).requires_grad_(True)
        leaves["sh0"] = dc
        leaves["shN"] = torch.zeros_like(leaves["shN"])
        score = torch.zeros(self.num_units, dtype=torch.float64)
        n, batch = len(cams), max(1, int(batch))
        with tqdm(total=n, desc=desc, unit="view", disable=not progress, leave=False) as bar:
            for s in range(0, n, batch):
                c = cams[list(range(s, min(s + batch, n)))]
                img = self.render(c, subset, params=leaves, transform=transform)
                (g,) = torch.autograd.grad(img.sum(), [dc], allow_unused=True)
                if g is not None:
                    score += g.detach().double().sum(dim=(1, 2)).cpu() / (3.0 * SH_C0)
                bar.update(len(c))
        return score

    def select(self, index: Tensor) -> "GaussianUnits":
        return self._like(self.gaussians.subset(index))

    def with_params(self, params: dict[str, Tensor]) -> "GaussianUnits":
        return self._like(Gaussians.from_dict({k: params[k] for k in FIELDS}))

    def _like(self, g: Gaussians) -> "GaussianUnits":
        return GaussianUnits(g, backend=self.backend, background=self.background, sh_degree=self.sh_degree,
                             _counter=self._counter)
