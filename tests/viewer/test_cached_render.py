"""render/cached.py: prefix renders from a resting camera keep the projection and equal the full render."""

from __future__ import annotations

import numpy as np
import torch

from rave_viewer.render import render
from rave_viewer.render.cached import PrefixRenderer
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.viewer.frames import intrinsics_from_fov, viewmat_from_c2w
from rave_viewer.viewer.video import look_at_c2w


def _scene(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
        scales=torch.rand(n, 3, generator=g) * 2.5 - 5.0, opacities=torch.randn(n, generator=g) * 2,
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5, shN=torch.randn(n, 8, 3, generator=g) * 0.1,
    )  # fmt: skip


def test_prefix_renders_equal_full_renders_and_project_only_what_a_larger_prefix_adds():
    g = _scene()
    pr = PrefixRenderer(g, max_views=2)
    W, H = 120, 80
    K = intrinsics_from_fov(0.9, W, H)
    cams = [viewmat_from_c2w(look_at_c2w(np.array(e, float), np.zeros(3), np.array([0, 0, 1.0])))
            for e in ([0, -5, 1], [4, 3, -1])]  # fmt: skip
    projected = []
    for vm in cams:
        for k in (500, 1200, 800, 1200, 3000, 10, 0, 2999):
            got = pr.render(k, vm, K, W, H)
            want = render(g.prefix(k), vm[None], K[None], W, H, backend="cpu")[0][0] if k else torch.zeros(H, W, 3)
            assert got.shape == (H, W, 3)
            assert torch.allclose(got, want, atol=1e-6), (k, float((got - want).abs().max()))
            projected.append(pr.projected_last)
    # per camera: 500, then +700, nothing for smaller or equal prefixes, +1800 for the rest
    assert projected == [500, 700, 0, 0, 1800, 0, 0, 0] * 2
    assert sum(torch.count_nonzero(pr.render(3000, vm, K, W, H)) > 0 for vm in cams) == 2  # (pictures, not black)
    # a third and fourth camera push the first out (max_views=2): it is projected again when it comes back
    for e in ([0, 5, 1], [-4, 0, 2]):
        pr.render(100, viewmat_from_c2w(look_at_c2w(np.array(e, float), np.zeros(3), np.array([0, 0, 1.0]))), K, W, H)
    pr.render(100, cams[0], K, W, H)
    assert pr.projected_last == 100
