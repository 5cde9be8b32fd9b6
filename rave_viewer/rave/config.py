"""Options of ``rave build`` in one dataclass of documented defaults, loadable from YAML with strict checking.

A YAML file holds the fields at the top level (or under a ``rave:`` key). Unknown keys and bad values raise
:class:`RaveError` naming the file and the key. Command-line flags override the file.

Defaults and where they come from:

* Levels: ``num_levels: 8`` as the paper/authors; sizes in geometric progression from ``coarsest_fraction``
  (0.1 of the Gaussians, close to the paper's Mip-NeRF360 ratio 3.96 MB / 37.69 MB) to 1. ``delta_rate``
  (relative rate step between neighbouring levels, R(G_{l+1}) ~ (1 + dR) R(G_l)) or explicit ``fractions``
  replace that. The finest level is always all Gaussians.
* Levels are built coarse-from-fine (``level_method: iterative``, the authors' way): score with the current
  level rendered, keep the best, repeat; ``oneshot`` sorts once by the full-model score.
* Importance = ||dL/dtheta_i||_2 of L = 0.8 L1 + 0.2 (1 - SSIM) summed over the training views
  (``importance: norm_of_sum``: the paper's formula, also what the authors' code does); ``sum_of_norms`` sums
  per-view gradient norms instead (see importance.py and benchmarks/SELECTION.md for when each wins).
* Without a dataset (self-distillation) the views are a camera rig around the scene (``rig_*`` keys, see
  rave/rig.py: 64 views, every ``test_every``-th held out, side sqrt(N) in 128..512 px, 50 degrees, hemisphere
  for flat scenes) and the targets are the full model's renders.
* Fine-tuning: quantization-aware, one random training view and one random level per step, levels drawn
  uniformly (paper) or with the authors' weights (``level_sampling: authors``); learning rates are gsplat's
  end-of-schedule values; by default 10 % of the model's training steps (read from the run record ``rave
  train`` writes beside the PLY; at least 300), or 3000 (10 % of a 30k-step training) without a record.
* Effort by scene size (``views``, the step cap; rave/budget.py): every view up to 250k Gaussians; above,
  fewer views and fewer steps (1M: 32 views, 1500 steps), so a 1M build stays within an hour on 2 CPU cores
  (benchmarks/BUILD.md); ``max_side``: the training resolution from the run record, at most 512 px.

Every value is type-checked when the file is read (before any work starts: a bad bit depth or a typo is one
:class:`RaveError` line, not a crash after minutes of building). Counts have documented upper limits, so a typo
cannot ask for gigabytes or years: at most ``MAX_LEVELS`` (64) levels or anchors, ``MAX_STEPS`` (10 million)
fine-tuning steps, 10,000 RD points, 1024 views per importance batch, chunks of at most 2^18 Gaussians (the
codec's limit), test images of at most 16384 pixels a side, a downscale of at most 1024. YAML NaN/inf, numbers
too large for a float, unknown keys and files over 1 MiB are refused.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..codec.anchors import ANCHOR_FIELDS, DEFAULT_ANCHOR_CHUNK
from ..errors import RaveError, shown
from ..yaml_checks import key_text as _key
from ..yaml_checks import limit_text as _limit
from ..yaml_checks import yaml_value_error as _yaml_value_error

RANKINGS = ("context", "global")
LEVEL_METHODS = ("iterative", "oneshot")
IMPORTANCE_MODES = ("norm_of_sum", "sum_of_norms")
LEVEL_SAMPLING = ("uniform", "authors", "finest")
BACKENDS = ("auto", "cpu", "gsplat", "reference")
CODECS = ("lzma", "zstd", "brotli")
#: Fine-tuning level weights of the authors' code, finest -> coarsest (only for 8 levels).
AUTHORS_LEVEL_WEIGHTS = (0.32, 0.20, 0.16, 0.12, 0.08, 0.04, 0.04, 0.04)
PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")  # 3DGS Gaussians' parameters
KNOWN_PARAMS = PARAM_NAMES + ANCHOR_FIELDS  # every backbone's (each backbone checks its own: rave/backbone.py)
MAX_LEVELS = 64  # levels or anchors (the paper uses 8; each level costs a scoring pass and a fine-tuning share)
MAX_STEPS = 10_000_000  # fine-tuning steps (the paper's are ~3000; 10M is days of work, never a real setting)
MAX_CHUNK_SIZE = 1 << 18  # = rave_viewer.codec.container.MAX_CHUNK_SIZE (checked by a test)
MAX_SEED = 2**32 - 1  # = commands._args.MAX_SEED: every numpy/torch generator takes it as is
MAX_CONFIG_BYTES = 1 << 20  # a build config is a few hundred bytes
MAX_RIG_VIEWS = 10_000  # rig views (each is rendered once as a target and scored at every level)
QUALITIES = ("low", "medium", "high", "very-high", "lossless-ish")  # = codec.presets.PRESETS (checked by a test)
RIG_SHAPES = ("auto", "sphere", "hemisphere")  # = rig.SHAPES
RIG_UPS = ("auto", "+x", "-x", "+y", "-y", "+z", "-z")  # = rig.UPS


def _f(default, doc: str, **checks):
    meta = {"doc": doc, **checks}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BuildConfig:
    """All options of ``rave build``; each field's ``metadata["doc"]`` documents it (see :func:`describe`)."""

    # -- levels -------------------------------------------------------------------------------------------
    num_levels: int = _f(8, "Number of nested levels L (anchor operating points).", min=2, max=MAX_LEVELS)
    coarsest_fraction: float = _f(0.1, "Fraction of the Gaussians kept by the coarsest level G_1 (geometric "
                                  "progression up to 1).", min=0.0, max=1.0, min_exclusive=True)
    delta_rate: float | None = _f(None, "Relative rate step between neighbouring levels (0.4 = +40 %); "
                                  "replaces coarsest_fraction: fractions (1 + dR)^-(L-l).", min=0.0,
                                  min_exclusive=True)
    fractions: list | None = _f(None, "Explicit increasing level fractions in (0, 1], last = 1 (at most "
                                f"{MAX_LEVELS}); replaces num_levels/coarsest_fraction/delta_rate.")
    level_method: str = _f("iterative", "iterative: coarse-from-fine, re-scoring with the current level "
                           "rendered (authors); oneshot: one score on the full model.", choices=LEVEL_METHODS)
    anchors: int | None = _f(None, "Naive multi-anchor ablation: this many levels and no interpolation "
                             "between them (selection snaps to the level at or below the target).", min=2,
                             max=MAX_LEVELS)
    # -- importance ---------------------------------------------------------------------------------------
    importance: str = _f("norm_of_sum", "norm_of_sum: L2 norm of the gradient summed over the training views "
                         "(paper, authors' code; default); sum_of_norms: sum over the views of per-view norms.",
                         choices=IMPORTANCE_MODES)
    importance_params: list | None = _f(None, "Parameters whose gradients enter the score; empty: the backbone's "
                                        f"(3DGS: all of {', '.join(PARAM_NAMES)}; Scaffold-GS: anchor_feat, as "
                                        "the authors' code). Scaffold-GS names: "
                                        f"{', '.join(ANCHOR_FIELDS)}.")
    importance_batch: int = _f(1, "Views rendered per forward/backward in norm_of_sum scoring.", min=1,
                                max=1024)
    # -- fine-tuning --------------------------------------------------------------------------------------
    finetune: bool = _f(True, "Quantization-aware fine-tuning with stochastic level sampling.")
    steps: int | None = _f(None, "Fine-tuning steps (one view, one level per step); empty: finetune_fraction of "
                           "the training steps in the model's run record (scene.json beside scene.ply), else "
                           "3000 (10 % of a 30k-step training).", min=0, max=MAX_STEPS)
    finetune_fraction: float = _f(0.1, "Default fine-tuning length as a fraction of the model's training steps.",
                                  min=0.0, max=1.0, min_exclusive=True)
    min_steps: int = _f(300, "Lower bound of the default fine-tuning length.", min=0, max=MAX_STEPS)
    level_sampling: str = _f("uniform", "uniform over the L levels (paper), authors (weights "
                             ".32 .20 .16 .12 .08 .04 .04 .04 finest->coarsest, 8 levels only) or finest "
                             "(always G_L: plain QAT fine-tuning, a control for ablations).",
                             choices=LEVEL_SAMPLING)
    qat: bool = _f(True, "Render through the codec's quantizer (straight-through) while fine-tuning.")
    means_lr: float = _f(1.6e-6, "Adam lr of positions, times the scene scale (gsplat's end value).", min=0.0)
    quats_lr: float = _f(1e-3, "Adam lr of quaternions.", min=0.0)
    scales_lr: float = _f(5e-3, "Adam lr of log-scales.", min=0.0)
    opacities_lr: float = _f(5e-2, "Adam lr of opacity logits.", min=0.0)
    sh0_lr: float = _f(2.5e-3, "Adam lr of SH DC.", min=0.0)
    shN_lr: float = _f(2.5e-3 / 20, "Adam lr of higher SH.", min=0.0)
    # -- ranking ------------------------------------------------------------------------------------------
    ranking: str = _f("context", "context: order C_{l+1} by scores rendering G_{l+1} only (paper); global: "
                      "scores rendering all Gaussians, reused for every interval.", choices=RANKINGS)
    rank_quantized: bool = _f(True, "Score the quantized model (what a receiver decodes) when ranking.")
    # -- codec --------------------------------------------------------------------------------------------
    codec: str = _f("lzma", "Entropy coder of the .rave chunks.", choices=CODECS)
    chunk_size: int | None = _f(None, "Units per .rave chunk; empty: the backbone's (3DGS: 4096 Gaussians, "
                                f"Scaffold-GS: {DEFAULT_ANCHOR_CHUNK} anchors).", min=1, max=MAX_CHUNK_SIZE)
    quality: str = _f("medium", "Codec quality preset (as rave encode --quality): bit depths, fitted ranges and "
                      "the SH-rest codebook of the stream (format version 3), the level table and the QAT quantizer.",
                      choices=QUALITIES)
    quant: dict = _f({}, "QuantConfig overrides on top of the quality preset (bit depths, ranges); empty = the "
                     "preset as it is.")
    # -- RD table, data, misc -----------------------------------------------------------------------------
    rd_points: int = _f(128, "Target rates, evenly spaced from R(G_1) to R(G_L), of the stored RD table.",
                        min=64, max=10_000)
    test_max_side: int = _f(512, "Test images stored in the .ckpt are downscaled to this long side.", min=16,
                           max=16384)
    downscale: int | None = _f(None, "Integer image downscale when loading the dataset; empty: the one the model "
                               "was trained at (its run record beside the PLY), else 1.", min=1, max=1024)
    views: int | None = _f(None, "Training views used for scoring and fine-tuning (an evenly spaced subset); "
                           "empty: by scene size (rave/budget.py: every view up to 250k Gaussians, 32 at 1M).",
                           min=1, max=100_000)
    max_side: int | None = _f(None, "Long side (px) of the views for scoring, fine-tuning and the RD table; "
                              "empty: the model's training resolution (run record) or the photos', at most 512 "
                              "(rave/budget.py); for a rig build also its image side unless rig_size is set.",
                              min=1, max=16384)
    test_every: int = _f(8, "Every N-th image is a test view (datasets without a test split).", min=1,
                         max=1_000_000)
    background: list = _f([0.0, 0.0, 0.0], "RGB background behind the Gaussians.", min=0.0, max=1.0, length=3)
    backend: str = _f("auto", "Renderer backend.", choices=BACKENDS)
    seed: int = _f(0, "Seed of the fine-tuning's random views and levels.", min=0, max=MAX_SEED)
    # -- camera rig (builds without a dataset: self-distillation, rave/rig.py) ----------------------------
    rig_views: int | None = _f(None, "Rig views without a dataset (every test_every-th is held out for the RD "
                               "table); empty: 64, or above 250k Gaussians enough that the views default "
                               "(rave/budget.py) remains after the held-out ones (1M: 37).", min=1,
                               max=MAX_RIG_VIEWS)
    rig_size: int | None = _f(None, "Rig image side in pixels (also caps --cameras images); empty: sqrt(N "
                              "Gaussians) rounded to 32, within 128..512.", min=16, max=4096)
    rig_fov: float = _f(50.0, "Rig field of view in degrees (square images).", min=1.0, max=170.0)
    rig_shape: str = _f("auto", "auto: a hemisphere for flat scenes (thin axis < 0.5x the middle one), else a "
                        "sphere; or sphere / hemisphere.", choices=RIG_SHAPES)
    rig_up: str = _f("auto", "Up axis of a hemisphere rig: auto (thin axis; the side away from a ground plane, "
                     "else +z / -y / +x) or +x -x +y -y +z -z.", choices=RIG_UPS)
    rig_distances: list = _f([0.8, 1.0, 1.3], "Camera distances, cycled over the views, as multiples of the "
                             "distance at which the content's bounding sphere fills the field of view.",
                             min=0.05, max=100.0)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out

    def replace(self, **changes) -> "BuildConfig":
        """A copy with ``changes`` applied (None values are ignored), checked like values from a file."""
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return from_dict(d)


