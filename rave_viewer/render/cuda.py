"""gsplat 1.5.3's CUDA rasterization behind our render() signature (used only when CUDA is available)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..scene.gaussians import Gaussians


def render_gsplat(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int,
    backgrounds: Tensor,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> tuple[Tensor, Tensor, dict]:
    """Render with ``gsplat.rasterization`` (unpacked, so info["means2d"] is [C, N, 2] like the CPU backends)."""
    from gsplat import rasterization

    colors, alphas, meta = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,  # gsplat normalises
        scales=torch.exp(gaussians.scales),
        opacities=torch.sigmoid(gaussians.opacities),
        colors=gaussians.colors,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,
        backgrounds=backgrounds,
        render_mode="RGB",
        rasterize_mode="classic",
    )
    meta["backend"] = "gsplat"
    return colors, alphas, meta
