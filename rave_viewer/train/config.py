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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RaveError, shown
from ..yaml_checks import key_text as _key
from ..yaml_checks import limit_text as _limit
from ..yaml_checks import yaml_value_error as _yaml_value_error

BACKENDS = ("auto", "cpu", "gsplat", "reference")
INIT_MODES = ("auto", "points", "random")
STRATEGIES = ("default", "mcmc")
MAX_STEPS = 10_000_000  # optimisation steps and step periods (30k is a full 3DGS training)
MAX_POINTS = 50_000_000  # Gaussians (each ~1 KB with its optimiser state: 50M is ~50 GB)
MAX_SEED = 2**32 - 1  # = commands._args.MAX_SEED: every numpy/torch generator takes it as is
MAX_CONFIG_BYTES = 1 << 20  # a training config or recipe is a few hundred bytes


def _f(default, doc: str, *, choices: tuple | None = None, min: float | None = None, max: float | None = None,
       min_exclusive: bool = False, length: int | None = None):
    """A dataclass field carrying its documentation and value constraints in ``metadata``."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive,
            "length": length}
    if isinstance(default, list):
        return field(default_factory=lambda d=tuple(default): list(d), metadata=meta)
    return field(default=default, metadata=meta)


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


def describe() -> str:
    """Every option with its default and documentation, as YAML comments (``rave train --help-config``)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = TrainConfig().to_dict()[f.name]
        lines.append(f"# {f.metadata['doc']}")
        lines.append(f"{f.name}: {_yaml_scalar(default)}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(v) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list of numbers"}


def _check(name: str, value: Any, path) -> Any:
    """Convert/validate one value for field ``name``; RaveError naming ``path`` and the key otherwise."""
    fld = _FIELDS[name]
    typ = _HINTS[name]
    meta = fld.metadata
    where = f"config key '{name}'"
    if value is None and name in _OPTIONAL:
        return None

    def wrong(expected: str):
        got = "null" if value is None else type(value).__name__
        raise RaveError(f"{where} must be {expected}, got {got} ({shown(value)})", path)

    if typ is bool:
        if not isinstance(value, bool):
            wrong(_TYPE_NAMES[bool])
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            wrong(_TYPE_NAMES[int])
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong(_TYPE_NAMES[float])
        if not abs(value) <= 1e300:  # NaN, inf, and ints a float cannot hold
            raise RaveError(f"{where} must be a finite number, got {shown(value)}", path)
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            wrong(_TYPE_NAMES[str])
    elif typ is list:
        n = meta["length"]
        expected = f"a list of {n} numbers" if n else _TYPE_NAMES[list]
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                       for v in value):
            wrong(expected)
        if n is not None and len(value) != n:
            raise RaveError(f"{where} must be {expected}, got {len(value)} value(s)", path)
        if not all(abs(v) <= 1e300 for v in value):
            raise RaveError(f"{where} must be finite numbers, got {shown(value)}", path)
        value = [float(v) for v in value]
    else:  # pragma: no cover - a field type this checker does not know
        raise TypeError(f"unsupported config field type {typ!r} for {name}")

    if meta["choices"] is not None and value not in meta["choices"]:
        raise RaveError(f"{where} must be one of {', '.join(meta['choices'])}, got {shown(value)}", path)
    lo, hi = meta["min"], meta["max"]
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if lo is not None and (v < lo or (meta["min_exclusive"] and v == lo)):
            op = ">" if meta["min_exclusive"] else ">="
            raise RaveError(f"{where} must be {op} {lo}, got {shown(v)}", path)
        if hi is not None and v > hi:
            raise RaveError(f"{where} must be <= {_limit(hi)}, got {shown(v)}", path)
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
def _plain(t):
    """The field type without ``| None``, lists as ``list``."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    t = args[0] if len(args) == 1 and type(None) in typing.get_args(t) else t
    return list if typing.get_origin(t) is list else t


_HINTS = {k: _plain(t) for k, t in typing.get_type_hints(TrainConfig).items()}
#: Fields that may be empty (None: decided at run time, e.g. opacity_reset's auto).
_OPTIONAL = {k for k, t in typing.get_type_hints(TrainConfig).items() if type(None) in typing.get_args(t)}


def from_dict(d: dict[str, Any], path: str | os.PathLike | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a mapping; unknown keys and bad values raise RaveError naming ``path``."""
    if not isinstance(d, dict):
        raise RaveError(f"the training config must be a mapping of option: value, got {type(d).__name__}",
                        path)
    values = {}
    for key, value in d.items():
        if not isinstance(key, str) or key not in _FIELDS:
            raise RaveError(f"unknown config key '{_key(key)}' (see `rave train --help-config` for the "
                            "options)", path)
        values[key] = _check(key, value, path)
    cfg = TrainConfig(**values)
    if cfg.sh_degree_interval <= 0:  # pragma: no cover - guarded by min above
        raise RaveError("config key 'sh_degree_interval' must be >= 1", path)
    return cfg


#: Keys allowed beside ``train:`` in a recipe file (the demo scenes in ``assets/``).
RECIPE_KEYS = ("name", "description", "scene", "train")


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with one-line RaveErrors for missing, unreadable or malformed files."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise RaveError("config file not found", path)
    if path.is_dir():
        raise RaveError("is a folder, expected a YAML file", path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise RaveError(f"is too large for a config file ({size:,} bytes; at most {MAX_CONFIG_BYTES:,})", path)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RaveError(f"cannot read config file: {e.strerror or e}", path) from None
    except UnicodeDecodeError:
        raise RaveError("cannot read config file: not UTF-8 text", path) from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise RaveError("invalid YAML: nested too deeply", path) from None
    except (ValueError, OverflowError) as e:  # a constructor's int()/date(): 5000 digits, a 13th month
        raise RaveError(f"invalid YAML: {_yaml_value_error(e)}", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise RaveError(f"invalid YAML{where}: {problem}", path) from None


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
    data = read_yaml(path)
    if data is None:
        return TrainConfig()
    if isinstance(data, dict) and "train" in data:
        for key in data:
            if key not in RECIPE_KEYS:
                raise RaveError(f"unknown recipe key '{_key(key)}' (expected {', '.join(RECIPE_KEYS)})", path)
        data = data["train"] if data["train"] is not None else {}
        if not isinstance(data, dict):
            raise RaveError("recipe key 'train' must be a mapping of option: value", path)
    return from_dict(data, path)
