"""Train from a dataset folder to files: checks first, then the PLY and its run JSON written atomically at the end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import RaveError
from ..fileio import atomic_write_text
from .config import TrainConfig
from .trainer import TrainResult, train


def run_json_path(ply_path: str | os.PathLike) -> Path:
    """The run record written beside a trained PLY: ``scene.ply`` -> ``scene.json``."""
    return Path(ply_path).with_suffix(".json")


def checkpoint_path(ply_path: str | os.PathLike) -> Path:
    """Where an interrupted run leaves its model: ``scene.ply`` -> ``scene.interrupted.ply``."""
    p = Path(ply_path)
    return p.with_name(p.stem + ".interrupted.ply")


def check_output_path(out: str | os.PathLike) -> Path:
    """Refuse, before any work, an output that is not a writable ``.ply`` file path."""
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise RaveError("the output must be a .ply file", out)
    if out.is_dir():
        raise RaveError("the output is a folder, expected a .ply file path", out)
    parent = out.parent if str(out.parent) else Path(".")
    anc = parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise RaveError(f"cannot create the output folder: {anc} is a file", out)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise RaveError(f"cannot write to {anc} (permission denied)", out)
    if out.exists() and not os.access(out, os.W_OK):
        raise RaveError("the output file exists and is not writable", out)
    return out


def check_dataset_folder(data_dir: str | os.PathLike) -> Path:
    """One-line errors for a missing or empty dataset folder (the loader reports the rest)."""
    p = Path(data_dir)
    if not p.exists():
        raise RaveError("dataset folder not found", p)
    if p.is_dir() and not any(p.iterdir()):
        raise RaveError("dataset folder is empty (expected COLMAP sparse/ + images/ or transforms.json)", p)
    return p


def _jsonable(x: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_outputs(result: TrainResult, ply_path: str | os.PathLike, **record: Any) -> Path:
    """Write the PLY (atomically) and then its run JSON (atomically); returns the JSON path."""
    from ..scene.ply import write_ply

    ply_path = Path(ply_path)
    write_ply(result.gaussians, ply_path)
    summary = result.summary()
    summary.update({"output": str(ply_path), **record})
    js = run_json_path(ply_path)
    atomic_write_text(js, json.dumps(_jsonable(summary), indent=1) + "\n")
    return js


def train_folder(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig, *,
                 config_file: str | os.PathLike | None = None, progress: bool = True,
                 record: dict[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Load ``data_dir``, train with ``cfg`` and write ``out`` (+ its JSON); returns (result, written PLY).

    Every input is checked before training starts; the PLY appears only once training finished. An
    interrupted run (Ctrl-C) writes :func:`checkpoint_path` instead, and ``result.interrupted`` is True.
    ``record``: extra JSON-ready entries for the run JSON.
    """
    from ..scene.datasets import load_dataset

    out = check_output_path(out)
    check_dataset_folder(data_dir)
    dataset = load_dataset(data_dir, downscale=cfg.downscale, test_every=cfg.test_every,
                           background=tuple(cfg.background))
    result = train(dataset, cfg, progress=progress)
    target = checkpoint_path(out) if result.interrupted else out
    write_outputs(result, target, data_dir=str(data_dir),
                  config_file=None if config_file is None else str(config_file), **(record or {}))
    return result, target
