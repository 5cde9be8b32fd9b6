"""View-dependent colour from spherical harmonics (degree 0-3) in torch, with gsplat's constants and conventions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.2820947917738781


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis values [..., (degree+1)^2] at unit directions [..., 3] (Sloan's fast evaluation, as gsplat)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        fc1, fs1 = x * x - y * y, 2 * x * y
        tmp_b = -1.092548430592079 * z
        out += [
            0.5462742152960395 * fs1,
            tmp_b * y,
            0.9461746957575601 * z2 - 0.3153915652525201,
            tmp_b * x,
            0.5462742152960395 * fc1,
        ]
    if degree >= 3:
        tmp_c = -2.285228997322329 * z2 + 0.4570457994644658
        tmp_b = 1.445305721320277 * z
        fc2, fs2 = x * fc1 - y * fs1, x * fs1 + y * fc1
        out += [
            -0.5900435899266435 * fs2,
            tmp_b * fs1,
            tmp_c * y,
            z * (1.865881662950577 * z2 - 1.119528997770346),
            tmp_c * x,
            tmp_b * fc1,
            -0.5900435899266435 * fc2,
        ]
    return torch.stack(out, dim=-1)


def sh_to_rgb(coeffs: Tensor, means: Tensor, campos: Tensor, degree: int) -> Tensor:
    """Per-camera RGB [C, N, 3] = clamp_min(SH(normalize(mean - campos)) + 0.5, 0).

    Args:
        coeffs: [N, K, 3] SH coefficients (DC first), K >= (degree+1)^2; only the first (degree+1)^2 are used.
        means: [N, 3] world positions.  campos: [C, 3] camera centres.
    """
    k = (degree + 1) ** 2
    if degree == 0:  # view-independent: no directions needed
        rgb = (SH_C0 * coeffs[:, 0, :]).expand(campos.shape[0], -1, -1)
    else:
        dirs = F.normalize(means[None, :, :] - campos[:, None, :], dim=-1)  # [C, N, 3]
        rgb = torch.einsum("cnk,nkd->cnd", sh_bases(degree, dirs), coeffs[:, :k, :])
    return torch.clamp_min(rgb + 0.5, 0.0)