_FIELDS = {f.name: f for f in dataclasses.fields(BuildConfig)}


def _base_type(name: str):
    t = typing.get_type_hints(BuildConfig)[name]
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if args:
        t = args[0]
    return typing.get_origin(t) or t


def _optional(name: str) -> bool:
    t = typing.get_type_hints(BuildConfig)[name]
    return type(None) in typing.get_args(t)


def _check(name: str, value: Any, path) -> Any:
    meta = _FIELDS[name].metadata
    where = f"config key '{name}'"
    typ = _base_type(name)
    if value is None:
        if _optional(name):
            return None
        raise RaveError(f"{where} must not be empty", path)

    def wrong(expected):
        raise RaveError(f"{where} must be {expected}, got {type(value).__name__} ({shown(value)})", path)

    if typ is bool:
        if not isinstance(value, bool):
            wrong("true or false")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            wrong("an integer")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong("a number")
        if not abs(value) <= 1e300:  # NaN, inf, and ints a float cannot hold
            wrong("a finite number")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str):
            wrong("a string")
    elif typ is dict:
        if not isinstance(value, dict):
            wrong("a mapping")
        value = dict(value)
    elif typ is list:
        if not isinstance(value, (list, tuple)):
            wrong("a list")
        value = list(value)
    if meta.get("choices") and value not in meta["choices"]:
        raise RaveError(f"{where} must be one of {', '.join(meta['choices'])}, got {shown(value)}", path)
    n = meta.get("length")
    if n is not None:  # a fixed-length list of numbers (background)
        if len(value) != n:
            raise RaveError(f"{where} must have {n} values, got {len(value)}", path)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= 1e300 for v in value):
            raise RaveError(f"{where} must be {n} finite numbers, got {shown(value)}", path)
        value = [float(v) for v in value]
    lo, hi = meta.get("min"), meta.get("max")
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if lo is not None and (v < lo or (meta.get("min_exclusive") and v == lo)):
            raise RaveError(f"{where} must be {'>' if meta.get('min_exclusive') else '>='} {lo}, got "
                            f"{shown(v)}", path)
        if hi is not None and v > hi:
            raise RaveError(f"{where} must be <= {_limit(hi)}, got {shown(v)}", path)
    return value


