"""A tiny procedural dataset and one Scaffold-GS model trained on it, shared by the scaffold tests."""

from __future__ import annotations

import pytest
from threads import one_thread


@pytest.fixture
def single_thread():
    with one_thread():
        yield

#: 16 views (14 train, 2 test) of the object scene at 48x48 with 600 surface points (as tests/train).
TINY_SCENE = dict(preset="objects", n_views=16, width=48, height=48, seed=1, n_points=600, samples_per_pixel=2)
#: 300 steps: the growing schedule scales to statistics from step 6, growing every 50 steps from step 16.
TRAIN_STEPS = 300


@pytest.fixture(scope="session")
def scaffold_data(tmp_path_factory):
    """Path of the tiny dataset folder."""
    from rave_viewer.scene.procedural import generate_scene

    return generate_scene(tmp_path_factory.mktemp("scaffold") / "tiny", progress=False, **TINY_SCENE)


@pytest.fixture(scope="session")
def scaffold_dataset(scaffold_data):
    from rave_viewer.scene.datasets import load_dataset

    return load_dataset(scaffold_data)


@pytest.fixture(scope="session")
def trained(scaffold_dataset):
    """A :class:`~rave_viewer.scaffold.train.ScaffoldResult` of TRAIN_STEPS steps on the CPU backend."""
    from rave_viewer.scaffold.config import ScaffoldConfig
    from rave_viewer.scaffold.train import train

    with one_thread():
        return train(scaffold_dataset, ScaffoldConfig(steps=TRAIN_STEPS, backend="cpu", eval_every=0),
                     progress=False)
