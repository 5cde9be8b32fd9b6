"""Scaffold-GS training configuration: one dataclass of documented defaults, read from YAML with strict checks.

Defaults follow the authors' Scaffold-GS code (``arguments/__init__.py`` of city-super/Scaffold-GS) except
where noted in a field's doc: ``steps`` is 7,000 like our 3DGS trainer (the paper trains 30,000) and the
step-based growing schedule is written for 30,000 steps and, with ``scale_schedule: true`` (default),
multiplied by ``steps / 30000`` like :class:`rave_viewer.train.config.TrainConfig`. A YAML file holds the
fields at the top level, or under a ``train:`` key of a recipe (``rave train --model scaffold
--help-config`` prints them all). Unknown keys, wrong types, NaN/inf and out-of-range values raise
:class:`RaveError` naming the file and the key; the YAML file itself is read by the 3DGS config's reader
and checked by the same code (:mod:`rave_viewer.train.options`: size cap, one-line parse errors).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ..train.config import MAX_POINTS, MAX_SEED, MAX_STEPS
from ..train.options import Options
from ..train.options import option as _f

BACKENDS = ("auto", "cpu", "gsplat", "reference")
INIT_MODES = ("auto", "points", "random")
REFERENCE_STEPS = 30_000


@dataclass
class ScaffoldConfig:
    """All options of ``rave train --model scaffold``; each field's ``metadata["doc"]`` says what it does."""

    # -- run ------------------------------------------------------------------------------------------------
    steps: int = _f(7000, "Number of optimisation steps, one training view each (the paper: 30,000).", min=1,
                    max=MAX_STEPS)
    seed: int = _f(0, "Seed of every random choice (initialisation, MLP weights, view order, growing).", min=0,
                   max=MAX_SEED)
    backend: str = _f("auto", "Renderer of the neural Gaussians: auto (gsplat with CUDA, else cpu), cpu, gsplat, "
                      "reference (dense pure-torch oracle, tiny scenes only).", choices=BACKENDS)
    eval_every: int = _f(500, "Render the test views every this many steps and show their PSNR on the progress "
                         "bar (0: only at the end).", min=0, max=MAX_STEPS)
    eval_max_views: int = _f(8, "At most this many test views for the periodic PSNR (the final figures use all "
                             "views).", min=1, max=100_000)

    # -- data -----------------------------------------------------------------------------------------------
    downscale: int = _f(1, "Integer image downscale factor applied when loading the dataset.", min=1, max=1024)
    test_every: int = _f(8, "Every N-th image is a test view (datasets without an explicit test split).", min=1,
                         max=1_000_000)
    background: list = _f([0.0, 0.0, 0.0], "RGB background in [0, 1] behind the neural Gaussians.", min=0.0,
                          max=1.0, length=3)

    # -- model ----------------------------------------------------------------------------------------------
    feat_dim: int = _f(32, "Length of each anchor's feature vector (also the MLPs' hidden width).", min=1,
                       max=1024)
    n_offsets: int = _f(10, "k: neural Gaussians (learnable offsets) per anchor.", min=1, max=256)
    voxel_size: float = _f(0.0, "Anchor voxel size in world units; 0: automatic, the median RMS distance of the "
                           "initial points to their 3 nearest neighbours (the authors' scripts set a fixed size "
                           "per dataset, e.g. 0.001; their automatic mode takes the median squared distance).",
                           min=0.0)
    opacity_dist: bool = _f(False, "Feed the anchor-camera distance to the opacity MLP as well as the feature and "
                            "the viewing direction (the authors' add_opacity_dist; off by default there).")
    cov_dist: bool = _f(False, "Feed the distance to the covariance MLP (add_cov_dist).")
    color_dist: bool = _f(False, "Feed the distance to the colour MLP (add_color_dist).")
    init: str = _f("auto", "Initial anchors: points (voxelized dataset points), random (uniform in the scene "
                   "bounds), auto (points if the dataset has them).", choices=INIT_MODES)
    init_num_points: int = _f(10_000, "Number of random initial points before voxelization (init: random).",
                              min=1, max=MAX_POINTS)
    init_max_points: int = _f(100_000, "Randomly subsample the dataset's points to at most this many.", min=1,
                              max=MAX_POINTS)
    init_extent: float = _f(1.0, "Random init: half-size of the cube around the cameras' mean centre, in units "
                            "of the scene scale.", min=0.0, min_exclusive=True)

    # -- optimiser (the authors' learning rates; *_final: exponential decay to this value by the last step) --
    offset_lr: float = _f(0.01, "Adam learning rate of the offsets, times the scene scale.", min=0.0)
    offset_lr_final: float = _f(1e-4, "Final learning rate of the offsets, times the scene scale.", min=0.0)
    feature_lr: float = _f(0.0075, "Adam learning rate of the anchor features.", min=0.0)
    scaling_lr: float = _f(0.007, "Adam learning rate of the anchors' log-scalings.", min=0.0)
    anchor_lr: float = _f(0.0, "Adam learning rate of the anchor positions, times the scene scale (the authors "
                          "keep anchors fixed: 0).", min=0.0)
    mlp_opacity_lr: float = _f(0.002, "Adam learning rate of the opacity MLP.", min=0.0)
    mlp_opacity_lr_final: float = _f(2e-5, "Final learning rate of the opacity MLP.", min=0.0)
    mlp_cov_lr: float = _f(0.004, "Adam learning rate of the covariance MLP.", min=0.0)
    mlp_cov_lr_final: float = _f(0.004, "Final learning rate of the covariance MLP.", min=0.0)
    mlp_color_lr: float = _f(0.008, "Adam learning rate of the colour MLP.", min=0.0)
    mlp_color_lr_final: float = _f(5e-5, "Final learning rate of the colour MLP.", min=0.0)
    ssim_lambda: float = _f(0.2, "Loss = (1 - lambda) * L1 + lambda * (1 - SSIM) + scaling_reg * mean volume.",
                            min=0.0, max=1.0)
    scaling_reg: float = _f(0.01, "Weight of the mean product of the neural Gaussians' three scales (the "
                            "authors' volume regulariser).", min=0.0)

    # -- anchor growing and pruning (30k-step units when scale_schedule) ------------------------------------
    scale_schedule: bool = _f(True, "Multiply start_stat, update_from, update_interval and update_until by "
                              "steps / 30000.")
    start_stat: int = _f(500, "Accumulate growing/pruning statistics after this step.", min=0, max=MAX_STEPS)
    update_from: int = _f(1500, "Grow and prune anchors after this step.", min=0, max=MAX_STEPS)
    update_interval: int = _f(100, "Grow and prune every this many steps.", min=1, max=MAX_STEPS)
    min_update_interval: int = _f(50, "Lower bound on the scaled update_interval (the statistics need that many "
                                  "views to be seen).", min=1, max=MAX_STEPS)
    update_until: int = _f(15_000, "Stop growing and pruning at this step.", min=0, max=MAX_STEPS)
    grow_grad2d: float = _f(2e-4, "Grow new anchors where a neural Gaussian's mean screen-space gradient (NDC "
                            "units, as 3DGS) exceeds this (x2 per finer level).", min=0.0)
    update_depth: int = _f(3, "Number of grid levels new anchors are grown on.", min=1, max=8)
    update_init_factor: int = _f(16, "Coarsest growing grid = this x the voxel size.", min=1, max=1 << 20)
    update_hierachy_factor: int = _f(4, "Each finer growing grid is this many times smaller.", min=1, max=64)
    success_threshold: float = _f(0.8, "A neural Gaussian's statistic counts when it was visible in at least "
                                  "this fraction of half an interval's views (an anchor's: of a whole interval).",
                                  min=0.0, max=1.0)
    min_opacity: float = _f(0.005, "Prune anchors whose neural Gaussians' mean summed opacity per view falls "
                            "below this.", min=0.0, max=1.0)
    max_log_scale: float = _f(0.05, "After pruning, clamp the anchors' log-scalings of the neural Gaussians at "
                              "this value (the authors' code does; a large value disables it).", min=-100.0,
                              max=100.0)
    max_anchors: int = _f(5_000_000, "Stop growing once there are this many anchors.", min=1, max=MAX_POINTS)

    # ------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), (list, tuple)) else v)
                for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "ScaffoldConfig":
        """A copy with ``changes`` applied, checked like values from a file."""
        return from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class GrowSchedule:
    """Absolute step numbers (1-based, like the authors' loop) of one run's growing and pruning."""

    start_stat: int
    update_from: int
    update_interval: int
    update_until: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def grow_schedule(cfg: ScaffoldConfig) -> GrowSchedule:
    """The config's step fields scaled to ``cfg.steps`` (see the module docstring)."""
    f = cfg.steps / REFERENCE_STEPS if cfg.scale_schedule else 1.0
    return GrowSchedule(start_stat=int(cfg.start_stat * f), update_from=int(cfg.update_from * f),
                        update_interval=max(int(cfg.update_interval * f), cfg.min_update_interval, 1),
                        update_until=int(cfg.update_until * f))


_OPTIONS = Options(ScaffoldConfig, "rave train --model scaffold --help-config")


def describe() -> str:
    """Every option with its default and documentation, as YAML comments."""
    return _OPTIONS.describe()


def from_dict(d: dict[str, Any], path: str | os.PathLike | None = None) -> ScaffoldConfig:
    """A :class:`ScaffoldConfig` from a mapping; unknown keys and bad values raise RaveError naming ``path``."""
    return _OPTIONS.from_dict(d, path)


def load_config(path: str | os.PathLike | None) -> ScaffoldConfig:
    """The config in the YAML file ``path`` (defaults for None or an empty file; a recipe's ``train:`` part)."""
    return _OPTIONS.load(path)