def from_dict(d: dict[str, Any], path: str | os.PathLike | None = None) -> BuildConfig:
    """A checked :class:`BuildConfig` from a mapping; RaveError naming ``path`` and the key otherwise."""
    if not isinstance(d, dict):
        raise RaveError("a build config must be a mapping of option: value", path)
    unknown = sorted(_key(k) for k in d if k not in _FIELDS)
    if unknown:
        raise RaveError(f"unknown config key(s): {', '.join(unknown)}", path)
    values = {k: _check(k, v, path) for k, v in d.items()}
    cfg = BuildConfig(**values)
    _check_consistency(cfg, path)
    return cfg


def _check_consistency(cfg: BuildConfig, path) -> None:
    names = cfg.importance_params
    if names is not None and (not names or any(not isinstance(p, str) or p not in KNOWN_PARAMS for p in names)):
        raise RaveError("config key 'importance_params' must list some of "
                        f"{', '.join(PARAM_NAMES)} (3DGS) or {', '.join(ANCHOR_FIELDS)} (Scaffold-GS)", path)
    rd = cfg.rig_distances
    if not 1 <= len(rd) <= 16 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in rd):
        raise RaveError("config key 'rig_distances' must be 1..16 numbers", path)
    if cfg.fractions is not None:
        fr = cfg.fractions
        if (not 2 <= len(fr) <= MAX_LEVELS or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in fr)
                or any(not 0 < f <= 1 for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])) or fr[-1] != 1):
            raise RaveError(f"config key 'fractions' must be 2..{MAX_LEVELS} increasing values in (0, 1] ending "
                            "with 1", path)
        cfg.fractions = [float(f) for f in fr]
    if cfg.level_sampling == "authors" and _effective_levels(cfg) != len(AUTHORS_LEVEL_WEIGHTS):
        raise RaveError(f"config key 'level_sampling': authors weights are defined for "
                        f"{len(AUTHORS_LEVEL_WEIGHTS)} levels, not {_effective_levels(cfg)}", path)
    if cfg.quant:
        try:
            quant_config(cfg)  # unknown keys, non-integer bits (14.5, "14"), bad ranges
        except RaveError as e:
            raise RaveError(f"config key 'quant': {e}", path) from None


