"""Scaffold-GS for the RAVE core: one unit = one anchor, behind the :class:`rave_viewer.rave.units.UnitModel` protocol.

``params()`` are the per-anchor tensors (``anchor``, ``offset``, ``anchor_feat``, ``scaling``); the MLPs are
shared by every anchor, frozen here (a copy with ``requires_grad`` off, so fine-tuning through the core moves
anchors only and scoring never touches MLP gradients) and travel with every derived model. Rendering a
subset decodes only its anchors (those each camera sees), so anchors outside it get exactly zero gradient.

Scores (the authors' code): ``unit_scores`` takes the L2 norm of each anchor's gradient over ``score_params``
only, by default the feature (``("anchor_feat",)``); ``None`` counts every parameter given (feature,
offsets, scaling, position). With :func:`rave_viewer.rave.importance.importance`'s default ``norm_of_sum``
this is the norm of the gradient summed over the training views, as the authors compute it.

``transform`` (quantization-aware training) receives and returns the selected anchors' parameter dict,
before decoding: :func:`rave_viewer.scaffold.qat.fake_quantize_anchors` with the stream's fixed grid does what
the authors do (8-bit features, fp16 positions/offsets/scalings, straight-through).

Not covered by the protocol: the shared MLPs cannot be fine-tuned by ``rave.finetune`` (``params()`` holds
per-unit tensors only). The self-distillation score (``full_model_score="blend"``) is the accumulated blending
weight of each anchor's neural Gaussians (:meth:`ScaffoldUnits.blending_weight`).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor

from ..scene.cameras import Cameras
from .model import ANCHOR_FIELDS, ScaffoldMLPs, ScaffoldModel, render_views

SCORE_DEFAULT = ("anchor_feat",)


class ScaffoldUnits:
    """A :class:`ScaffoldModel` as RAVE units; ``renders`` counts rendered views (shared by derived models)."""

    def __init__(self, model: ScaffoldModel, *, backend: str = "auto", background: Tensor | None = None,
                 score_params: tuple[str, ...] | None = SCORE_DEFAULT, cull: bool = True,
                 _mlps: ScaffoldMLPs | None = None, _counter: list[int] | None = None):
        unknown = [p for p in (score_params or ()) if p not in ANCHOR_FIELDS]
        if unknown:
            raise ValueError(f"unknown anchor parameters {unknown} (choose from {', '.join(ANCHOR_FIELDS)})")
        self.spec = model.spec
        self.anchors = dict(model.params)
        if _mlps is None:
            _mlps = copy.deepcopy(model.mlps).requires_grad_(False)
        self.mlps = _mlps
        self.backend = backend
        self.background = None if background is None else torch.as_tensor(background, dtype=torch.float32)
        self.score_params = None if score_params is None else tuple(score_params)
        self.cull = cull
        self._counter = _counter if _counter is not None else [0]

    @property
    def renders(self) -> int:
        return self._counter[0]

    @property
    def num_units(self) -> int:
        return int(self.anchors["anchor"].shape[0])

    def params(self) -> dict[str, Tensor]:
        return dict(self.anchors)

    def model(self) -> ScaffoldModel:
        """The anchors and (frozen) MLPs as a :class:`ScaffoldModel` (e.g. to save after fine-tuning)."""
        return ScaffoldModel(self.spec, self.anchors, self.mlps)

    @staticmethod
    def _pick(p: dict[str, Tensor], subset) -> dict[str, Tensor]:
        if subset is None:
            return p
        if isinstance(subset, int):
            return {k: v[:subset] for k, v in p.items()}
        return {k: v[subset] for k, v in p.items()}

    def render(self, cams: Cameras, subset=None, *, params: dict[str, Tensor] | None = None,
               transform: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None) -> Tensor:
        """[C, H, W, 3] images of the anchors in ``subset`` (None, int k = first k, LongTensor or bool [N])."""
        p = self._pick(self.anchors if params is None else {k: params[k] for k in ANCHOR_FIELDS}, subset)
        if transform is not None:
            p = transform(p)
        self._counter[0] += len(cams)
        return render_views(p, self.mlps, self.spec, cams, backend=self.backend, background=self.background,
                            cull=self.cull)[0]

    def unit_scores(self, grads: dict[str, Tensor | None]) -> Tensor:
        """[num_units] L2 norm of each anchor's gradient entries over ``score_params`` (None: all given)."""
        total = torch.zeros(self.num_units, dtype=torch.float64, device=self.anchors["anchor"].device)
        for name, g in grads.items():
            if g is None or (self.score_params is not None and name not in self.score_params):
                continue
            total += g.detach().reshape(self.num_units, -1).double().square().sum(dim=1)
        return total.sqrt()

    def blending_weight(self, cams: Cameras, subset=None, *, transform: Callable | None = None, batch: int = 1,
                        progress: bool = True, desc: str = "blending weight") -> Tensor:
        """[num_units] float64: per anchor, the blending weight its neural Gaussians paint, summed over
        ``cams`` and pixels (anchors outside ``subset``: 0), the anchor analogue of a Gaussian's alpha_i T_i
        (rave/importance.py). Each view's neural Gaussians are decoded as usual and rendered with colour 0.5
        (SH DC = 0): the image is linear in each colour with coefficient alpha_ij T_ij, so the DC gradient of the
        image sum over SH_C0 and the 3 channels is that weight; it is summed into the Gaussians' anchors."""
        from tqdm.auto import tqdm

        from ..render import render
        from ..render.sh import SH_C0
        from ..scene.gaussians import Gaussians
        from .model import decode_for_camera

        n = self.num_units
        index = self._pick({"i": torch.arange(n)}, subset)["i"]  # global index of each rendered anchor
        with torch.no_grad():
            p = self._pick({k: v.detach() for k, v in self.anchors.items()}, subset)
            if transform is not None:
                p = {k: v.detach() for k, v in transform(p).items()}
        score = torch.zeros(n, dtype=torch.float64)
        k, device = self.spec.n_offsets, p["anchor"].device
        bg = None if self.background is None else self.background.to(device).reshape(1, 3)
        for c in tqdm(range(len(cams)), desc=desc, unit="view", disable=not progress, leave=False):
            vm, K = cams.viewmats[c].to(device), cams.Ks[c].to(device)
            with torch.no_grad():
                ng = decode_for_camera(p, self.mlps, self.spec, vm, K, cams.width, cams.height, cull=self.cull)
            g = ng.gaussians
            dc = torch.zeros_like(g.sh0).requires_grad_(True)
            g = Gaussians(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities, sh0=dc, shN=g.shN)
            self._counter[0] += 1
            img, _, _ = render(g, vm[None], K[None], cams.width, cams.height, backgrounds=bg, backend=self.backend)
            (gr,) = torch.autograd.grad(img.sum(), [dc], allow_unused=True)
            if gr is None or len(g) == 0:
                continue
            owner = ng.anchors.repeat_interleave(k)[ng.mask].cpu()  # local anchor index of each kept Gaussian
            score.index_add_(0, index[owner], gr.detach().double().sum(dim=(1, 2)).cpu() / (3.0 * SH_C0))
        return score

    def select(self, index: Tensor) -> "ScaffoldUnits":
        return self._like({k: v[index] for k, v in self.anchors.items()})

    def with_params(self, params: dict[str, Tensor]) -> "ScaffoldUnits":
        return self._like({k: params[k] for k in ANCHOR_FIELDS})

    def _like(self, anchors: dict[str, Tensor]) -> "ScaffoldUnits":
        return ScaffoldUnits(ScaffoldModel(self.spec, anchors, self.mlps), backend=self.backend,
                             background=self.background, score_params=self.score_params, cull=self.cull,
                             _mlps=self.mlps, _counter=self._counter)
