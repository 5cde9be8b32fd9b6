"""Outputs never replace an input, a symlink's target, a FIFO or a read-only file; killed writes leave no temp."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rave_viewer.cli import main
from rave_viewer.errors import RaveError
from rave_viewer.fileio import check_output

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def _refused(argv, capsys, *words) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    for w in words:
        assert str(w) in err, err
    return err


@pytest.fixture
def inputs(tmp_path):
    """A fake model, a fake dataset folder and a config: enough for the checks that run before any loading."""
    ply = tmp_path / "model.ply"
    ply.write_bytes(b"ply\nnot really\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "transforms_train.json").write_text('{"frames": []}\n')
    (data / "points3d.ply").write_bytes(b"ply points\n")
    cfg = tmp_path / "cfg.json"  # a YAML file named .json
    cfg.write_text("steps: 5\n")
    return SimpleNamespace(ply=ply, data=data, cfg=cfg, root=tmp_path,
                           files=[ply, cfg, data / "transforms_train.json", data / "points3d.ply"])


# -- check_output itself ----------------------------------------------------------------------------------


def test_check_output_refuses_an_input_by_path_symlink_or_hard_link(tmp_path):
    src = tmp_path / "in.ply"
    src.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    for out in (src, tmp_path / "sub" / ".." / "in.ply", Path(os.path.relpath(src))):
        with pytest.raises(RaveError, match="same file as the input"):
            check_output(out, src)
        with pytest.raises(RaveError, match="same file as the input"):
            check_output(out, src, force=True)  # force never allows replacing an input
    hard = tmp_path / "hard.ply"
    os.link(src, hard)
    with pytest.raises(RaveError, match=r"-o/--output is the same file as the input .*in\.ply"):
        check_output(hard, None, src, force=True)
    assert check_output(tmp_path / "new.ply", src, None) == tmp_path / "new.ply"


def test_check_output_symlink_fifo_readonly_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"v")
    link = tmp_path / "link.out"
    link.symlink_to(victim)
    with pytest.raises(RaveError, match="--out is a symbolic link"):
        check_output(link, flag="--out")
    check_output(link, force=True)
    with pytest.raises(RaveError, match="same file as the input"):  # the link points at an input
        check_output(link, victim)
    check_output(link, victim, force=True)  # with force the link is replaced, the input is not touched
    with pytest.raises(RaveError, match="same file as the input"):
        check_output(link, link, force=True)
    dangling = tmp_path / "dangling.out"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(RaveError, match="symbolic link"):
        check_output(dangling)
    fifo = tmp_path / "fifo.out"
    os.mkfifo(fifo)
    with pytest.raises(RaveError, match="is a FIFO"):
        check_output(fifo)
    check_output(fifo, force=True)
    ro = tmp_path / "ro.out"
    ro.write_bytes(b"r")
    ro.chmod(0o444)
    with pytest.raises(RaveError, match="read-only"):
        check_output(ro)
    check_output(ro, force=True)
    for force in (False, True):
        with pytest.raises(RaveError, match="is a folder"):
            check_output(tmp_path, force=force)
    with pytest.raises(RaveError, match="longer than 255 bytes"):
        check_output(tmp_path / ("n" * 256))
    with pytest.raises(RaveError, match="cannot use this output path"):
        check_output(victim / "x.out")  # a file where a folder should be
    assert victim.read_bytes() == b"v" and ro.read_bytes() == b"r"


# -- -o equal to an input ---------------------------------------------------------------------------------


def test_build_refuses_an_output_equal_to_an_input(inputs, capsys):
    before = _snapshot(*inputs.files)
    base = ["build", inputs.ply, "--data", inputs.data, "--quiet"]
    _refused([*base, "-o", inputs.ply], capsys, inputs.ply, "-o/--output is the same file as the input")
    _refused([*base, "-o", inputs.root / "data" / ".." / "model.ply"], capsys, "same file as the input")
    _refused([*base, "-o", inputs.data / "points3d.ply"], capsys, "same file as the input")
    _refused([*base, "--config", inputs.cfg, "-o", inputs.cfg], capsys, "same file as the input")
    os.link(inputs.ply, inputs.root / "hard.ckpt")
    _refused([*base, "-o", inputs.root / "hard.ckpt"], capsys, "hard.ckpt", "same file as the input")
    _refused([*base, "-o", inputs.data], capsys, "same file as the input")
    (inputs.root / "folder.ckpt").mkdir()
    _refused([*base, "-o", inputs.root / "folder.ckpt"], capsys, "is a folder")
    assert _snapshot(*inputs.files) == before


def test_train_refuses_outputs_that_would_replace_an_input(inputs, capsys):
    before = _snapshot(*inputs.files)
    _refused(["train", inputs.data, "-o", inputs.data / "points3d.ply"], capsys, "same file as the input")
    # the run record beside the PLY: data/transforms_train.ply -> data/transforms_train.json (the dataset's)
    _refused(["train", inputs.data, "-o", inputs.data / "transforms_train.ply"], capsys,
             "the run record of -o/--output is the same file as the input", "transforms_train.json")
    _refused(["train", inputs.data, "-o", inputs.root / "cfg.ply", "--config", inputs.cfg], capsys,
             "run record", "cfg.json")
    assert _snapshot(*inputs.files) == before
    assert not (inputs.root / "cfg.ply").exists()


def test_eval_refuses_report_files_that_are_inputs(inputs, capsys):
    rep = inputs.root / "rep"
    rep.mkdir()
    ck = rep / "rd.json"  # a checkpoint that happens to sit where the report goes
    ck.write_bytes(b"checkpoint bytes")
    _refused(["eval", ck, "-o", rep, "--quiet"], capsys, "a report file in -o/--out is the same file as the input")
    assert ck.read_bytes() == b"checkpoint bytes"
    _refused(["eval", inputs.ply, "-o", inputs.ply, "--quiet"], capsys, "not a folder")
    assert inputs.ply.read_bytes() == b"ply\nnot really\n"


def test_generate_refuses_folders_it_would_lose(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    _refused(["generate", mine, "--overwrite"], capsys, "not a dataset written by `rave generate`", "--force")
    link = tmp_path / "link"
    link.symlink_to(mine)
    _refused(["generate", link, "--overwrite"], capsys, "symbolic link")
    monkeypatch.chdir(mine)
    _refused(["generate", ".", "--overwrite", "--force"], capsys, "current folder")
    _refused(["generate", tmp_path, "--overwrite", "--force"], capsys, "current folder")
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["link", "photos"]


def test_generate_overwrites_its_own_dataset_and_replaces_a_symlink_only_with_force(tmp_path, capsys):
    small = ["--views", "2", "--size", "16", "--spp", "1", "--points", "5"]
    out = tmp_path / "ds"
    assert main(["generate", str(out), *small]) == 0
    assert main(["generate", str(out), *small, "--seed", "1", "--overwrite"]) == 0  # its own: no --force needed
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    capsys.readouterr()
    _refused(["generate", link, *small], capsys, "symbolic link")
    assert main(["generate", str(link), *small, "--overwrite", "--force"]) == 0
    assert link.is_dir() and not link.is_symlink() and (link / "scene.json").exists()
    assert os.listdir(target) == ["keep.txt"] and (target / "keep.txt").read_text() == "keep"


# -- symlink / FIFO / read-only outputs: refused, and with --force replaced by a regular file ----------------


def _fake_build(monkeypatch):
    import rave_viewer.rave.build as build_mod
    from rave_viewer.fileio import atomic_write_bytes

    def fake(ply, data, out, cfg, progress=True, **kw):
        atomic_write_bytes(out, b"fake checkpoint")
        return None

    monkeypatch.setattr(build_mod, "build", fake)


def _fake_train(monkeypatch):
    import rave_viewer.train.run as run_mod
    from rave_viewer.fileio import atomic_write_text

    def fake(data_dir, out, cfg, config_file=None, progress=True, **kw):
        atomic_write_text(out, "fake model")
        atomic_write_text(run_mod.run_json_path(out), "{}")
        r = SimpleNamespace(interrupted=False, metrics={"train_psnr": 1.0, "test_psnr": None}, gaussians=[],
                            wall_time_s=0.0, backend="cpu")
        return r, Path(out)

    monkeypatch.setattr(run_mod, "train_folder", fake)


def _special(kind: str, path: Path, victim: Path) -> None:
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"read-only old output")
        path.chmod(0o444)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "readonly"])
@pytest.mark.parametrize("command", ["build", "train"])
def test_special_outputs_refused_and_replaced_with_force(command, kind, inputs, capsys, monkeypatch):
    (_fake_build if command == "build" else _fake_train)(monkeypatch)
    victim = inputs.root / "victim.bin"
    victim.write_bytes(b"someone else's file")
    out = inputs.root / ("out.ckpt" if command == "build" else "out.ply")
    _special(kind, out, victim)
    argv = (["build", inputs.ply, "--data", inputs.data, "-o", out, "--quiet"] if command == "build"
            else ["train", inputs.data, "-o", out, "--quiet"])
    words = {"symlink": "symbolic link", "fifo": "FIFO", "readonly": "read-only"}[kind]
    _refused(argv, capsys, out, words, "--force")
    assert victim.read_bytes() == b"someone else's file"
    assert main([str(a) for a in argv] + ["--force"]) == 0, capsys.readouterr().err
    assert out.is_file() and not out.is_symlink()
    assert out.read_bytes() == (b"fake checkpoint" if command == "build" else b"fake model")
    assert victim.read_bytes() == b"someone else's file"
    assert not [p for p in os.listdir(inputs.root) if p.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "readonly"])
def test_eval_report_file_special_refused(kind, inputs, capsys):
    rep = inputs.root / "rep"
    rep.mkdir()
    victim = inputs.root / "victim.bin"
    victim.write_bytes(b"v")
    _special(kind, rep / "rd.csv", victim)
    _refused(["eval", inputs.ply, "-o", rep, "--quiet"], capsys, "rd.csv", "--force")
    # with --force the output check passes: the next error is about the (fake) checkpoint itself
    err = _refused(["eval", inputs.ply, "-o", rep, "--quiet", "--force"], capsys, inputs.ply)
    assert "rd.csv" not in err
    assert victim.read_bytes() == b"v"


def test_a_250_character_output_name_works(inputs, capsys, monkeypatch):
    _fake_build(monkeypatch)
    out = inputs.root / ("c" * 245 + ".ckpt")
    assert main(["build", str(inputs.ply), "--data", str(inputs.data), "-o", str(out), "--quiet"]) == 0
    assert out.read_bytes() == b"fake checkpoint"
    _refused(["build", inputs.ply, "--data", inputs.data, "-o", inputs.root / ("c" * 251 + ".ckpt")], capsys,
             "longer than 255 bytes")


# -- signals ----------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from rave_viewer.errors import guarded
    from rave_viewer.fileio import atomic_write

    def body():
        with atomic_write(sys.argv[1]) as f:
            for i in range(400):  # at most 400 MB, slowly: the test signals long before the end
                f.write(b"x" * (1 << 20))
                if i == 16:
                    f.flush()
                    print("writing", flush=True)
                time.sleep(0.02 if i > 16 else 0)
        return 0

    sys.exit(guarded(body))
""")


