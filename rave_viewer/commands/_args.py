"""Shared argparse pieces of the commands: range-checked number types, --force, and a dataset's own files."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

from ..errors import shown

#: Bounds shared by several commands (also stated in their --help).
MAX_SEED = 2**32 - 1  # numpy/torch seeds: non-negative, 32 bits is what every generator takes as is
MAX_STEPS = 10_000_000  # training / fine-tuning steps
MAX_SIZE = 8192  # generated image width/height in pixels
MAX_VIEWS = 10_000  # generated views
MAX_RATES = 10_000  # evaluated operating points


def _shown(text: str) -> str:
    """The user's value for a one-line message: as typed (repr-escaped if unprintable), at most 40 characters."""
    return shown(text, quote=False)


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer in ``lo..hi`` (inclusive), else "must be an integer in lo..hi, got X"."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except (TypeError, ValueError):  # also a 5000-digit string (int's digit limit)
            raise argparse.ArgumentTypeError(f"must be an integer in {lo}..{hi}, got {_shown(text)}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo}..{hi}, got {_shown(str(v))}")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """argparse ``type=``: a finite number in ``lo..hi`` (``(lo, hi]`` with ``lo_open``); nan and inf refused."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError, OverflowError):
            v = math.nan
        if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
            raise argparse.ArgumentTypeError(f"must be a finite number in {span}, got {_shown(text)}")
        return v

    parse.__name__ = "float"
    return parse


def add_force(p: argparse.ArgumentParser) -> None:
    """The --force flag every writing command has (see :func:`rave_viewer.fileio.check_output`)."""
    p.add_argument("--force", action="store_true",
                   help="replace an output that is a symlink, FIFO/device or read-only file (never an input)")


def dataset_files(data: str | os.PathLike | None) -> list[Path]:
    """A dataset folder (or transforms file) and the files of it an output could collide with.

    The folder itself, its top-level files and those in ``sparse/`` and ``sparse/0/`` (transforms*.json,
    points3d.ply, scene.json, COLMAP models); images are left out (outputs are .ply/.json/.ckpt/...).
    Pass them as inputs to :func:`~rave_viewer.fileio.check_output`.
    """
    if data is None:
        return []
    root = Path(data)
    files = [root]
    folder = root if root.is_dir() else root.parent
    for d in (folder, folder / "sparse", folder / "sparse" / "0"):
        try:
            files += [e for e in d.iterdir() if e.is_file()]
        except OSError:
            pass
    return files
