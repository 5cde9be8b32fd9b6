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


@pytest.mark.parametrize("degree,use", [(3, 3), (3, 1), (2, 2), (0, 0)])
def test_compiled_projection_and_sh_match_torch(make_scene, make_cameras, degree, use):
    """The cpu backend's fused C++ projection + SH (values and hand-written gradients) against autograd."""
    from rave_viewer.render import cpu
    from rave_viewer.render.projection import camera_centers

    g = make_scene(7, n=200, degree=degree)
    # off-axis Gaussians right in front of camera 0: their Jacobian uses the clamped (1.3x fov) direction
    off = torch.tensor([[1.2, -2.6, 0.5], [-1.5, -2.7, 0.9], [0.3, -2.8, -0.9]])
    g.means = torch.cat([g.means, off])
    g.quats = torch.cat([g.quats, torch.randn(3, 4, generator=torch.Generator().manual_seed(1))])
    g.scales = torch.cat([g.scales, torch.full((3, 3), -1.0)])
    g.opacities = torch.cat([g.opacities, torch.ones(3)])
    g.sh0, g.shN = torch.cat([g.sh0, g.sh0[:3]]), torch.cat([g.shN, g.shN[:3]])
    w, h = 70, 45
    vm, K = make_cameras(w, h)
    gen = torch.Generator().manual_seed(degree)
    wts = [torch.randn(len(vm), len(g), d, generator=gen, dtype=torch.float64) for d in (2, 3, 3)]

    def run(backend):
        dtype = torch.float64 if backend == "torch" else torch.float32
        p = g.map(lambda t: t.to(dtype).clone().requires_grad_(True))
        scales, opac = torch.exp(p.scales), torch.sigmoid(p.opacities)
        if backend == "torch":
            pr = project(p.means, p.quats, scales, opac, vm.double(), K.double(), w, h)
            out = (pr.means2d, pr.conics, sh_to_rgb(p.colors, p.means, camera_centers(vm.double()), use), pr.radii)
        else:
            args = (p.means, p.quats, scales, opac, p.sh0, p.shN, vm, K, w, h, 0.01, 1e10, 0.3, use)
            m2, con, col, _, radii = cpu.project(*args)
            out = (m2, con, col, radii)
        valid = (out[3] > 0).all(-1)[..., None]
        loss = sum((torch.where(valid, o, 0).double() * wt).sum() for o, wt in zip(out[:3], wts))
        loss.backward()
        return [o.detach().double() for o in out], {k: t.grad.double() for k, t in p.items() if k != "opacities"}

    (m2, con, col, radii), grads = run("cpu")
    (m2r, conr, colr, radiir), grads_r = run("torch")
    valid = (radii > 0).all(-1)
    assert torch.equal(valid, (radiir > 0).all(-1)) and valid[0, -3:].all()
    assert (radii - radiir).abs().max() <= 1  # ceil() at float precision
    assert torch.allclose(m2[valid], m2r[valid], rtol=1e-6, atol=1e-4)
    assert torch.allclose(con[valid], conr[valid], rtol=1e-5, atol=1e-7)
    assert torch.allclose(col[valid], colr[valid], atol=1e-6)
    for k in grads:
        if grads_r[k].norm() == 0:
            assert grads[k].norm() == 0, k
            continue
        rel = ((grads[k] - grads_r[k]).norm() / grads_r[k].norm()).item()
        assert rel <= 1e-5, (k, rel)
    if use < degree:  # unused SH bands get no gradient
        assert (grads["shN"][:, (use + 1) ** 2 - 1 :] == 0).all()
