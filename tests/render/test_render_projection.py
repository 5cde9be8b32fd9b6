"""Projection and SH colour against gsplat 1.5.3's own pure-torch implementation, and gsplat's culling rules."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from rave_viewer.render.projection import ALPHA_THRESHOLD, project, quat_scale_to_covar
from rave_viewer.render.sh import sh_to_rgb


def test_projection_matches_gsplat_torch(make_scene, make_cameras):
    g = make_scene(3).map(lambda t: t.double())
    w, h = 70, 45
    vm, K = make_cameras(w, h)
    vm, K = vm.double(), K.double()
    scales, opac = torch.exp(g.scales), torch.sigmoid(g.opacities)
    covars = quat_scale_to_covar(g.quats, scales)
    ref_cov, _ = _quat_scale_to_covar_preci(g.quats, scales, compute_preci=False)
    assert torch.allclose(covars, ref_cov, atol=1e-12)

    ours = project(g.means, g.quats, scales, opac, vm, K, w, h)
    radii_g, means2d_g, depths_g, conics_g, _ = _fully_fused_projection(g.means, covars, vm, K, w, h)
    valid = (ours.radii > 0).all(-1)
    assert valid.sum() > 100
    assert torch.allclose(ours.means2d[valid], means2d_g[valid], rtol=1e-10, atol=1e-9)
    assert torch.allclose(ours.conics[valid], conics_g[valid], rtol=1e-10, atol=1e-12)
    assert torch.allclose(ours.depths[valid], depths_g[valid])
    # gsplat 1.5.3's CUDA radii: 3.33 sigma tightened by opacity, per axis
    extend = torch.sqrt(2 * torch.log(opac / ALPHA_THRESHOLD)).clamp(max=3.33)
    a = 1 / (ours.conics[..., 0] - ours.conics[..., 1] ** 2 / ours.conics[..., 2])  # = cov2d[0,0] + eps2d
    expect_rx = torch.ceil(extend * a.sqrt())
    assert torch.equal(ours.radii[..., 0][valid].double(), expect_rx[valid])
    # everything our culling keeps, gsplat's torch projection keeps too (its radii are looser)
    assert ((radii_g > 0).all(-1) | ~valid).all()
    # culled entries are zero
    assert (ours.means2d[~valid] == 0).all() and (ours.conics[~valid] == 0).all()


def test_culling_near_far_offscreen_and_faint():
    # visible, behind, closer than near, beyond far, off-screen, too faint
    means = torch.tensor([[0, 0, 2.0], [0, 0, -2.0], [0, 0, 0.005], [0, 0, 50.0], [30.0, 0, 2.0], [0, 0, 3.0]])
    quats, scales = torch.tensor([[1.0, 0, 0, 0]]).expand(6, 4), torch.full((6, 3), 0.1)
    opac = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.003])
    vm = torch.eye(4)[None]
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]])
    p = project(means, quats, scales, opac, vm, K, 64, 64, near_plane=0.01, far_plane=10.0)
    visible = (p.radii[0] > 0).all(-1).tolist()
    assert visible == [True, False, False, False, False, False]
    assert torch.allclose(p.means2d[0, 0], torch.tensor([32.0, 32.0]))
    assert torch.isfinite(p.means2d).all() and torch.isfinite(p.conics).all()


def test_tan_fov_clamp_keeps_gradients_finite():
    """A Gaussian far outside the view but close to the camera: the Jacobian uses the clamped direction."""
    means = torch.tensor([[3.0, 0.0, 0.05]], requires_grad=True)
    quats, scales = torch.tensor([[0.9, 0.1, 0.2, 0.3]]), torch.tensor([[2.0, 1.0, 0.5]])
    K = torch.tensor([[[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]])
    p = project(means, quats, scales, torch.tensor([0.9]), torch.eye(4)[None], K, 64, 64)
    assert (p.radii > 0).all()  # huge on screen, reaches into the image
    (p.conics.sum() + p.means2d.sum()).backward()
    assert torch.isfinite(means.grad).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat_torch(degree):
    gen = torch.Generator().manual_seed(degree)
    n = 50
    coeffs = torch.randn(n, 16, 3, generator=gen, dtype=torch.float64)
    means = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    campos = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 3
    ours = sh_to_rgb(coeffs, means, campos, degree)
    dirs = means[None] - campos[:, None]
    ref = _spherical_harmonics(degree, dirs, coeffs[None].expand(2, -1, -1, -1))
    assert torch.allclose(ours, torch.clamp_min(ref + 0.5, 0.0), atol=1e-12)


def test_lower_sh_degree_ignores_higher_bands():
    coeffs = torch.randn(10, 16, 3)
    means, campos = torch.randn(10, 3), torch.randn(1, 3)
    a = sh_to_rgb(coeffs, means, campos, 1)
    coeffs[:, 4:] = 123.0
    assert torch.equal(a, sh_to_rgb(coeffs, means, campos, 1))
    assert math.isclose(sh_to_rgb(torch.zeros(1, 1, 3), means[:1], campos, 0)[0, 0, 0].item(), 0.5)