def _writer(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, text=True)
    assert p.stdout.readline().strip() == "writing"
    return p


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated by SIGTERM"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_write_leaves_no_temp_and_the_old_file(tmp_path, sig, code, word):
    out = tmp_path / "big.bin"
    out.write_bytes(b"the previous output")
    p = _writer(out)
    tmps = [n for n in os.listdir(tmp_path) if n.startswith(".rave-")]
    assert len(tmps) == 1 and (tmp_path / tmps[0]).stat().st_size > 16 << 20  # a big temp file exists
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and err.strip() == word, err
    assert os.listdir(tmp_path) == ["big.bin"]
    assert out.read_bytes() == b"the previous output"


def test_after_sigkill_a_short_temp_may_remain_and_later_writes_leave_it(tmp_path):
    out = tmp_path / "big.bin"
    p = _writer(out)
    p.kill()  # cannot be caught: documented leftover
    p.communicate(timeout=60)
    left = [n for n in os.listdir(tmp_path) if n.startswith(".rave-") and n.endswith(".tmp")]
    assert len(left) == 1 and not out.exists()
    from rave_viewer.fileio import atomic_write_bytes

    atomic_write_bytes(out, b"next run")
    assert out.read_bytes() == b"next run" and (tmp_path / left[0]).exists()


