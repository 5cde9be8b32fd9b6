"""Training configuration: one dataclass of documented defaults, loaded from YAML with strict checking.

Every field has a default, so an empty YAML file (or none) trains with the defaults below. A YAML file may
hold the fields at the top level, or under a ``train:`` key beside a ``scene:`` section (the demo recipes in
``assets/``). Unknown keys, values of the wrong type and out-of-range values raise :class:`RaveError` naming
the file and the key.

Step-based schedule fields (``refine_*``, ``reset_every``, ``sh_degree_interval``) are written for gsplat's
30k-step schedule and, with ``scale_schedule: true`` (default), multiplied by ``steps / 30000`` like gsplat's
``steps_scaler`` (see :func:`rave_viewer.train.schedule.scaled_schedule`).

Values are checked when the file is read, before any work starts. Counts have documented upper limits, so a
typo cannot ask for gigabytes or years of work: ``MAX_STEPS`` (10 million) for steps and step periods,
``MAX_POINTS`` (50 million) for Gaussian counts, 1024 for the image downscale, 100,000 periodic test views.
YAML NaN/inf, numbers too large for a float, unknown keys and files over 1 MiB are refused.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .options import MAX_CONFIG_BYTES, RECIPE_KEYS, Options, read_yaml
from .options import option as _f

BACKENDS = ("auto", "cpu", "gsplat", "reference")
INIT_MODES = ("auto", "points", "random")
STRATEGIES = ("default", "mcmc")
MAX_STEPS = 10_000_000  # optimisation steps and step periods (30k is a full 3DGS training)
MAX_POINTS = 50_000_000  # Gaussians (each ~1 KB with its optimiser state: 50M is ~50 GB)
MAX_SEED = 2**32 - 1  # = commands._args.MAX_SEED: every numpy/torch generator takes it as is
__all__ = ["MAX_CONFIG_BYTES", "MAX_POINTS", "MAX_SEED", "MAX_STEPS", "PRESETS", "RECIPE_KEYS", "TrainConfig",
           "describe", "from_dict", "load_config", "read_yaml"]


@dataclass
class TrainConfig:
    """All options of ``rave train``; each field's ``metadata["doc"]`` says what it does (see :func:`describe`)."""

    # -- run ------------------------------------------------------------------------------------------------
    steps: int = _f(7000, "Number of optimisation steps (one training view per step).", min=1,
                     max=MAX_STEPS)
    seed: int = _f(0, "Seed of every random choice (initialisation, view order, densification noise).", min=0,
                    max=MAX_SEED)
    backend: str = _f("auto", "Renderer: auto (gsplat when CUDA is present, else cpu), cpu, gsplat, reference "
                      "(dense pure-torch oracle, tiny scenes only).", choices=BACKENDS)
    eval_every: int = _f(500, "Render the test views every this many steps and show their PSNR on the "
                         "progress bar (0: only at the end).", min=0, max=MAX_STEPS)
    eval_max_views: int = _f(8, "At most this many test views for the periodic PSNR (the final figures use "
                             "all views).", min=1, max=100_000)

    # -- data -----------------------------------------------------------------------------------------------
    downscale: int = _f(1, "Integer image downscale factor applied when loading the dataset.", min=1,
                       max=1024)
    test_every: int = _f(8, "Every N-th image is a test view (datasets without an explicit test split).", min=1,
                        max=1_000_000)
    background: list = _f([0.0, 0.0, 0.0], "RGB background in [0, 1]: composited under RGBA images and "
                          "behind the Gaussians when rendering.", min=0.0, max=1.0, length=3)

    # -- model and initialisation ---------------------------------------------------------------------------
    sh_degree: int = _f(3, "Maximum spherical-harmonics degree (0-3; each degree costs 3x(2d+1) floats).",
                        min=0, max=3)
    sh_degree_interval: int = _f(1000, "Raise the SH degree used in training by one every this many steps "
                                 "(30k-step schedule units).", min=1, max=MAX_STEPS)
    init: str = _f("auto", "Initial points: points (dataset's COLMAP points3D / points3d.ply), random "
                   "(uniform in the scene bounds), auto (points if the dataset has them).", choices=INIT_MODES)
    init_num_points: int = _f(20_000, "Number of random initial points (init: random).", min=1,
                              max=MAX_POINTS)
    init_max_points: int = _f(100_000, "Randomly subsample the dataset's points to at most this many.", min=1,
                              max=MAX_POINTS)
    init_extent: float = _f(1.0, "Random init: half-size of the cube around the cameras' mean centre, in "
                            "units of the scene scale.", min=0.0, min_exclusive=True)
    init_min_views: float = _f(0.0, "Random init: keep a random point only where at least this fraction of the "
                               "training views (and at least 2) see it, coloured from the photos (0: the whole "
                               "cube, random colours; on a generated hard capture 0.2 fit the training views "
                               "better but the test views 0.5 dB worse: benchmarks/CAPTURE.md).", min=0.0,
                               max=1.0)
    init_sky_points: int = _f(0, "Add this many candidate points on a sphere around the cameras (kept where a "
                              "training view sees them, coloured from the images) to model a distant "
                              "background such as a sky; 0: none.", min=0, max=MAX_POINTS)
    init_sky_radius: float = _f(3.0, "Radius of that sphere in units of the scene scale.", min=0.0,
                                min_exclusive=True)
    init_opacity: float = _f(0.1, "Initial opacity of every Gaussian (after the sigmoid).", min=0.0, max=1.0,
                             min_exclusive=True)
    init_scale: float = _f(1.0, "Initial scale = this x RMS distance to the 3 nearest neighbours (as 3DGS).", min=0.0,
                           min_exclusive=True)

    # -- optimiser (gsplat simple_trainer learning rates) ---------------------------------------------------
    means_lr: float = _f(1.6e-4, "Adam learning rate of the positions, times the scene scale.", min=0.0)
    means_lr_final: float = _f(0.01, "Positions' learning rate decays exponentially to this fraction by the "
                               "last step.", min=0.0, min_exclusive=True)
    scales_lr: float = _f(5e-3, "Adam learning rate of the log-scales.", min=0.0)
    quats_lr: float = _f(1e-3, "Adam learning rate of the quaternions.", min=0.0)
    opacities_lr: float = _f(5e-2, "Adam learning rate of the opacity logits.", min=0.0)
    sh0_lr: float = _f(2.5e-3, "Adam learning rate of the SH DC colour.", min=0.0)
    shN_lr: float = _f(2.5e-3 / 20, "Adam learning rate of the higher-order SH coefficients.", min=0.0)
    ssim_lambda: float = _f(0.2, "Loss = (1 - lambda) * L1 + lambda * (1 - SSIM).", min=0.0, max=1.0)
    opacity_reg: float = _f(0.0, "Weight of the mean-opacity regulariser (MCMC uses 0.01).", min=0.0)
    scale_reg: float = _f(0.0, "Weight of the mean-scale regulariser (MCMC uses 0.01).", min=0.0)

    # -- densification (gsplat strategies) ------------------------------------------------------------------
    strategy: str = _f("default", "Densification: default (gsplat DefaultStrategy, the 3DGS paper's "
                       "clone/split/prune) or mcmc (gsplat MCMCStrategy; needs CUDA).", choices=STRATEGIES)
    scale_schedule: bool = _f(True, "Multiply the step-based fields below (and sh_degree_interval) by "
                              "steps / 30000, like gsplat's steps_scaler.")
    refine_start_iter: int = _f(500, "Start densifying after this step (30k-step units).", min=0,
                                max=MAX_STEPS)
    refine_stop_iter: int = _f(15_000, "Stop densifying at this step (30k-step units).", min=0,
                               max=MAX_STEPS)
    refine_every: int = _f(100, "Densify every this many steps (30k-step units).", min=1,
                           max=MAX_STEPS)
    min_refine_every: int = _f(50, "Lower bound on the scaled refine_every: new Gaussians get this many steps to "
                               "settle before the next densification (refining every few steps of a short run "
                               "makes the count explode).", min=1, max=MAX_STEPS)
    reset_every: int = _f(3000, "Opacity-reset period (30k-step units); also gates DefaultStrategy's "
                          "pruning of too-large Gaussians (only after the first period).", min=1,
                          max=MAX_STEPS)
    opacity_reset: bool | None = _f(None, "Reset opacities every reset_every steps with gsplat's reset_opa (the "
                                    "3DGS reference; gsplat 1.5.3's DefaultStrategy never does this itself: its "
                                    "test is always false). Empty (auto): on with a random init (no point cloud: "
                                    "+5 dB on the test views of generated hard captures, benchmarks/CAPTURE.md), "
                                    "off with the dataset's points (the bundled demos).")
    grow_grad2d: float = _f(2e-4, "Clone/split Gaussians whose mean 2D gradient (in NDC units) exceeds this.",
                            min=0.0)
    grow_scale3d: float = _f(0.01, "Clone below / split above this 3D scale (units of the scene scale).",
                             min=0.0)
    prune_opa: float = _f(0.005, "Prune Gaussians whose opacity falls below this.", min=0.0, max=1.0)
    prune_scale3d: float = _f(0.1, "Prune Gaussians larger than this (units of the scene scale).", min=0.0)
    cap_max: int = _f(1_000_000, "MCMC: maximum number of Gaussians.", min=1, max=MAX_POINTS)
    noise_lr: float = _f(5e5, "MCMC: position noise scale.", min=0.0)

    # ------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), (list, tuple)) else v)
                for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied, checked like values from a file."""
        return from_dict({**self.to_dict(), **changes})


_OPTIONS = Options(TrainConfig, "rave train --help-config")


def describe() -> str:
    """Every option with its default and documentation, as YAML comments (``rave train --help-config``)."""
    return _OPTIONS.describe()


def from_dict(d: dict[str, Any], path: str | os.PathLike | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a mapping; unknown keys and bad values raise RaveError naming ``path``."""
    return _OPTIONS.from_dict(d, path)


