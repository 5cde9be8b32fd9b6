"""Every numeric flag has a range, bad configs and Ctrl-C at start-up are one line: never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rave_viewer.cli as cli
from rave_viewer.cli import main
from rave_viewer.commands._args import float_in, int_in
from rave_viewer.errors import Terminated

ROOT = Path(__file__).resolve().parents[1]


def test_int_in_and_float_in_messages():
    size = int_in(16, 8192)
    assert size("8192") == 8192 and size(" 16 ") == 16
    for bad, shown in (("100000", "100000"), ("-1", "-1"), ("12.5", "12.5"), ("ten", "ten"), ("1e3", "1e3")):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            size(bad)
        assert str(e.value) == f"must be an integer in 16..8192, got {shown}"
    with pytest.raises(argparse.ArgumentTypeError, match=r"got 9999999999999999999999999999999999999\.\.\.$"):
        size("9" * 5000)  # past int()'s digit limit: still one short line
    with pytest.raises(argparse.ArgumentTypeError, match=r"got '1\\n2'"):
        size("1\n2")
    fov = float_in(1.0, 150.0)
    assert fov("1") == 1.0 and fov("150") == 150.0
    for bad in ("nan", "inf", "-inf", "1e999999", "0.5", "151", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be a finite number in \[1, 150\], got"):
            fov(bad)
    frac = float_in(0.0, 1.0, lo_open=True)
    assert frac("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\], got 0"):
        frac("0")


BAD_FLAGS = [
    ("generate", "--seed", "-1"), ("generate", "--seed", "4294967296"), ("generate", "--size", "100000"),
    ("generate", "--size", "8"), ("generate", "--views", "1"), ("generate", "--views", "10001"),
    ("generate", "--fov", "nan"), ("generate", "--fov", "1e999999"), ("generate", "--radius", "0"),
    ("generate", "--radius", "inf"), ("generate", "--spp", "0"), ("generate", "--spp", "100000"),
    ("generate", "--points", "-1"), ("generate", "--points", "1e12"),
    ("train", "--steps", "0"), ("train", "--steps", "10000001"), ("train", "--steps", "1e999999"),
    ("train", "--seed", "-1"),
    ("build", "--steps", "-1"), ("build", "--steps", "99999999999"), ("build", "--levels", "1"),
    ("build", "--levels", "100000"), ("build", "--anchors", "1"), ("build", "--coarsest", "0"),
    ("build", "--coarsest", "nan"), ("build", "--coarsest", "1.5"), ("build", "--chunk-size", "0"),
    ("build", "--chunk-size", "1000000000"),
    ("eval", "--rates", "1"), ("eval", "--rates", "10001"), ("eval", "--downscale", "0"),
    ("eval", "--downscale", "1e999999"),
]


def _args(command: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return {"generate": [str(out)], "train": [str(tmp_path), "-o", str(out / "m.ply")],
            "build": [str(tmp_path / "m.ply"), "--data", str(tmp_path), "-o", str(out / "m.ckpt")],
            "eval": [str(tmp_path / "m.ckpt"), "-o", str(out)]}[command]


@pytest.mark.parametrize("command, flag, value", BAD_FLAGS)
def test_out_of_range_flags_are_one_argparse_line(command, flag, value, tmp_path, capsys):
    rc = main([command, *_args(command, tmp_path), flag, value])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: rave {command}: argument {flag}: must be "), err
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []  # nothing created


def test_help_texts_state_the_bounds(capsys):
    for command, words in (("generate", ["16..8192", "2..10000", "0..4294967295"]), ("train", ["1..10000000"]),
                           ("build", ["2..64", "(0, 1]"]), ("eval", ["2..10000", "1..1024"])):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for w in words:
            assert w in text, (command, w)


def test_console_entry_point_prints_one_line_and_exits_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rave_viewer", "generate", str(tmp_path / "g"), "--size", "100000"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("error: rave generate: argument --size: must be an integer in 16..8192, got 100000 "
                        "(see rave generate --help)\n")
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("command", ["train", "build"])
@pytest.mark.parametrize("case", ["missing", "folder", "not-yaml", "not-utf8", "not-a-mapping"])
def test_bad_config_file_is_one_line_naming_it(command, case, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "transforms.json").write_text("{}")
    (tmp_path / "m.ply").write_bytes(b"ply\n")
    cfg = tmp_path / "cfg.yaml"
    if case == "folder":
        cfg.mkdir()
    elif case == "not-yaml":
        cfg.write_text("steps: [1, 2\n")
    elif case == "not-utf8":
        cfg.write_bytes(b"\xff\xfe steps: 3\n")
    elif case == "not-a-mapping":
        cfg.write_text("- steps\n- 3\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / ("m2.ply" if command == "train" else "m.ckpt")
    base = ([str(tmp_path / "data")] if command == "train" else [str(tmp_path / "m.ply"), "--data",
                                                                   str(tmp_path / "data")])
    rc = main([command, *base, "-o", str(out), "--config", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    assert str(cfg) in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not out.exists()


@pytest.mark.parametrize("exc, code, line", [(KeyboardInterrupt(), 130, "interrupted"),
                                             (Terminated(15), 143, "terminated by SIGTERM")])
def test_interrupt_during_start_up_is_one_line(exc, code, line, monkeypatch, capsys):
    def slow_import(names=None):
        raise exc

    monkeypatch.setattr(cli, "build_parser", slow_import)
    assert main(["generate", "x"]) == code
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize("extra, expected", [([], False), (["--allow-outside-paths"], True)])
def test_eval_passes_allow_outside_paths_to_the_dataset_loader(extra, expected, tmp_path, monkeypatch, capsys):
    import rave_viewer.commands.eval as eval_cmd
    import rave_viewer.scene.datasets as datasets
    from rave_viewer.errors import RaveError

    seen = {}

    def fake_load_dataset(path, **kw):
        seen.update(kw)
        raise RaveError("stop here", path)

    monkeypatch.setattr(eval_cmd, "_load", lambda path: object())
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rc = main(["eval", str(tmp_path / "a.ckpt"), "--data", str(tmp_path), "-o", str(tmp_path / "r"), *extra])
    assert rc == 2 and "stop here" in capsys.readouterr().err
    assert seen["allow_outside_paths"] is expected


def _inf_ply(path: Path) -> Path:
    """A 50-Gaussian PLY with two +inf opacity logits (legal: exactly opaque), which the encoder warns about."""
    from rave_viewer.scene.gaussians import Gaussians
    from rave_viewer.scene.ply import write_ply

    g = Gaussians.random(50, 1, seed=1)
    g.opacities[[1, 2]] = float("inf")
    write_ply(g, path)
    return path


def test_encode_warning_is_one_line_without_source_and_quiet_prints_nothing_else(tmp_path):
    ply = _inf_ply(tmp_path / "inf.ply")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rave_viewer", "encode", str(ply), "-o", str(tmp_path / "a.rave"),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout == "" and (tmp_path / "a.rave").exists()
    lines = p.stderr.splitlines()
    assert lines == [f"warning: {ply}: 2 Gaussians had an infinite opacity logit (exactly opaque or transparent): "
                     "2 +inf stored as opacity 0.9844, the nearest of the 32 levels"], p.stderr  # medium preset: 5 bits
    assert "warnings.warn" not in p.stderr and "UserWarning" not in p.stderr and ".py:" not in p.stderr


def test_encode_quiet_prints_nothing_and_warnings_stay_warnings(tmp_path, capsys):
    from rave_viewer.codec.container import RaveValueWarning
    from rave_viewer.scene.gaussians import Gaussians
    from rave_viewer.scene.ply import write_ply

    write_ply(Gaussians.random(50, 1, seed=1), tmp_path / "a.ply")
    assert main(["encode", str(tmp_path / "a.ply"), "-o", str(tmp_path / "a.rave"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    with pytest.warns(RaveValueWarning, match="infinite opacity"):  # guarded's one-line format keeps them warnings
        assert main(["encode", str(_inf_ply(tmp_path / "inf.ply")), "-o", str(tmp_path / "b.rave"), "--quiet"]) == 0
    import warnings

    assert warnings.formatwarning.__module__ == "warnings"  # restored after the command


def test_encode_never_replaces_its_input_and_force_replaces_a_read_only_output(tmp_path, capsys):
    ply = _inf_ply(tmp_path / "in.ply")
    before = ply.read_bytes()
    assert main(["encode", str(ply), "-o", str(ply), "--quiet", "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the same file as the input" in err and ply.read_bytes() == before
    out = tmp_path / "ro.rave"
    out.write_bytes(b"keep")
    out.chmod(0o444)
    assert main(["encode", str(ply), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err and "--force" in err and out.read_bytes() == b"keep"
    with pytest.warns(UserWarning):
        assert main(["encode", str(ply), "-o", str(out), "--quiet", "--force"]) == 0
    assert out.read_bytes()[:4] != b"keep" and out.stat().st_size > 100


@pytest.mark.parametrize("flag, value", [("--count", "0"), ("--count", "1e3"), ("--psnr", "nan"),
                                         ("--chunk-size", "0"), ("--chunk-size", "262145"), ("--pos-bits", "22"),
                                         ("--pos-bits", "0"), ("--rot-bits", "1"), ("--opacity-bits", "17")])
def test_encode_numeric_flags_are_range_checked(flag, value, tmp_path, capsys):
    rc = main(["encode", str(tmp_path / "m.ply"), "-o", str(tmp_path / "m.rave"), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: rave encode: argument {flag}: must be "), err
    assert os.listdir(tmp_path) == []


def test_shown_keeps_values_short_and_on_one_line():
    from rave_viewer.errors import shown

    assert shown(10**5000) == "an integer of about 5001 digits"
    assert shown("14") == "'14'" and shown(" 14 ", quote=False) == "14" and shown("a\nb", quote=False) == "'a\\nb'"
    assert len(shown("x" * 1000)) == 40 and shown("x" * 1000).endswith("...")
    assert len(shown([[[[1]]]] * 100, limit=60)) <= 60


@pytest.fixture(scope="module")
def outside_dataset(tmp_path_factory):
    """A 10-view 24x24 transforms.json dataset whose first training frame is ``../outside.png``."""
    import json
    import shutil

    from rave_viewer.scene.procedural import generate_scene

    root = generate_scene(tmp_path_factory.mktemp("outside") / "scene", progress=False, preset="objects",
                          n_views=10, width=24, height=24, seed=1, n_points=300, samples_per_pixel=1)
    tj = root / "transforms_train.json"
    meta = json.loads(tj.read_text())
    shutil.move(root / meta["frames"][0]["file_path"], root.parent / "outside.png")
    meta["frames"][0]["file_path"] = "../outside.png"
    tj.write_text(json.dumps(meta))
    return root


def _refused_outside(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "outside the dataset folder" in err, err
    assert "--allow-outside-paths" in err and "Traceback" not in err


def test_train_and_build_refuse_outside_paths_unless_allowed(outside_dataset, tmp_path, capsys):
    data = str(outside_dataset)
    ply, ckpt = tmp_path / "m.ply", tmp_path / "m.ckpt"
    train = ["train", data, "-o", str(ply), "--steps", "5", "--backend", "cpu", "--downscale", "2"]
    _refused_outside(train, capsys)
    assert os.listdir(tmp_path) == []
    assert main([*train, "--allow-outside-paths"]) == 0
    err = capsys.readouterr().err
    starts = [line for line in err.splitlines() if line.startswith("training on")]
    assert starts == ["training on 8 views at 12x12 (2 test views, downscale 2): 5 steps, backend cpu, seed 0"]
    assert ply.exists()

    cfg = tmp_path / "b.yaml"
    cfg.write_text("num_levels: 2\nrd_points: 64\nchunk_size: 64\n")
    build = ["build", str(ply), "--data", data, "-o", str(ckpt), "--config", str(cfg), "--steps", "3",
             "--downscale", "2", "--backend", "cpu"]
    _refused_outside(build, capsys)
    assert not ckpt.exists()
    assert main([*build, "--allow-outside-paths"]) == 0
    err = capsys.readouterr().err
    starts = [line for line in err.splitlines() if line.startswith("building from")]
    assert starts == ["building from 300 Gaussians and 8 views at 12x12 (2 test views, downscale 2): 2 levels, "
                      "3 fine-tuning steps, backend cpu"], err
    from rave_viewer.rave.checkpoint import load_checkpoint

    ck = load_checkpoint(ckpt)
    assert ck.meta["config"]["downscale"] == 2 and (ck.test_cameras.width, ck.test_cameras.height) == (12, 12)


def test_quiet_train_and_build_print_nothing(outside_dataset, tmp_path, capsys):
    data = str(outside_dataset)
    ply = tmp_path / "m.ply"
    assert main(["train", data, "-o", str(ply), "--steps", "3", "--backend", "cpu", "--allow-outside-paths",
                 "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    cfg = tmp_path / "b.yaml"
    cfg.write_text("num_levels: 2\nrd_points: 64\nchunk_size: 64\n")
    assert main(["build", str(ply), "--data", data, "-o", str(tmp_path / "m.ckpt"), "--config", str(cfg),
                 "--no-finetune", "--backend", "cpu", "--allow-outside-paths", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


def test_build_and_train_flag_limits_are_the_configs():
    import rave_viewer.commands.build as build_cmd
    import rave_viewer.commands.train as train_cmd
    from rave_viewer.rave import config as rave_config
    from rave_viewer.train import config as train_config

    assert build_cmd.MAX_LEVELS is rave_config.MAX_LEVELS == 64
    assert build_cmd.MAX_STEPS is rave_config.MAX_STEPS and build_cmd.MAX_CHUNK_SIZE is rave_config.MAX_CHUNK_SIZE
    assert train_cmd.MAX_STEPS is train_config.MAX_STEPS and train_cmd.MAX_SEED is train_config.MAX_SEED
    assert main(["build", "m.ply", "--levels", "65"]) == 2  # the config's limit, not 256
    assert main(["build", "m.ply", "--levels", "64", "--help-config"]) == 0


def test_dataset_warning_of_train_is_one_line_in_our_words(outside_dataset, tmp_path):
    import shutil

    data = tmp_path / "scene"
    shutil.copytree(outside_dataset, data)
    shutil.copy(outside_dataset.parent / "outside.png", tmp_path / "outside.png")
    (data / "transforms_test.json").unlink()  # no test split: test_every picks the test views
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("test_every: 1\n")  # ... and leaves no training view: all used for training, one warning
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rave_viewer", "train", str(data), "-o", str(tmp_path / "m.ply"),
                        "--steps", "1", "--backend", "cpu", "--config", str(cfg), "--allow-outside-paths",
                        "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {data}: test_every=1 leaves no training view"), lines
    assert "warnings.warn" not in p.stderr and "UserWarning" not in p.stderr


def test_undistortion_note_is_one_line_and_quiet_hides_it(tmp_path, capsys):
    """A distorted capture: `rave train` says once that it undistorted the photos; --quiet says nothing."""
    from rave_viewer.scene.procedural import generate_scene

    data = generate_scene(tmp_path / "lens", progress=False, preset="objects", n_views=10, width=24, height=24,
                          seed=1, n_points=300, samples_per_pixel=1, distortion=(-0.1, 0.02, 0.0, 0.0))
    base = ["train", str(data), "--steps", "3", "--backend", "cpu"]
    assert main([*base, "-o", str(tmp_path / "q.ply"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main([*base, "-o", str(tmp_path / "v.ply")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "undistort" in notes[0], notes


def test_build_without_data_refuses_the_photo_only_flags(outside_dataset, tmp_path, capsys):
    from rave_viewer.scene.gaussians import Gaussians
    from rave_viewer.scene.ply import write_ply

    ply = tmp_path / "m.ply"
    write_ply(Gaussians.random(50, 0, seed=0), ply)
    for flag in (["--downscale", "2"], ["--allow-outside-paths"]):
        assert main(["build", str(ply), "-o", str(tmp_path / "m.ckpt"), *flag]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{flag[0]} applies to --data photos" in err
    assert not (tmp_path / "m.ckpt").exists()
