"""The compiled CPU rasterizer against the dense torch oracle: images, alphas and every parameter's gradient."""

import pytest
import torch

from rave_viewer.render import render
from rave_viewer.scene.gaussians import Gaussians

PARAMS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def _render_with_grads(g, vm, K, w, h, backend, bg, weights):
    g = g.map(lambda t: t.detach().clone().requires_grad_(True))
    img, alpha, info = render(g, vm, K, w, h, backend=backend, backgrounds=bg)
    loss = (img * weights[0].to(img.dtype)).sum() + (alpha * weights[1].to(img.dtype)).sum()
    loss.backward()
    return img.detach(), alpha.detach(), {k: t.grad for k, t in g.items()}, info


@pytest.mark.parametrize("seed,size", [(0, (64, 48)), (1, (70, 45)), (2, (33, 80))])
def test_forward_and_gradients_match_oracle(make_scene, make_cameras, seed, size):
    w, h = size
    g = make_scene(seed)
    vm, K = make_cameras(w, h)
    C = len(vm)
    gen = torch.Generator().manual_seed(seed)
    bg = torch.rand(C, 3, generator=gen)
    weights = (torch.rand(C, h, w, 3, generator=gen) - 0.3, torch.rand(C, h, w, 1, generator=gen) - 0.5)

    img, alpha, grads, info = _render_with_grads(g, vm, K, w, h, "cpu", bg, weights)
    g64 = g.map(lambda t: t.double())
    img_r, alpha_r, grads_r, _ = _render_with_grads(
        g64, vm.double(), K.double(), w, h, "reference", bg.double(), weights
    )

    assert img.dtype == torch.float32 and img.shape == (C, h, w, 3) and alpha.shape == (C, h, w, 1)
    assert (img.double() - img_r).abs().max().item() <= 1e-4
    assert (alpha.double() - alpha_r).abs().max().item() <= 1e-4
    # the view looking away from the scene is pure background
    assert torch.equal(img[-1], bg[-1].expand(h, w, 3)) and torch.equal(alpha[-1], torch.zeros(h, w, 1))
    # the awkward Gaussians: behind camera 0 and closer than its near plane are culled, the huge one is drawn
    radii = info["radii"]
    n = len(g) - 7
    assert (radii[0, [n, n + 1, n + 5]] == 0).all()
    assert (radii[:3, n + 2] > max(w, h)).all()
    for k in PARAMS:
        rel = ((grads[k].double() - grads_r[k]).norm() / grads_r[k].norm()).item()
        assert rel <= 1e-3, (k, rel)


def test_empty_scene_renders_background(make_cameras):
    vm, K = make_cameras(40, 24)
    g = Gaussians.empty(sh_degree=2)
    bg = torch.tensor([0.2, 0.4, 0.6]).expand(len(vm), 3)
    img, alpha, info = render(g, vm, K, 40, 24, backend="cpu", backgrounds=bg)
    assert torch.equal(img, bg[:, None, None, :].expand(len(vm), 24, 40, 3))
    assert torch.equal(alpha, torch.zeros(len(vm), 24, 40, 1))
    assert info["means2d"].shape == (len(vm), 0, 2) and info["radii"].dtype == torch.int32


def test_batch_equals_single_views_and_is_deterministic(make_scene, make_cameras):
    g = make_scene(5, awkward=False)
    vm, K = make_cameras(48, 32, empty_view=False)
    img, alpha, _ = render(g, vm, K, 48, 32, backend="cpu")
    img2, _, _ = render(g, vm, K, 48, 32, backend="cpu")
    assert torch.equal(img, img2)
    for c in range(len(vm)):
        one, a1, _ = render(g, vm[c : c + 1], K[c : c + 1], 48, 32, backend="cpu")
        assert torch.equal(one[0], img[c]) and torch.equal(a1[0], alpha[c])


def test_background_gradient(make_scene, make_cameras):
    g = make_scene(6, awkward=False)
    vm, K = make_cameras(32, 32)
    out = {}
    for backend in ("cpu", "reference"):
        bg = torch.full((len(vm), 3), 0.5, requires_grad=True)
        img, _, _ = render(g, vm, K, 32, 32, backend=backend, backgrounds=bg)
        (img * torch.linspace(0, 1, 3)).sum().backward()
        out[backend] = bg.grad
    assert torch.allclose(out["cpu"], out["reference"], rtol=1e-4, atol=1e-3)
    assert torch.allclose(out["cpu"][-1], torch.tensor([0.0, 0.5, 1.0]) * 32 * 32)


def test_opaque_stack_stops_early(make_cameras):
    """Many opaque layers on one spot: T reaches the 1e-4 cut-off and both backends stop alike."""
    n = 40
    g = Gaussians(
        means=torch.stack([torch.zeros(n), torch.linspace(-1.0, 1.0, n), torch.zeros(n)], dim=1) + 0.01,
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        scales=torch.full((n, 3), -1.0),
        opacities=torch.full((n,), 4.0),
        sh0=torch.linspace(-1, 1, n * 3).reshape(n, 1, 3),
        shN=torch.zeros(n, 0, 3),
    )
    vm, K = make_cameras(32, 32, empty_view=False)
    gen = torch.Generator().manual_seed(0)
    weights = (torch.rand(len(vm), 32, 32, 3, generator=gen), torch.ones(len(vm), 32, 32, 1))
    img, alpha, grads, _ = _render_with_grads(g, vm, K, 32, 32, "cpu", None, weights)
    g64 = g.map(lambda t: t.double())
    img_r, alpha_r, grads_r, _ = _render_with_grads(g64, vm.double(), K.double(), 32, 32, "reference", None, weights)
    assert (1 - alpha).min().item() < 1e-3  # the stack is saturated somewhere
    assert (img.double() - img_r).abs().max().item() <= 1e-4
    for k in ("means", "scales", "opacities", "sh0"):
        rel = ((grads[k].double() - grads_r[k]).norm() / grads_r[k].norm()).item()
        assert rel <= 1e-3, (k, rel)