def test_sigterm_through_the_rave_command_exits_143_in_one_line(tmp_path):
    """The real entry point installs the handler: SIGTERM while a command runs is one line, exit 143."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import sys, time, rave_viewer.commands.info as m\n"
            "def run(args):\n    print('running', flush=True)\n    time.sleep(60)\n"
            "m.run = run\nfrom rave_viewer.cli import main\nsys.exit(main(['info', 'x.ckpt']))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         text=True, cwd=tmp_path)
    assert p.stdout.readline().strip() == "running"
    time.sleep(0.1)
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip() == "terminated by SIGTERM"


SLOW_IMPORT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from rave_viewer.errors import guarded

    def body():
        import slowmod  # prints 'importing', sleeps 1.5 s, prints 'imported'
        print('after import', flush=True)
        time.sleep(30)
        return 0

    sys.exit(guarded(body))
""")


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated by SIGTERM")])
def test_a_signal_during_an_import_is_held_until_the_import_finished(tmp_path, sig, code, word):
    """Raised inside an import, KeyboardInterrupt can leave numpy/torch half-initialised (then ImportError or
    an abort instead of one line); the handler delivers it just after the import instead."""
    (tmp_path / "slowmod.py").write_text("import time\nprint('importing', flush=True)\ntime.sleep(1.5)\n"
                                         "print('imported', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", SLOW_IMPORT, str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    assert p.stdout.readline().strip() == "importing"
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code and err.strip() == word, err
    assert out.splitlines()[0] == "imported"  # the import completed, then the signal ended the 30 s sleep
