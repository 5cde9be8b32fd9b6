"""Scaffold-GS training on a procedural scene: the test PSNR rises above a floor, anchors grow, runs repeat."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.errors import RaveError
from rave_viewer.scaffold import io
from rave_viewer.scaffold.config import ScaffoldConfig, grow_schedule, load_config
from rave_viewer.scaffold.train import evaluate, lr_at, train

#: Measured on this scene (seed 0, 300 steps, cpu): test PSNR 26.61 dB from 15.46 dB at init, 459 -> 768
#: anchors. The floor leaves ~2.6 dB of margin; our 3DGS trainer reaches 21.26 dB at the same 300 steps.
TEST_PSNR_FLOOR = 24.0
MIN_GAIN_DB = 6.0


def test_trained_model_beats_the_floor_and_its_init(trained):
    m = trained.metrics
    assert m["test_psnr"] > TEST_PSNR_FLOOR, m
    assert m["test_psnr"] > m["init_test_psnr"] + MIN_GAIN_DB, m
    assert m["train_psnr"] > m["test_psnr"] - 1.0  # trained views are not worse than held-out ones
    assert not trained.interrupted and trained.steps_done == trained.config.steps


def test_anchors_were_grown_and_counts_add_up(trained):
    assert trained.grown > 0
    assert len(trained.model) == trained.num_initial + trained.grown - trained.pruned
    assert trained.model.spec.feat_dim == 32 and trained.model.spec.n_offsets == 10
    p = trained.model.params
    assert p["offset"].shape == (len(trained.model), 10, 3) and p["anchor_feat"].shape == (len(trained.model), 32)
    assert trained.model.spec.voxel_size > 0


def test_the_reported_test_psnr_is_what_the_model_renders(trained, scaffold_dataset):
    ev = evaluate(trained.model, scaffold_dataset.test, backend="cpu")
    assert ev["psnr"] == pytest.approx(trained.metrics["test_psnr"], abs=1e-4)


def test_random_init_without_points_trains(scaffold_dataset, single_thread):
    ds = dataclasses.replace(scaffold_dataset, points=None, point_colors=None)
    r = train(ds, ScaffoldConfig(steps=80, backend="cpu", eval_every=0, init_num_points=2000), progress=False)
    assert r.init_mode == "random"
    assert r.metrics["test_psnr"] > r.metrics["init_test_psnr"] + 1.0, r.metrics
    with pytest.raises(RaveError, match="no initial points"):
        train(ds, ScaffoldConfig(steps=1, backend="cpu", init="points"), progress=False)


def test_same_seed_same_model(scaffold_dataset, single_thread):
    cfg = ScaffoldConfig(steps=25, backend="cpu", eval_every=0, start_stat=0, update_from=0,
                         scale_schedule=False, min_update_interval=10, update_interval=10)
    a, b = (train(scaffold_dataset, cfg, progress=False) for _ in range(2))
    assert io.to_bytes(a.model) == io.to_bytes(b.model)
    c = train(scaffold_dataset, cfg.replace(seed=1), progress=False)
    assert io.to_bytes(c.model) != io.to_bytes(a.model)


def test_schedule_scaling_and_learning_rate_decay():
    s = grow_schedule(ScaffoldConfig(steps=3000))
    assert (s.start_stat, s.update_from, s.update_interval, s.update_until) == (50, 150, 50, 1500)
    s = grow_schedule(ScaffoldConfig(steps=30_000))
    assert (s.start_stat, s.update_from, s.update_interval, s.update_until) == (500, 1500, 100, 15_000)
    assert lr_at(0.01, 1e-4, 0, 100) == pytest.approx(0.01)
    assert lr_at(0.01, 1e-4, 100, 100) == pytest.approx(1e-4)
    assert lr_at(0.01, 1e-4, 50, 100) == pytest.approx(1e-3)
    assert lr_at(0.0, 1e-4, 50, 100) == 0.0


def test_config_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, msg in (("feat_dim: 0\n", "feat_dim' must be >= 1"), ("n_offset: 10\n", "unknown config key"),
                      ("steps: .nan\n", "must be an integer"), ("background: [1, 2]\n", "list of 3")):
        bad.write_text(text)
        with pytest.raises(RaveError, match=msg) as e:
            load_config(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  steps: 12\n  n_offsets: 5\nname: demo\n")
    cfg = load_config(good)
    assert (cfg.steps, cfg.n_offsets, cfg.feat_dim) == (12, 5, 32)


def test_cli_trains_a_scaffold_file(scaffold_data, tmp_path, capsys, single_thread):
    out = tmp_path / "scene.scaffold"
    assert main(["train", str(scaffold_data), "--model", "scaffold", "-o", str(out), "--steps", "40",
                 "--backend", "cpu"]) == 0
    said = capsys.readouterr()
    assert "anchors x 10 neural Gaussians" in said.out and "test PSNR" in said.out
    model = io.load(out)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["num_anchors"] == len(model) and record["steps_done"] == 40
    assert io.metadata(out)["train"]["config"]["steps"] == 40
    # the 3DGS path and the file-type check are untouched / one line
    assert main(["train", str(scaffold_data), "--model", "scaffold", "-o", str(tmp_path / "x.ply")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be a .scaffold file" in err
    # outputs that would replace an input are refused before any work (the run JSON beside -o too)
    assert main(["train", str(scaffold_data), "--model", "scaffold", "-o",
                 str(scaffold_data / "transforms_train.scaffold")]) == 2
    err = capsys.readouterr().err
    assert "run record" in err and err.count("\n") == 1
    assert (scaffold_data / "transforms_train.json").stat().st_size > 0
    assert main(["train", "--model", "scaffold", "--help-config"]) == 0
    assert "n_offsets: 10" in capsys.readouterr().out


def test_rendering_is_differentiable_for_the_mlps(trained, scaffold_dataset):
    m = trained.model.detached()
    img = m.render(scaffold_dataset.train[0], backend="cpu")
    img.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.mlps.parameters())
