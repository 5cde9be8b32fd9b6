"""Fixtures of the batch tests: three tiny trained procedural scenes, a tiny build config, a local Ray runtime.

The scenes are made through the CLI (``rave generate`` + ``rave train``), small enough that a build takes a
few seconds; the Ray runtime is started and stopped here, on the loopback interface only, with usage
reporting off, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from batch_helpers import NAMES, TINY_BUILD, make_scene


@pytest.fixture(scope="module")
def scene_tree(tmp_path_factory) -> Path:
    """A pristine SCENES_DIR with alpha/, bravo/, charlie/ (each scene.ply + data/) and tiny.yaml beside it."""
    base = tmp_path_factory.mktemp("batch")
    root = base / "scenes"
    for i, name in enumerate(NAMES):
        make_scene(root / name, seed=10 + i)
    (base / "tiny.yaml").write_text(TINY_BUILD)
    return root


@pytest.fixture
def scenes(scene_tree, tmp_path) -> Path:
    """A private copy of the scene tree (tests may break its inputs); ``tiny.yaml`` sits beside it."""
    dst = tmp_path / "scenes"
    shutil.copytree(scene_tree, dst)
    shutil.copy(scene_tree.parent / "tiny.yaml", tmp_path / "tiny.yaml")
    return dst


@pytest.fixture(scope="module")
def ray_runtime():
    """``ray.init(num_cpus=2)`` on 127.0.0.1 for the module, shut down afterwards (Ray must be installed)."""
    env = {"RAY_USAGE_STATS_ENABLED": "0",  # no usage report
           # Ray's switch for single-machine mode: the node address is 127.0.0.1 and every server binds
           # to loopback (by default Ray picks the machine's outward address)
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before Ray is imported: it reads them at import
    import ray  # the dev extra installs it: a missing Ray fails the tests, never skips them
    from ray._private import ray_constants

    cluster_mode, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False  # the same
    # switch, for when an earlier test imported Ray already

    if ray.is_initialized():
        ray.shutdown()
    # results are small dicts: a 200 MB object store instead of 30 % of the (shared) machine's memory
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True, configure_logging=False,
             object_store_memory=200 * 1024**2)
    try:
        node = ray.nodes()[0]["NodeManagerAddress"]
        assert node == "127.0.0.1", f"the Ray node listens on {node}, expected loopback only"
        yield ray
    finally:
        ray.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
