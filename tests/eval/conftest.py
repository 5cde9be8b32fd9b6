"""A tiny RAVE checkpoint for the eval tests, built with the RAVE core's API (no fine-tuning: eval does not care)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(dataset dir, checkpoint path, reversed-order checkpoint path) for a 32x32 procedural scene."""
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds
    from rave_viewer.rave import RaveCheckpoint, save_checkpoint
    from rave_viewer.rave.build import rd_table
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.procedural import generate_scene
    from rave_viewer.train.config import TrainConfig
    from rave_viewer.train.init import init_gaussians

    root = tmp_path_factory.mktemp("eval")
    data = generate_scene(root / "scene", n_views=16, width=32, height=32, n_points=300, progress=False)
    ds = load_dataset(data)
    g = init_gaussians(ds.points, ds.point_colors, TrainConfig(sh_degree=1), torch.Generator().manual_seed(0),
                       ds.scene_scale)
    quant, bounds = QuantConfig(), scene_bounds(g)
    sizes = [40, 80, 160, len(g)]
    paths = []
    for name, order in (("tiny", torch.arange(len(g))), ("reversed", torch.arange(len(g)).flip(0))):
        gg = g.subset(order)
        enc = ProgressiveEncoder(gg, quant, codec="lzma", chunk_size=32, bounds=bounds)
        ck = RaveCheckpoint(gaussians=gg, order=order, level_sizes=sizes,
                            level_rates=[int(enc.size_of_prefix(s)) for s in sizes], quant=quant, bounds=bounds,
                            codec="lzma", chunk_size=32, rd={}, test_cameras=ds.test,
                            meta={"config": {"background": [0.0, 0.0, 0.0]}, "ranking": "test"})
        ck.rd, _ = rd_table(ck, ds.test, 64, progress=False)
        p = root / f"{name}.ckpt"
        save_checkpoint(ck, p)
        paths.append(p)
    return data, paths[0], paths[1]
