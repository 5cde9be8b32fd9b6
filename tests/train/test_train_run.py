"""End-to-end training on a tiny procedural scene: quality rises, densification acts, files are exact and atomic."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
import torch

from rave_viewer.cli import main as rave
from rave_viewer.scene.ply import read_ply
from rave_viewer.train.config import TrainConfig
from rave_viewer.train.run import checkpoint_path, run_json_path, write_outputs

#: Random init (its PSNR is low, so the rise measures learning), CPU backend, SH degree 1, 200 steps with
#: densification at steps 25, 50 and 75 (the schedule scaled to 200 steps, refine_every floored at 25).
TINY_CFG = TrainConfig(steps=200, backend="cpu", init="random", init_num_points=1000, sh_degree=1,
                       min_refine_every=25, eval_every=0)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """(result, written PLY, Gaussian count after every step) of one tiny run."""
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.train.trainer import train

    counts = []
    result = train(load_dataset(tiny_data), TINY_CFG, progress=False,
                   callback=lambda step, splats: counts.append(len(splats["means"])))
    out = tmp_path_factory.mktemp("run") / "scene.ply"
    write_outputs(result, out)
    return result, out, counts


def test_training_learns_and_densifies(trained):
    result, _, counts = trained
    m = result.metrics
    assert not result.interrupted and result.steps_done == TINY_CFG.steps == len(counts)
    assert m["test_psnr"] >= m["init_test_psnr"] + 6.0, m
    assert m["train_psnr"] >= m["test_psnr"] - 1.0
    assert 0.0 < m["test_ssim"] <= 1.0
    # gsplat's DefaultStrategy pruned (transparent random Gaussians) and grew (clone/split) the model
    steps = list(zip([result.num_initial] + counts, counts))
    assert any(b < a for a, b in steps) and any(b > a for a, b in steps), sorted(set(counts))
    assert len(result.gaussians) == counts[-1] != result.num_initial
    assert result.gaussians.sh_degree == 1


def test_outputs_reload_exactly(trained):
    result, out, _ = trained
    assert read_ply(out).equal(result.gaussians)
    rec = json.loads(run_json_path(out).read_text())
    assert rec["num_gaussians"] == len(result.gaussians)
    assert rec["metrics"]["test_psnr"] == pytest.approx(result.metrics["test_psnr"])
    assert rec["config"] == TINY_CFG.to_dict() and rec["backend"] == "cpu"
    assert {"torch", "gsplat"} <= set(rec["versions"]) and rec["wall_time_s"] > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene.json", "scene.ply"]  # no temp files


def test_same_seed_same_model_via_cli(tiny_data, tmp_path):
    """Two CLI runs with one seed write byte-identical PLYs (points init; a short run)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("steps: 60\nsh_degree: 0\neval_every: 0\n")
    outs = []
    for name in ("a.ply", "b.ply"):
        out = tmp_path / name
        assert rave(["train", str(tiny_data), "-o", str(out), "--config", str(cfg), "--backend", "cpu",
                     "--seed", "3", "--quiet"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert json.loads((tmp_path / "a.json").read_text())["config"]["seed"] == 3


def test_ctrl_c_writes_a_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    """SIGINT mid-run: the loop stops at a step boundary, a usable checkpoint PLY appears, exit code 130."""
    import rave_viewer.train.run as run_mod
    from rave_viewer.train import trainer

    real_train = trainer.train

    def train_with_ctrl_c(dataset, cfg, **kw):
        def cb(step, splats):
            if step == 4:
                os.kill(os.getpid(), signal.SIGINT)

        return real_train(dataset, cfg, callback=cb, **kw)

    monkeypatch.setattr(run_mod, "train", train_with_ctrl_c)
    out = tmp_path / "scene.ply"
    rc = rave(["train", str(tiny_data), "-o", str(out), "--steps", "50", "--backend", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    ck = checkpoint_path(out)
    assert rc == 130 and not out.exists() and ck.exists()
    assert len(err) == 1 and str(ck) in err[0] and "step 5/50" in err[0]
    g = read_ply(ck)
    assert len(g) > 0 and torch.isfinite(g.means).all()
    assert json.loads(run_json_path(ck).read_text())["interrupted"] is True


def _fails(args, capsys, *names):
    rc = rave(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    for n in names:
        assert str(n) in err[0], err[0]
    return err[0]


def test_bad_inputs_fail_in_one_line_and_write_nothing(tiny_data, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "scene.ply"
    ok = ["--backend", "cpu", "--steps", "5", "--quiet"]

    missing = tmp_path / "nope"
    _fails(["train", str(missing), "-o", str(out), *ok], capsys, missing, "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["train", str(empty), "-o", str(out), *ok], capsys, empty, "empty")

    bad = tmp_path / "mismatch"
    shutil.copytree(tiny_data, bad)
    from PIL import Image

    img = bad / "images" / "r_003.png"
    Image.open(img).resize((40, 48)).save(img)
    _fails(["train", str(bad), "-o", str(out), *ok], capsys, "r_003.png", "same size")

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("steps: 10\nlearning_rate: 0.1\n")
    _fails(["train", str(tiny_data), "-o", str(out), "--config", str(cfg), *ok], capsys, cfg, "'learning_rate'")
    cfg.write_text("sh_degree: two\n")
    _fails(["train", str(tiny_data), "-o", str(out), "--config", str(cfg), *ok], capsys, cfg, "'sh_degree'",
           "an integer")
    _fails(["train", str(tiny_data), "-o", str(out_dir / "scene.txt"), *ok], capsys, "scene.txt", ".ply")

    assert list(out_dir.iterdir()) == []  # nothing half-written


def test_force_replaces_a_read_only_output_ply(tiny_data, tmp_path, capsys):
    """The read-only check is fileio.check_output's: refused without --force, replaced with it (as non-root too)."""
    from rave_viewer.errors import RaveError
    from rave_viewer.train.run import check_output_path

    out = tmp_path / "scene.ply"
    out.write_bytes(b"old model")
    out.chmod(0o444)
    with pytest.raises(RaveError, match="read-only"):
        check_output_path(out)
    assert check_output_path(out, force=True) == out
    args = ["train", str(tiny_data), "-o", str(out), "--steps", "2", "--backend", "cpu", "--quiet"]
    _fails(args, capsys, out, "read-only", "--force")
    assert out.read_bytes() == b"old model"
    assert rave([*args, "--force"]) == 0
    assert capsys.readouterr() == ("", "")
    assert len(read_ply(out)) > 0 and json.loads(run_json_path(out).read_text())["steps_done"] == 2