#: Named recipes ``rave train --config NAME`` accepts instead of a file (a file of that name wins). ``capture``:
#: real captures with few views and no point cloud (phone photos, a generated ``--capture hard``): the 3DGS
#: reference's periodic opacity reset (floaters that fit one view are pushed below the pruning threshold
#: and must earn their opacity back from every view) and a slower SH schedule (view-dependent colour fits
#: noise and specular highlights of single views before the geometry is right). benchmarks/CAPTURE.md measures
#: it against the defaults on a generated hard capture.
PRESETS: dict[str, dict[str, Any]] = {
    "capture": {"opacity_reset": True, "reset_every": 9000, "sh_degree_interval": 3000},
}


def load_config(path: str | os.PathLike | None) -> TrainConfig:
    """The config in the YAML file ``path`` (defaults for None or an empty file), or a named preset
    (:data:`PRESETS`) when ``path`` is a bare name of one and no such file exists.

    The file holds TrainConfig fields at the top level, or a recipe with a ``train:`` section (other recipe
    keys: ``name``, ``description``, ``scene``).
    """
    if path is None:
        return TrainConfig()
    if str(path) in PRESETS and not Path(path).exists():
        return from_dict(dict(PRESETS[str(path)]), f"preset {path}")
    return _OPTIONS.load(path)
