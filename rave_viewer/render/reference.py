"""Pure-torch dense compositing oracle (every pixel x every Gaussian) for tests and benchmarks; slow on purpose."""

from __future__ import annotations

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

ALPHA_MAX = 0.999  # gsplat 1.5.3 clamps alpha here
T_MIN = 1e-4  # a pixel stops before the Gaussian that would bring T to <= T_MIN


def composite_dense(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    backgrounds: Tensor,
    width: int,
    height: int,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of projected Gaussians, differentiable by autograd.

    Args:
        means2d: [C, N, 2], conics: [C, N, 3], colors: [C, N, 3], opacities: [C, N], depths: [C, N],
        radii: [C, N, 2] (Gaussians with a zero radius are skipped), backgrounds: [C, 3].
        chunk: Gaussians composited per step (default: about 2^24 pixel-Gaussian pairs per temporary).
    Returns:
        colors [C, H, W, 3], alphas [C, H, W, 1].
    """
    C = means2d.shape[0]
    dtype, device = means2d.dtype, means2d.device
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [P, 1]
    chunk = chunk or max(16, 2**24 // px.shape[0])
    images, alphas = [], []
    for c in range(C):
        ids = torch.nonzero((radii[c] > 0).all(dim=-1)).squeeze(1)
        ids = ids[torch.sort(depths[c, ids], stable=True).indices]  # front to back, ties by index
        T = torch.ones(px.shape[0], dtype=dtype, device=device)
        alive = torch.ones(px.shape[0], dtype=torch.bool, device=device)
        rgb = torch.zeros(px.shape[0], 3, dtype=dtype, device=device)
        for s in range(0, len(ids), chunk):
            g = ids[s : s + chunk]
            dx = means2d[c, g, 0][None, :] - px  # [P, K]
            dy = means2d[c, g, 1][None, :] - py
            a, b, cc = conics[c, g].unbind(-1)
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            # exp(-80) is ~1e-35: far below the alpha threshold, and it keeps exp out of slow denormals
            alpha = torch.clamp(opacities[c, g][None, :] * torch.exp(-sigma.clamp(max=80.0)), max=ALPHA_MAX)
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
            with torch.no_grad():  # the stop rule is a hard, sticky cut
                keep = alive[:, None] & (T[:, None] * torch.cumprod(1 - alpha, dim=1) > T_MIN)
                alive = keep[:, -1]
            alpha = alpha * keep
            trans = torch.cumprod(1 - alpha, dim=1)
            t_excl = T[:, None] * torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
            rgb = rgb + (alpha * t_excl) @ colors[c, g]
            T = T * trans[:, -1]
        images.append((rgb + T[:, None] * backgrounds[c]).reshape(height, width, 3))
        alphas.append((1 - T).reshape(height, width, 1))
    return torch.stack(images), torch.stack(alphas)