def quant_config(cfg: BuildConfig):
    """The (unfitted) :class:`~rave_viewer.codec.QuantConfig` of a build: ``cfg.quality``'s preset with
    ``cfg.quant`` on top (RaveError for unknown keys or bad values)."""
    from ..codec import QuantConfig
    from ..codec.presets import PRESETS

    return QuantConfig.from_dict({**PRESETS[cfg.quality][0], **cfg.quant})


def _effective_levels(cfg: BuildConfig) -> int:
    if cfg.anchors is not None:
        return cfg.anchors
    if cfg.fractions is not None:
        return len(cfg.fractions)
    return cfg.num_levels


def load_config(path: str | os.PathLike) -> BuildConfig:
    """A :class:`BuildConfig` from a YAML file (fields at top level or under ``rave:``)."""
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise RaveError(f"is too large for a build config ({p.stat().st_size:,} bytes; at most "
                            f"{MAX_CONFIG_BYTES:,})", path)
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RaveError(f"cannot read config: {e.strerror or e}", path) from None
    except UnicodeDecodeError:
        raise RaveError("cannot read config: not UTF-8 text", path) from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        lines = str(e).splitlines()
        raise RaveError(f"not valid YAML: {lines[0] if lines else 'malformed'}", path) from None
    except RecursionError:
        raise RaveError("not valid YAML: nested too deeply", path) from None
    except (ValueError, OverflowError) as e:  # a constructor's int()/date(): 5000 digits, a 13th month
        raise RaveError(f"not valid YAML: {_yaml_value_error(e)}", path) from None
    if d is None:
        d = {}
    if isinstance(d, dict) and "rave" in d:
        others = sorted(_key(k) for k in d if k != "rave")
        if others:
            raise RaveError(f"unknown key(s) beside 'rave': {', '.join(others)} (a build "
                            "config holds its options at the top level or all under 'rave:')", path)
        d = {} if d["rave"] is None else d["rave"]
        if not isinstance(d, dict):
            raise RaveError("config key 'rave' must be a mapping of option: value", path)
    return from_dict(d, path)


def describe() -> str:
    """Every option with its default and documentation, as commented YAML."""
    import yaml

    lines = []
    defaults = BuildConfig().to_dict()
    for f in dataclasses.fields(BuildConfig):
        lines.append(f"# {f.metadata['doc']}")
        lines.append(yaml.safe_dump({f.name: defaults[f.name]}, default_flow_style=True).strip()[1:-1])
    return "\n".join(lines) + "\n"
