"""Scaffold-GS (Lu et al., CVPR 2024): anchors with features decode view-dependent neural Gaussians through MLPs.

Each anchor i holds a position x_i [3], a feature f_i [F] (F = 32), k learnable offsets O_i [k, 3] (k = 10) and a
log-scaling l_i [6] (3 for the offsets, 3 for the neural Gaussians' scales). For a camera at c, with the
viewing direction d_i = (x_i - c) / |x_i - c| and distance delta_i = |x_i - c|, three small MLPs (one hidden
layer of F units, ReLU) decode the anchor's k neural Gaussians:

* opacity: alpha_ij = tanh(MLP_a(f_i, d_i[, delta_i]))_j; neural Gaussians with alpha_ij <= 0 are dropped
  (the authors' opacity-threshold mask);
* colour: rgb_ij = sigmoid(MLP_c(f_i, d_i[, delta_i]))_j;
* covariance: (s_ij, q_ij) = MLP_s(...)_j; scale = exp(l_i[3:]) * sigmoid(s_ij), rotation = normalize(q_ij);
* position: mu_ij = x_i + O_ij * exp(l_i[:3]).

The distance enters each MLP only when the spec says so (the authors' ``add_*_dist``, off by default in their
code). Their per-camera appearance embedding and multi-resolution feature bank are not implemented (both are
off for the RAVE setting: a test view has no embedding of its own). The decoded Gaussians go through our one
:func:`rave_viewer.render.render` as a standard :class:`~rave_viewer.scene.gaussians.Gaussians` set of SH
degree 0, in its raw parameterisation, exactly: DC = (rgb - 0.5) / SH_C0, log-scale = l_i[3:] +
logsigmoid(s_ij), and logit-opacity = logit(tanh(a)) = log(e^{2a} - 1) - log 2 computed stably, so sigmoid
gives back alpha_ij and no clamp cuts the gradient.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..codec.anchors import ANCHOR_FIELDS  # per-anchor parameters, in file and optimiser order (one copy)
from ..errors import RaveError
from ..render.sh import SH_C0
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians

MLP_NAMES = ("mlp_opacity", "mlp_cov", "mlp_color")
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class ScaffoldSpec:
    """The architecture: feature size, offsets per anchor, voxel size, and which MLPs see the distance."""

    feat_dim: int = 32
    n_offsets: int = 10
    voxel_size: float = 0.01
    opacity_dist: bool = False
    cov_dist: bool = False
    color_dist: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def mlp_inputs(self, name: str) -> int:
        """Input width of MLP ``name``: F + 3 (direction) + 1 when it sees the distance."""
        dist = {"mlp_opacity": self.opacity_dist, "mlp_cov": self.cov_dist, "mlp_color": self.color_dist}[name]
        return self.feat_dim + 3 + int(dist)

    def mlp_outputs(self, name: str) -> int:
        return self.n_offsets * {"mlp_opacity": 1, "mlp_cov": 7, "mlp_color": 3}[name]


def _mlp(n_in: int, hidden: int, n_out: int, act: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class ScaffoldMLPs(nn.Module):
    """The three decoders shared by every anchor (state-dict keys ``mlp_*.{0,2}.{weight,bias}``)."""

    def __init__(self, spec: ScaffoldSpec):
        super().__init__()
        h = spec.feat_dim
        self.mlp_opacity = _mlp(spec.mlp_inputs("mlp_opacity"), h, spec.mlp_outputs("mlp_opacity"), nn.Tanh())
        self.mlp_cov = _mlp(spec.mlp_inputs("mlp_cov"), h, spec.mlp_outputs("mlp_cov"), None)
        self.mlp_color = _mlp(spec.mlp_inputs("mlp_color"), h, spec.mlp_outputs("mlp_color"), nn.Sigmoid())


@dataclass
class NeuralGaussians:
    """One view's decoded Gaussians and what training statistics need.

    Attributes:
        gaussians: the kept neural Gaussians [M] (SH degree 0), raw parameters for :func:`render`.
        anchors: [V] int64 indices of the decoded (visible) anchors.
        mask: [V * k] bool, which of their neural Gaussians were kept (opacity > 0); row-major (anchor, offset).
        opacity: [V * k] tanh opacities before masking.
        scales: [M, 3] activated scales of the kept Gaussians (for the volume regulariser).
    """

    gaussians: Gaussians
    anchors: Tensor
    mask: Tensor
    opacity: Tensor
    scales: Tensor

    def owners(self) -> Tensor:
        """[M] int64: the index (into the decoded ``params``) of the anchor each kept neural Gaussian came from;
        non-decreasing when ``anchors`` is (as :func:`decode_for_camera` returns them)."""
        k = self.mask.numel() // max(self.anchors.numel(), 1)
        return self.anchors.repeat_interleave(k)[self.mask]


def logit_of_tanh(a: Tensor) -> Tensor:
    """logit(tanh(a)) for a > 0, stably: with y = 2a, log(e^y - 1) - log 2 = y + log(-expm1(-y)) - log 2."""
    y = 2.0 * a
    return y + torch.log(-torch.expm1(-y)) - _LOG2


def visible_anchors(anchor: Tensor, scaling: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                    near: float = 0.01) -> Tensor:
    """[N] bool: anchors whose 3-sigma sphere (sigma = largest offset scale) reaches the image (a frustum test
    standing in for the authors' ``prefilter_voxel``). anchor [N, 3], scaling [N, 6] log, viewmat [4, 4], K [3, 3]."""
    with torch.no_grad():
        R, t = viewmat[:3, :3].to(anchor), viewmat[:3, 3].to(anchor)
        pc = anchor @ R.T + t
        z = pc[:, 2]
        zs = z.clamp_min(near)
        r = 3.0 * torch.exp(scaling[:, :3]).amax(dim=1) * float(max(K[0, 0], K[1, 1])) / zs
        u = K[0, 0] * pc[:, 0] / zs + K[0, 2]
        v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
        return (z > near) & (u + r > 0) & (u - r < width) & (v + r > 0) & (v - r < height)


def decode(params: dict[str, Tensor], mlps: ScaffoldMLPs, spec: ScaffoldSpec, campos: Tensor,
           anchors: Tensor | None = None) -> NeuralGaussians:
    """The neural Gaussians of the anchors at index ``anchors`` (None: all) seen from ``campos`` [3].

    params: ``anchor`` [N, 3], ``offset`` [N, k, 3], ``anchor_feat`` [N, F], ``scaling`` [N, 6] (log).
    Differentiable w.r.t. every parameter and MLP weight.
    """
    k = spec.n_offsets
    n_all = params["anchor"].shape[0]
    idx = torch.arange(n_all, device=params["anchor"].device) if anchors is None else anchors
    x, off, feat, lsc = (params[f][idx] for f in ANCHOR_FIELDS)
    n = x.shape[0]
    view = x - campos.to(x)
    dist = view.norm(dim=1, keepdim=True)
    dirs = view / dist.clamp_min(1e-12)
    plain, with_dist = torch.cat([feat, dirs], dim=1), torch.cat([feat, dirs, dist], dim=1)
    pre = mlps.mlp_opacity[:-1](with_dist if spec.opacity_dist else plain).reshape(n * k)  # before tanh
    opacity = torch.tanh(pre)
    mask = opacity > 0.0
    color = mlps.mlp_color(with_dist if spec.color_dist else plain).reshape(n * k, 3)[mask]
    cov = mlps.mlp_cov(with_dist if spec.cov_dist else plain).reshape(n * k, 7)[mask]
    owner = torch.arange(n, device=x.device).repeat_interleave(k)[mask]
    lsc_m = lsc[owner]
    means = x[owner] + off.reshape(n * k, 3)[mask] * torch.exp(lsc_m[:, :3])
    log_scales = lsc_m[:, 3:] + F.logsigmoid(cov[:, :3])
    m = means.shape[0]
    g = Gaussians(
        means=means,
        quats=F.normalize(cov[:, 3:7], dim=-1),
        scales=log_scales,
        opacities=logit_of_tanh(pre[mask]),
        sh0=((color - 0.5) / SH_C0).reshape(m, 1, 3),
        shN=means.new_zeros(m, 0, 3),
    )
    return NeuralGaussians(g, idx, mask, opacity, torch.exp(log_scales))


class ScaffoldModel:
    """A Scaffold-GS scene: per-anchor tensors (``params``, :data:`ANCHOR_FIELDS`) and the shared MLPs."""

    def __init__(self, spec: ScaffoldSpec, params: dict[str, Tensor], mlps: ScaffoldMLPs):
        self.spec = spec
        self.params = {f: params[f] for f in ANCHOR_FIELDS}
        self.mlps = mlps

    def __len__(self) -> int:
        return int(self.params["anchor"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["anchor"].device

    def subset(self, index: Tensor) -> "ScaffoldModel":
        """The anchors at ``index`` (LongTensor [M] or bool [N]) with the same MLPs (shared, not copied)."""
        return ScaffoldModel(self.spec, {f: t[index] for f, t in self.params.items()}, self.mlps)

    def detached(self) -> "ScaffoldModel":
        """A float32 CPU copy with no autograd history and its own MLPs."""
        return ScaffoldModel(self.spec, {f: t.detach().to("cpu", torch.float32).clone() for f, t in self.params.items()},
                             copy.deepcopy(self.mlps).to("cpu").float())

    def mlp_tensors(self) -> dict[str, Tensor]:
        """The MLP weights as a flat ``{"mlp_opacity.0.weight": tensor, ...}`` mapping."""
        return {k: v for k, v in self.mlps.state_dict().items()}

    def num_neural(self) -> int:
        """k x anchors: the most neural Gaussians one view can decode."""
        return len(self) * self.spec.n_offsets

    @torch.no_grad()
    def to_gaussians(self, campos: Tensor) -> Gaussians:
        """Every anchor's neural Gaussians as decoded for a camera at ``campos`` [3], as one standard 3DGS set
        (SH degree 0, e.g. for a PLY). Exact for cameras at ``campos``; elsewhere an approximation: colours,
        opacities and shapes are frozen at that viewpoint instead of following the view."""
        return decode(self.params, self.mlps, self.spec, torch.as_tensor(campos, dtype=torch.float32)).gaussians

    @torch.no_grad()
    def decode_view(self, viewmat: Tensor, K: Tensor, width: int, height: int, *,
                    cull: bool = True) -> NeuralGaussians:
        """The neural Gaussians one camera (viewmat [4, 4], K [3, 3]) sees (no gradient)."""
        return decode_for_camera(self.params, self.mlps, self.spec, viewmat, K, width, height, cull=cull)

    def render(self, cams: Cameras, *, backend: str = "auto", background: Tensor | None = None,
               cull: bool = True) -> Tensor:
        """[C, H, W, 3] images (differentiable w.r.t. ``params`` and the MLPs)."""
        return render_views(self.params, self.mlps, self.spec, cams, backend=backend, background=background,
                            cull=cull)[0]


def decode_for_camera(params: dict[str, Tensor], mlps: ScaffoldMLPs, spec: ScaffoldSpec, viewmat: Tensor,
                      K: Tensor, width: int, height: int, *, cull: bool = True) -> NeuralGaussians:
    """:func:`decode` of the anchors the camera sees (all anchors when ``cull`` is False)."""
    campos = torch.linalg.inv(viewmat.double())[:3, 3].to(params["anchor"])
    idx = None
    if cull:
        vis = visible_anchors(params["anchor"], params["scaling"], viewmat, K, width, height)
        idx = vis.nonzero().squeeze(1)
    return decode(params, mlps, spec, campos, idx)


def render_views(params: dict[str, Tensor], mlps: ScaffoldMLPs, spec: ScaffoldSpec, cams: Cameras, *,
                 backend: str = "auto", background: Tensor | None = None,
                 cull: bool = True) -> tuple[Tensor, list[NeuralGaussians], list[dict]]:
    """Render each camera's own neural Gaussians through :func:`rave_viewer.render.render`.

    Returns images [C, H, W, 3], the decoded Gaussians per camera and render()'s info per camera.
    ``background``: [3] or None (black).
    """
    from ..render import render

    imgs, decoded, infos = [], [], []
    device = params["anchor"].device
    for c in range(len(cams)):
        vm, K = cams.viewmats[c].to(device), cams.Ks[c].to(device)
        ng = decode_for_camera(params, mlps, spec, vm, K, cams.width, cams.height, cull=cull)
        bg = None if background is None else background.to(device).reshape(1, 3)
        img, _, info = render(ng.gaussians, vm[None], K[None], cams.width, cams.height, backgrounds=bg,
                              backend=backend)
        imgs.append(img)
        decoded.append(ng)
        infos.append(info)
    if not imgs:
        raise RaveError("no cameras to render")
    return torch.cat(imgs), decoded, infos


def snapshot_gaussians(model: ScaffoldModel, *, view_distance: float | None = None,
                       camera: Tensor | None = None) -> tuple[Gaussians, float | None]:
    """One fixed set of neural Gaussians for all of ``model`` (e.g. a PLY), and the view distance used (None
    with ``camera``). Each anchor is decoded as seen from a virtual camera at ``view_distance`` outside it, on
    the line from the scene centre (median anchor position) through the anchor, looking back at the centre (as an
    orbiting capture sees it); the distance defaults to the median distance of the anchors to that centre.
    ``camera`` [3]: decode every anchor for one camera at that position instead (exact there). The same
    snapshot as ``rave decode`` writes (commands/decode.py, ``SNAPSHOT_HELP``)."""
    x = model.params["anchor"].detach().float()
    if camera is not None:
        campos, dist = torch.as_tensor(camera, dtype=torch.float32).reshape(3), None
    else:
        centre = x.median(dim=0).values
        r = (x - centre).norm(dim=1)
        dist = float(r.median()) if view_distance is None else float(view_distance)
        if not dist > 0:  # a single anchor, or all at the centre
            dist = 10.0 * float(model.spec.voxel_size)
        out = (x - centre) / r.clamp_min(1e-12)[:, None]
        out[r <= 1e-12] = torch.tensor([0.0, 0.0, 1.0])
        campos = x + dist * out  # [N, 3]: one virtual camera per anchor
    with torch.no_grad():
        return decode(model.params, model.mlps, model.spec, campos).gaussians, dist
