"""``rave-view``: bad files are one-line errors with exit code 2; a good start prints a URL that serves the app."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

import rave_viewer
from rave_viewer.cli import view_main
from viewer_fakes import one_line_error, spawn_view, stop_view, wait_for_line

_ROOT = os.pathsep.join([os.path.dirname(os.path.dirname(rave_viewer.__file__)), os.environ.get("PYTHONPATH", "")])


@pytest.mark.parametrize(
    "make",
    [
        lambda d, f: d / "nope.ckpt",
        lambda d, f: _write(d / "cut.ckpt", f["ckpt"].read_bytes()[:1000]),
        lambda d, f: _write(d / "cut.rave", f["rave"].read_bytes()[:50]),
        lambda d, f: _write(d / "scene.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n"),
        lambda d, f: _write(d / "image.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
    ],
    ids=["missing", "truncated-ckpt", "truncated-rave", "broken-ply", "wrong-format"],
)
def test_bad_file_is_one_line_and_exit_2(tmp_path, scene_files, capsys, make):
    path = make(tmp_path, scene_files)
    assert view_main([str(path), "--port", "0"]) == 2
    assert str(path) in one_line_error(capsys)


def _write(p, data):
    p.write_bytes(data)
    return p


def test_gsplat_backend_without_cuda_is_one_line(scene_files, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: gsplat is a valid backend here")
    assert view_main([str(scene_files["ckpt"]), "--backend", "gsplat"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs CUDA" in err and "\n" not in err


def test_no_argument_opens_the_demo_scene_and_serves(tmp_path, scene_files):
    (tmp_path / "trained_scenes").mkdir()
    shutil.copy(scene_files["ply"], tmp_path / "trained_scenes" / "demo.ply")  # no .ckpt: falls back, says so
    proc = spawn_view(["--port", "0"], tmp_path)
    try:
        m, text = wait_for_line(proc, r"open (http://127\.0\.0\.1:\d+/)")
        assert m is not None, text
        url = m.group(1)
        assert "opening the demo scene" in text and "no .ckpt" in text and "demo.ply" in text
        assert "without the bitrate controls" in text or "bitrate controls are off" in text
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
    finally:
        rc = stop_view(proc)
    assert rc == 130  # Ctrl+C: "interrupted"


@pytest.mark.parametrize("delay", [0.5, 2.0, 4.0])
def test_ctrl_c_during_start_up_is_one_line(scene_files, tmp_path, delay):
    """Ctrl+C while the viewer loads (imports, decoding, warm-up render): 'interrupted', exit 130, no traceback."""
    proc = spawn_view([scene_files["ckpt"], "--port", "0"], tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"rave-view did not exit after Ctrl+C during start-up:\n{out}")
    assert "Traceback" not in out, out
    assert proc.returncode == 130 and "interrupted" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--rate", "1B"], "--rate 1B is below the lowest operating point"),
        (["--count", "3"], "--count 3 is below the lowest operating point"),
        (["--psnr", "-5"], "--psnr -5.0 is below the lowest operating point"),
        (["--rate", "lots"], "cannot read the rate"),
    ],
)
def test_bad_start_target_is_one_line(scene_files, capsys, argv, needle):
    assert view_main([str(scene_files["ckpt"]), "--port", "0", *argv]) == 2
    assert needle in one_line_error(capsys)


def test_psnr_start_on_a_rave_stream_is_refused(scene_files, capsys):
    assert view_main([str(scene_files["rave"]), "--port", "0", "--psnr", "30"]) == 2
    assert "cannot be targeted by psnr" in capsys.readouterr().err


def test_max_gaussians_bounds_what_a_rave_stream_may_declare(scene_files, capsys):
    assert view_main([str(scene_files["rave"]), "--port", "0", "--max-gaussians", "1000"]) == 2
    err = one_line_error(capsys)
    assert str(scene_files["rave"]) in err and "1000" in err.replace(",", "")
