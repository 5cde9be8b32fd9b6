"""PSNR / SSIM / training loss: known values, agreement with a direct SSIM implementation, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rave_viewer import metrics


def _reference_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of Wang et al. (2004) written out: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
    data range 1, 'valid' 2D convolution, mean over the map and the channels. a, b: [H, W, C] -> scalar."""
    a, b = a.double().permute(2, 0, 1)[:, None], b.double().permute(2, 0, 1)[:, None]  # [C, 1, H, W]
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    w = torch.outer(g, g)
    w = (w / w.sum())[None, None]

    def blur(t):
        return F.conv2d(t, w)  # no padding

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return m.mean()


def _images(n: int, h: int = 32, w: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of structured images in [0, 1]: smooth gradients + texture, and a noisy, shifted version."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(12 * xx + 7 * yy)], -1)
    a = (base + 0.2 * torch.rand(n, h, w, 3, generator=g)).clamp(0, 1)
    b = (a.roll(1, dims=2) * 0.9 + 0.1 * torch.rand(n, h, w, 3, generator=g)).clamp(0, 1)
    return a, b


def test_psnr_known_mse_and_shape():
    a = torch.zeros(2, 3, 16, 16, 3)
    b = torch.full_like(a, 0.1)  # MSE 0.01 -> 20 dB
    p = metrics.psnr(a, b)
    assert p.shape == (2, 3)
    torch.testing.assert_close(p, torch.full((2, 3), 20.0), atol=1e-4, rtol=0)
    b[1, 2] = 0.5  # MSE 0.25 -> 6.0206 dB, only that image
    p = metrics.psnr(a, b)
    assert p[1, 2].item() == pytest.approx(-10 * math.log10(0.25), abs=1e-4) and p[0, 0].item() == pytest.approx(20.0)
    assert metrics.psnr(a[0, 0], b[0, 0]).shape == ()


def test_psnr_identical_is_capped_at_100db():
    a = torch.rand(2, 12, 12, 3)
    p = metrics.psnr(a, a.clone())
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.full((2,), 100.0))
    assert metrics.MAX_PSNR_DB == pytest.approx(100.0)


def test_ssim_matches_direct_implementation():
    a, b = _images(3)
    s = metrics.ssim(a, b)
    assert s.shape == (3,)
    ref = torch.stack([_reference_ssim(a[i], b[i]) for i in range(3)])
    assert 0.1 < ref.min() and ref.max() < 0.95  # a meaningful, non-trivial comparison
    torch.testing.assert_close(s.double(), ref, atol=1e-5, rtol=0)  # float32 inputs
    torch.testing.assert_close(metrics.ssim(a.double(), b.double()), ref, atol=1e-10, rtol=0)


def test_ssim_identical_is_one_and_leading_dims_kept():
    a, _ = _images(4)
    a = a.reshape(2, 2, *a.shape[1:])
    s = metrics.ssim(a, a.clone())
    assert s.shape == (2, 2)
    torch.testing.assert_close(s, torch.ones(2, 2), atol=1e-6, rtol=0)
    assert metrics.ssim(a[0, 0], a[0, 0]).shape == ()


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError):
        metrics.ssim(torch.rand(10, 10, 3), torch.rand(10, 10, 3))  # smaller than the 11x11 window
    with pytest.raises(ValueError):
        metrics.ssim(torch.rand(16, 16, 3), torch.rand(16, 17, 3))
    with pytest.raises(ValueError):
        metrics.psnr(torch.rand(16, 16, 3), torch.rand(2, 16, 16, 3))


def test_rendering_loss_value_and_gradient():
    a, b = _images(2, h=14, w=13, seed=1)
    a, b = a.double(), b.double()
    loss = metrics.rendering_loss(a, b)
    ref_ssim = torch.stack([_reference_ssim(a[i], b[i]) for i in range(2)]).mean()
    expected = 0.8 * (a - b).abs().mean() + 0.2 * (1 - ref_ssim)
    torch.testing.assert_close(loss, expected, atol=1e-10, rtol=0)
    assert metrics.rendering_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert metrics.rendering_loss(a, b, lam=0.0).item() == pytest.approx((a - b).abs().mean().item())
    x = a[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: metrics.rendering_loss(t, b[:1]), (x,), fast_mode=True)
    # A gradient step reduces the loss.
    x = (b + 0.1).clamp(0, 1).requires_grad_(True)
    l0 = metrics.rendering_loss(x, b)
    l0.backward()
    with torch.no_grad():
        l1 = metrics.rendering_loss(x - 0.5 * x.grad / x.grad.norm(), b)
    assert l1 < l0


def test_mean_helper():
    assert metrics.mean(torch.tensor([20.0, 30.0])) == pytest.approx(25.0)
    assert metrics.mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        metrics.mean([])
