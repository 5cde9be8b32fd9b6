"""`rave build`'s effort defaults (views, image side, fine-tuning steps) by scene size and by the model's run
record, printed in one start line; and the bad inputs of issue 14 through every CLI that reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from rave_viewer.cli import main, view_main
from rave_viewer.rave import budget
from rave_viewer.rave.checkpoint import load_checkpoint
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import write_ply


def test_effort_shrinks_with_scene_size_and_explicit_values_win():
    small = budget.choose(33_000, available_views=84, photo_side=128, default_steps=300)
    assert (small.views, small.side, small.steps) == (84, 128, 300)  # the bundled demos: unchanged
    big = budget.choose(1_000_000, available_views=56, photo_side=None, rig_side=512, default_steps=3000)
    assert (big.views, big.side, big.steps) == (32, 512, 1500)
    assert big.line() == ("build: 1,000,000 Gaussians -> 32 views at 512 px, 1,500 steps (views: 32 of 56, by "
                          "scene size; side: the 512 px cap; steps: capped by scene size from 3,000) "
                          "(--views/--max-side/--steps to change)")
    huge = budget.choose(6_000_000, available_views=300, photo_side=4000, default_steps=3000)
    assert (huge.views, huge.side, huge.steps) == (16, 512, 600)
    # the training resolution (run record) and the photos bound the side; asked values are kept as asked
    rec = budget.choose(54_000, available_views=35, photo_side=1920, trained_side=240, default_steps=300)
    assert rec.side == 240 and "the model's training resolution" in rec.line()
    asked = budget.choose(1_000_000, available_views=56, photo_side=200, views=8, max_side=900, steps=7)
    assert (asked.views, asked.side, asked.steps) == (8, 200, 7)  # never above the photos' side
    assert budget.subset(10, 4) == [0, 3, 6, 9] and budget.subset(3, 8) == [0, 1, 2]


def _record(ply, **rec):
    ply.with_suffix(".json").write_text(json.dumps(rec))


def test_build_defaults_follow_the_run_record_and_flags_override(tiny_dataset, tiny_model, tmp_path, capsys):
    ds = tiny_dataset
    ply, ck = tmp_path / "m.ply", tmp_path / "m.ckpt"
    write_ply(tiny_model, ply)
    _record(ply, steps_done=1000, config={"steps": 1000, "downscale": 2})  # trained at 1/2: 20x20 px
    cfg = tmp_path / "b.yaml"
    cfg.write_text("num_levels: 2\nrd_points: 64\nchunk_size: 256\n")
    base = ["build", str(ply), "--data", str(ds.root), "-o", str(ck), "--config", str(cfg), "--backend", "cpu",
            "--force"]
    assert main([*base, "--steps", "3"]) == 0
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("build: ")]
    n = len(tiny_model)
    assert line == [f"build: {n:,} Gaussians -> {len(ds.train)} views at 20 px, 3 steps (side: the model's "
                    "training resolution) (--views/--max-side/--steps to change)"], err
    c = load_checkpoint(ck).meta["config"]
    assert (c["downscale"], c["views"], c["max_side"], c["steps"]) == (2, len(ds.train), 20, 3)
    assert load_checkpoint(ck).meta["rd_views"]["width"] == 20

    assert main([*base, "--steps", "3", "--views", "5", "--max-side", "16", "--downscale", "1"]) == 0
    err = capsys.readouterr().err
    assert f"build: {n:,} Gaussians -> 5 views at 16 px, 3 steps (views: as asked; side: as asked)" in err
    assert "building from" in err and "5 views at 16x16" in err
    k = load_checkpoint(ck)
    assert (k.meta["config"]["downscale"], k.meta["config"]["views"], k.meta["rd_views"]["width"]) == (1, 5, 16)
    assert k.test_cameras.width == 16

    assert main([*base, "--steps", "2", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_rig_build_uses_the_recorded_training_resolution(tiny_model, tmp_path, capsys):
    ply, ck = tmp_path / "m.ply", tmp_path / "m.ckpt"
    write_ply(tiny_model, ply)
    _record(ply, steps_done=1000, resolution={"width": 48, "height": 36})
    assert main(["build", str(ply), "-o", str(ck), "--levels", "2", "--steps", "2", "--rig-views", "9",
                 "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "-> 7 views at 48 px, 2 steps (side: the model's training resolution)" in err
    meta = load_checkpoint(ck).meta
    assert (meta["rig"]["width"], meta["config"]["max_side"], meta["config"]["views"]) == (48, 48, 7)


def _bad_plys(tmp_path) -> dict:
    pos = tmp_path / "positions.ply"
    PlyData([PlyElement.describe(np.zeros(5, dtype=[(k, "f4") for k in "xyz"]), "vertex")]).write(str(pos))
    empty = tmp_path / "empty.ply"  # a valid header, 'element vertex 0' (write_ply refuses to write it)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0",
             "rot_1", "rot_2", "rot_3"]
    PlyData([PlyElement.describe(np.zeros(0, dtype=[(k, "f4") for k in names]), "vertex")]).write(str(empty))
    short = tmp_path / "short.ply"
    write_ply(Gaussians.random(20, sh_degree=0, seed=0), short)
    data = short.read_bytes()
    short.write_bytes(data.replace(b"element vertex 20\n", b"element vertex 2000\n"))
    return {pos: "not a 3D Gaussian Splatting model", empty: "0 Gaussians",
            short: "element 'vertex' declares 2000 rows"}


def _one_line(capsys, rc: int, path) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_naming_the_file_in_every_cli(tmp_path, capsys):
    """A PLY with only positions, one whose vertex count exceeds its payload, an empty one, and a --cameras
    file without poses: `rave build`, `rave encode` and `rave-view` each say so in one line naming the file."""
    for path, needle in _bad_plys(tmp_path).items():
        for argv in (["build", str(path), "-o", str(tmp_path / "o.ckpt")],
                     ["encode", str(path), "-o", str(tmp_path / "o.rave")]):
            assert needle in _one_line(capsys, main(argv), path), argv
        assert needle in _one_line(capsys, view_main([str(path), "--port", "0"]), path)
    good = tmp_path / "good.ply"
    write_ply(Gaussians.random(50, sh_degree=0, seed=1), good)
    for content in ({"camera_angle_x": 1.0, "frames": []}, {"camera_angle_x": 1.0}):
        cams = tmp_path / "cams.json"
        cams.write_text(json.dumps(content))
        err = _one_line(capsys, main(["build", str(good), "--cameras", str(cams), "-o", str(tmp_path / "c.ckpt")]),
                        cams)
        assert "no camera poses" in err or "missing key 'frames'" in err
    assert not (tmp_path / "o.ckpt").exists() and not (tmp_path / "c.ckpt").exists()


@pytest.mark.parametrize("n,views,side,steps", [(250_000, None, 512, None), (300_000, 48, 512, 2700),
                                                (1_000_000, 32, 512, 1500), (2_000_000, 16, 512, 1100)])
def test_the_caps_are_the_documented_rule(n, views, side, steps):
    assert (budget.view_cap(n), budget.side_cap(n), budget.steps_cap(n)) == (views, side, steps)
