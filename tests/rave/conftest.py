"""Shared fixtures for the RAVE core tests: a tiny procedural dataset and a quickly fitted model on it.

The model is fitted here (Adam on the 3DGS loss, no densification) rather than with ``rave train`` so these
tests depend only on the renderer, the metrics and the procedural scenes.
"""

from __future__ import annotations

import pytest
import torch

from rave_viewer import metrics
from rave_viewer.scene.gaussians import Gaussians

C0 = 0.28209479177387814  # SH DC basis constant

SCENE = dict(preset="ground", n_views=17, width=40, height=40, n_points=1200, samples_per_pixel=2, seed=3)
FIT_STEPS = 300


def init_from_points(points: torch.Tensor, colors: torch.Tensor, sh_degree: int = 1) -> Gaussians:
    """Isotropic Gaussians at the points, scale = mean distance to the 3 nearest neighbours, opacity 0.5."""
    n = len(points)
    d = torch.cdist(points, points)
    d.fill_diagonal_(float("inf"))
    knn = d.topk(3, largest=False).values.mean(dim=1).clamp_min(1e-4)
    k = (sh_degree + 1) ** 2 - 1
    return Gaussians(
        means=points.clone().float(),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        scales=torch.log(knn)[:, None].repeat(1, 3),
        opacities=torch.zeros(n),
        sh0=((colors.float() - 0.5) / C0)[:, None, :],
        shN=torch.zeros(n, k, 3),
    )


def quick_fit(g: Gaussians, cams, steps: int, scene_scale: float, seed: int = 0) -> Gaussians:
    """``steps`` Adam steps (one random view each) with gsplat's initial learning rates; no densification."""
    from rave_viewer.render import render_cameras

    params = {k: torch.nn.Parameter(v.clone()) for k, v in g.items()}
    lrs = {"means": 1.6e-4 * scene_scale, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3,
           "shN": 2.5e-3 / 20}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k]} for k in params], eps=1e-15)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        c = cams[int(torch.randint(len(cams), (1,), generator=gen))]
        img, _, _ = render_cameras(Gaussians.from_dict(params), c)
        loss = metrics.rendering_loss(img, c.images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return Gaussians.from_dict({k: v.detach() for k, v in params.items()})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 40x40 procedural 'ground' scene: 14 training and 3 test views, 1200 surface points."""
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.procedural import generate_scene

    root = generate_scene(tmp_path_factory.mktemp("rave") / "scene", progress=False, **SCENE)
    return load_dataset(root)


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset) -> Gaussians:
    """~1200 Gaussians (SH degree 1) fitted for FIT_STEPS steps on ``tiny_dataset``."""
    ds = tiny_dataset
    g = init_from_points(ds.points, ds.point_colors)
    return quick_fit(g, ds.train, FIT_STEPS, ds.scene_scale)


def make_builder(ds, model, **kw):
    """A Builder with small settings (8 levels, 150 fine-tuning steps, chunks of 32, 101 RD rates = 1 % spacing);
    its levels and fine-tuned model are shared by every checkpoint it builds."""
    from rave_viewer.rave.build import Builder
    from rave_viewer.rave.config import BuildConfig

    cfg = BuildConfig(num_levels=8, coarsest_fraction=0.1, steps=150, chunk_size=32, rd_points=101, seed=0, **kw)
    return Builder(model, ds.train, ds.test, cfg, scene_scale=ds.scene_scale, progress=False)


@pytest.fixture(scope="session")
def builder_factory():
    """:func:`make_builder` (test modules cannot import this conftest by name)."""
    return make_builder


@pytest.fixture(scope="session")
def tiny_builder(tiny_dataset, tiny_model):
    """Default settings (importance: norm of the gradient summed over the views)."""
    return make_builder(tiny_dataset, tiny_model)


@pytest.fixture(scope="session")
def tiny_builder_son(tiny_dataset, tiny_model):
    """Importance = sum over views of per-view gradient norms (see test_context_ranking_at_least_as_good_as_global)."""
    return make_builder(tiny_dataset, tiny_model, importance="sum_of_norms")


@pytest.fixture(scope="session")
def ckpt_context(tiny_builder):
    return tiny_builder.checkpoint(ranking="context", finetune_=True)


@pytest.fixture(scope="session")
def ckpt_global(tiny_builder):
    return tiny_builder.checkpoint(ranking="global", finetune_=True)


@pytest.fixture(scope="session")
def ckpt_nofinetune(tiny_builder):
    return tiny_builder.checkpoint(ranking="context", finetune_=False)

