"""Train from a dataset folder to files: checks first, then the PLY and its run JSON written atomically at the end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import RaveError
from ..fileio import atomic_write_text, check_output
from .config import TrainConfig
from .record import jsonable as _jsonable
from .trainer import TrainResult, train


def run_json_path(ply_path: str | os.PathLike) -> Path:
    """The run record written beside a trained PLY: ``scene.ply`` -> ``scene.json``."""
    return Path(ply_path).with_suffix(".json")


def checkpoint_path(ply_path: str | os.PathLike, suffix: str = ".ply") -> Path:
    """Where an interrupted run leaves its model: ``scene.ply`` -> ``scene.interrupted.ply`` (``suffix``: the
    model file's type, e.g. ``.scaffold``)."""
    p = Path(ply_path)
    return p.with_name(p.stem + ".interrupted" + suffix)


def check_output_path(out: str | os.PathLike, *, force: bool = False, suffix: str = ".ply",
                      what: str = "the output") -> Path:
    """Refuse, before any work, an output that is not a ``suffix`` file path (the message names it as ``what``)
    or that :func:`~rave_viewer.fileio.check_output` refuses (read-only, symlink, FIFO unless ``force``)."""
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise RaveError(f"{what} must be a {suffix} file", out)
    return check_output(out, force=force)


def start_line(dataset, cfg: TrainConfig) -> str:
    """What a run is about to do: views and their resolution, steps, backend."""
    tr, te = dataset.train, dataset.test
    test = f"{len(te)} test views" + (f" at {te.width}x{te.height}" if len(te) and (te.width, te.height) !=
                                      (tr.width, tr.height) else "")
    down = f", downscale {cfg.downscale}" if cfg.downscale > 1 else ""
    return (f"training on {len(tr)} views at {tr.width}x{tr.height} ({test}{down}): {cfg.steps:,} steps, "
            f"backend {cfg.backend}, seed {cfg.seed}")


def check_dataset_folder(data_dir: str | os.PathLike) -> Path:
    """One-line errors for a missing or empty dataset folder (the loader reports the rest)."""
    p = Path(data_dir)
    if not p.exists():
        raise RaveError("dataset folder not found", p)
    if p.is_dir() and not any(p.iterdir()):
        raise RaveError("dataset folder is empty (expected COLMAP sparse/ + images/ or transforms.json)", p)
    return p


def load_training_data(data_dir: str | os.PathLike, cfg, line: Callable[[Any, Any], str], *, progress: bool,
                       allow_outside_paths: bool):
    """The dataset of a run (``cfg``: a training config with ``downscale``, ``test_every``, ``background``);
    with ``progress`` its notes and ``line(dataset, cfg)`` (what the run will do) go to stderr."""
    from ..scene.datasets import load_dataset

    check_dataset_folder(data_dir)
    dataset = load_dataset(data_dir, downscale=cfg.downscale, test_every=cfg.test_every,
                           background=tuple(cfg.background), allow_outside_paths=allow_outside_paths)
    if progress:
        for note in dataset.notes:
            print(f"note: {note}", file=sys.stderr)
        print(line(dataset, cfg), file=sys.stderr)
    return dataset


def write_run_record(model_path: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write a run's summary (NaN/inf as null) atomically to :func:`run_json_path` of ``model_path``."""
    js = run_json_path(model_path)
    atomic_write_text(js, json.dumps(_jsonable(summary), indent=1) + "\n")
    return js


def write_outputs(result: TrainResult, ply_path: str | os.PathLike, **record: Any) -> Path:
    """Write the PLY (atomically) and then its run JSON (atomically); returns the JSON path."""
    from ..scene.ply import write_ply

    ply_path = Path(ply_path)
    write_ply(result.gaussians, ply_path)
    summary = result.summary()
    summary.update({"output": str(ply_path), **record})
    return write_run_record(ply_path, summary)


def train_folder(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig, *,
                 config_file: str | os.PathLike | None = None, progress: bool = True,
                 record: dict[str, Any] | None = None, force: bool = False,
                 allow_outside_paths: bool = False) -> tuple[TrainResult, Path]:
    """Load ``data_dir``, train with ``cfg`` and write ``out`` (+ its JSON); returns (result, written PLY).

    Every input is checked before training starts; the PLY appears only once training finished. An
    interrupted run (Ctrl-C) writes :func:`checkpoint_path` instead, and ``result.interrupted`` is True.
    ``record``: extra JSON-ready entries for the run JSON; ``force``: see :func:`check_output_path`;
    ``allow_outside_paths``: see :func:`~rave_viewer.scene.datasets.load_dataset`. With ``progress``, one
    :func:`start_line` goes to stderr before training.
    """
    out = check_output_path(out, force=force)
    dataset = load_training_data(data_dir, cfg, start_line, progress=progress,
                                 allow_outside_paths=allow_outside_paths)
    result = train(dataset, cfg, progress=progress)
    target = checkpoint_path(out) if result.interrupted else out
    write_outputs(result, target, data_dir=str(data_dir),
                  config_file=None if config_file is None else str(config_file), **(record or {}))
    return result, target
