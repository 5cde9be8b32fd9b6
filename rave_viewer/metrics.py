"""Image quality metrics (PSNR, SSIM) and the 3DGS training loss, shared by training, RAVE and evaluation.

Conventions: images are channels-last tensors ``[..., H, W, 3]`` with values in [0, 1]; per-image metrics
return a tensor with the leading shape ``[...]``. A dataset score is the mean of the per-image scores
(the 3DGS / gsplat evaluation convention), see :func:`mean`.

SSIM is ``pytorch_msssim.ssim`` with the standard window of Wang et al. (11x11 Gaussian, sigma 1.5,
K1 = 0.01, K2 = 0.03, data range 1) and 'valid' filtering (no padding: the SSIM map only covers
positions where the whole window fits). That equals torchmetrics' SSIM used by gsplat's evaluation and
gsplat's ``fused_ssim(..., padding="valid")`` in training; the original 3DGS code zero-pads ('same'),
which gives slightly lower values near the borders.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from pytorch_msssim import ssim as _ms_ssim
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# MSE floor: identical images give 10 * log10(1 / 1e-10) = 100 dB instead of +inf.
MSE_FLOOR = 1e-10
MAX_PSNR_DB = -10.0 * math.log10(MSE_FLOOR)


def _gaussian_window() -> Tensor:
    """[1, 1, 1, 11] normalised 1D Gaussian (sigma 1.5) in float64; pytorch_msssim's own is float32, whose
    rounding shows up as ~1e-6 SSIM differences for float64 inputs."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2.0 * SSIM_SIGMA**2))
    return (g / g.sum()).reshape(1, 1, 1, -1)


_WINDOW = _gaussian_window()


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 3:
        raise ValueError(f"expected images [..., H, W, C], got shape {tuple(a.shape)}")


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-image mean squared error: a, b [..., H, W, C] -> [...]."""
    _check_pair(a, b)
    return (a - b).square().mean(dim=(-3, -2, -1))


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB for data range 1: a, b [..., H, W, C] in [0, 1] -> [...].

    The MSE is clamped at ``MSE_FLOOR`` (1e-10), so identical images give 100 dB, never inf.
    """
    return -10.0 * torch.log10(mse(a, b).clamp_min(MSE_FLOOR))


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM (11x11 Gaussian window, sigma 1.5, valid filtering): a, b [..., H, W, C] -> [...].

    Differentiable. Each image must be at least 11x11 pixels; channels are averaged.
    """
    _check_pair(a, b)
    *lead, h, w, c = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    x = a.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    y = b.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    if x.dtype not in (torch.float32, torch.float64):
        x, y = x.float(), y.float()
    s = _ms_ssim(x, y, data_range=1.0, size_average=False, win=_WINDOW.to(x.device, x.dtype).repeat(c, 1, 1, 1))
    return s.reshape(lead)


def rendering_loss(render: Tensor, gt: Tensor, lam: float = 0.2) -> Tensor:
    """The 3DGS training loss ``(1 - lam) * L1 + lam * (1 - SSIM)`` as a scalar (means over all images).

    render, gt: [..., H, W, 3] in [0, 1]; differentiable w.r.t. both.
    """
    _check_pair(render, gt)
    l1 = (render - gt).abs().mean()
    return (1.0 - lam) * l1 + lam * (1.0 - ssim(render, gt).mean())


def mean(values: Tensor | Iterable[float]) -> float:
    """Dataset-level score: the plain mean of per-image scores (e.g. PSNR in dB averaged over views)."""
    t = values.detach() if isinstance(values, Tensor) else torch.tensor(list(values))
    if t.numel() == 0:
        raise ValueError("mean of no values")
    return float(t.double().mean())
