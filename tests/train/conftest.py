"""A tiny procedural dataset shared by the trainer tests (generated once per session, 48x48 pixels)."""

from __future__ import annotations

import pytest

#: 16 views (14 train, 2 test) of the object scene at 48x48: big enough for SSIM, small enough for CI.
TINY_SCENE = dict(preset="objects", n_views=16, width=48, height=48, seed=1, n_points=600, samples_per_pixel=2)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Path of the tiny dataset folder (transforms_train/test.json, images/, points3d.ply)."""
    from rave_viewer.scene.procedural import generate_scene

    return generate_scene(tmp_path_factory.mktemp("train") / "tiny", progress=False, **TINY_SCENE)
