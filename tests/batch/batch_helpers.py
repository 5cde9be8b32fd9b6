"""Helpers of the batch tests (a module of its own: conftest.py files are not importable by name)."""

from __future__ import annotations

from pathlib import Path

from rave_viewer.cli import main

NAMES = ("alpha", "bravo", "charlie")
#: Build options of every test build: 3 levels, a few fine-tuning steps, the shortest RD table.
TINY_BUILD = "num_levels: 3\nsteps: 4\nrd_points: 64\n"


def run_cli(capsys, *argv) -> tuple[int, str]:
    """``rave ARGV`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def make_scene(root: Path, seed: int) -> None:
    """``root/data`` (16 views at 24 px, 200 points) and ``root/scene.ply`` trained for 20 steps."""
    assert main(["generate", str(root / "data"), "--preset", "objects", "--size", "24", "--views", "16",
                 "--points", "200", "--seed", str(seed), "--spp", "1"]) == 0
    assert main(["train", str(root / "data"), "-o", str(root / "scene.ply"), "--steps", "20", "--quiet"]) == 0
