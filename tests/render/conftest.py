"""Small deterministic scenes for the render tests: random Gaussians plus awkward ones (behind, huge, tiny)."""

import math

import pytest
import torch

from rave_viewer.scene.cameras import intrinsics, look_at
from rave_viewer.scene.gaussians import Gaussians


def scene(seed: int, n: int = 300, degree: int = 3, awkward: bool = True) -> Gaussians:
    """Random Gaussians around the origin; with ``awkward``: behind camera 0, huge, tiny, near-plane ones."""
    g = Gaussians.random(n, degree, seed=seed)
    if not awkward:
        return g
    gen = torch.Generator().manual_seed(seed + 1000)
    k = g.shN.shape[1]
    extra = Gaussians(
        means=torch.tensor(
            [
                [0.0, -4.0, 0.5],  # behind camera 0 (at y = -3 looking at +y)
                [0.3, -3.5, 0.5],  # behind camera 0
                [0.0, 0.2, 0.0],  # huge: covers every image
                [0.2, 0.1, -0.1],  # tiny
                [-0.3, 0.0, 0.2],  # tiny
                [0.0, -2.995, 0.5],  # just in front of camera 0, closer than its near plane (z ~ 0.005)
                [0.05, -2.9, 0.5],  # 0.1 in front of camera 0: large on screen
            ]
        ),
        quats=torch.randn(7, 4, generator=gen),
        scales=torch.log(
            torch.tensor([[0.2] * 3, [0.2] * 3, [6.0, 5.0, 4.0], [1e-4] * 3, [3e-4] * 3, [0.1] * 3, [0.02] * 3])
        ),
        opacities=torch.tensor([2.0, 2.0, -1.5, 3.0, 3.0, 1.0, 0.5]),
        sh0=torch.randn(7, 1, 3, generator=gen) * 0.5,
        shN=torch.randn(7, k, 3, generator=gen) * 0.1,
    )
    return Gaussians.cat([g, extra])


def cameras(width: int, height: int, empty_view: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """viewmats [C,4,4], Ks [C,3,3]: three views of the origin and (optionally) one looking away from it."""
    eyes = [[0.0, -3.0, 0.5], [2.5, -2.0, 1.0], [-1.5, 2.5, -0.8]]
    vms = [look_at(torch.tensor(e), torch.zeros(3)) for e in eyes]
    if empty_view:
        vms.append(look_at(torch.tensor([0.5, 0.0, 10.0]), torch.tensor([0.5, 1.0, 20.0])))  # all behind it
    K = intrinsics(width, height, math.radians(60))
    K[0, 2] += 1.3  # an off-centre principal point
    Ks = K.expand(len(vms), 3, 3).clone()
    Ks[1, 1, 1] *= 1.1  # non-square pixels in one view
    return torch.stack(vms), Ks


@pytest.fixture
def make_scene():
    return scene


@pytest.fixture
def make_cameras():
    return cameras
