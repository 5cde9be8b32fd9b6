"""The training pieces for real captures: the named `capture` preset, and the random init restricted to what
several views see (init_min_views)."""

from __future__ import annotations

import torch

from rave_viewer.train.config import PRESETS, TrainConfig, load_config


def test_capture_preset_loads_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    cfg = load_config("capture")
    assert cfg == TrainConfig().replace(**PRESETS["capture"]) and cfg.opacity_reset
    monkeypatch.chdir(tmp_path)
    (tmp_path / "capture").write_text("steps: 5\n")
    assert load_config("capture") == TrainConfig(steps=5)


def test_covisible_init_keeps_only_points_several_views_see(tiny_data):
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.train.init import _project, covisible_points, initial_points

    ds = load_dataset(tiny_data)
    cams = ds.train
    gen = torch.Generator().manual_seed(0)
    center = cams.centers.mean(dim=0).float()
    pts, cols = covisible_points(cams, 500, center, float(ds.scene_scale), 0.5, gen)
    assert len(pts) == 500 and bool(((cols >= 0) & (cols <= 1)).all())
    seen = sum(_project(cams, c, pts.double())[0].long() for c in range(len(cams)))
    assert int(seen.min()) >= (len(cams) + 1) // 2  # every kept point: at least half of the views
    # the plain cube (the default) has points that fewer views see: the filter did something
    cfg = TrainConfig(init="random", init_num_points=500)
    cube, _, mode = initial_points(ds, cfg, torch.Generator().manual_seed(0))
    seen_cube = sum(_project(cams, c, cube.double())[0].long() for c in range(len(cams)))
    assert mode == "random" and int((seen_cube < len(cams) // 2).sum()) > 50
    pts2, _, _ = initial_points(ds, cfg.replace(init_min_views=0.5), torch.Generator().manual_seed(0))
    assert len(pts2) == 500
