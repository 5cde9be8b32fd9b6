"""The ``rave build`` pipeline: pretrained model + views -> levels -> QAT fine-tuning -> ranking -> rates -> .ckpt.

Stages (each with a progress bar; seconds and rendered views recorded in ``meta["stages"]``):

1. ``levels``: nested levels by importance (levels.py; coarse-from-fine by default).
2. ``finetune``: quantization-aware fine-tuning with stochastic level sampling (finetune.py), unless disabled.
3. ``ranking``: context-aware (or global) order inside each interval (ranking.py).
4. ``rates``: exact ``.rave`` sizes of every level prefix and chunk boundary (codec ProgressiveEncoder).
5. ``rd``: PSNR/SSIM of the decoded prefixes on the test views at ``rd_points`` target rates evenly spaced
   from R(G_1) to R(G_L), selected exactly as a user would (``RaveCheckpoint.select``), plus the levels.

Without a dataset (:func:`build_self`, self-distillation) the views come from a camera rig around the scene
(rig.py) and their targets are the full model's renders (``targets="self"``): wherever the full model is the
rendered context its loss gradient is 0, so those scoring passes use the accumulated blending weight instead
(importance.py explains the choice); the RD table is then PSNR vs the full model on held-out rig views.

:class:`Builder` caches the levels and the fine-tuned model, so ablations that differ only later (ranking
mode, with/without fine-tuning) share the earlier stages; :func:`build` is the one-call file version.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import metrics
from . import budget
from ..errors import RaveError
from ..scene.cameras import Cameras
from . import backbone
from .checkpoint import chunk_rate_table
from .config import AUTHORS_LEVEL_WEIGHTS, BuildConfig
from .finetune import finetune, level_weights
from .levels import Levels, build_levels, level_fractions, level_sizes
from .ranking import rank
from .units import UnitModel


#: Config keys the nested levels depend on (a variant changing none of them reuses the levels).
LEVEL_KEYS = ("num_levels", "coarsest_fraction", "delta_rate", "fractions", "level_method", "anchors", "importance",
              "importance_params", "importance_batch", "background", "backend")

#: What the views' images are: photos of a dataset, or the full model's own renders (self-distillation).
TARGETS = ("photos", "self")

#: Fine-tuning steps when neither the config nor the model's run record says (10 % of gsplat's 30k steps).
DEFAULT_STEPS = 3000


def training_record(ply: str | os.PathLike) -> dict:
    """The run record ``rave train`` writes beside the PLY (``scene.json``), or {} when there is none."""
    import json

    try:
        rec = json.loads(Path(ply).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _positive_int(x) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) and x > 0 else None


def training_steps(ply: str | os.PathLike) -> int | None:
    """Steps the model was trained for, from the run record ``rave train`` writes beside it (``scene.json``)."""
    rec = training_record(ply)
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    return _positive_int(rec.get("steps_done", cfg.get("steps")))


def training_resolution(rec: dict) -> tuple[int | None, int | None]:
    """(downscale, long side in px) the model was trained at, from its run record (None where it is silent):
    ``config.downscale`` and ``resolution`` (``{"width", "height"}`` of the training views)."""
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    res = rec.get("resolution") if isinstance(rec.get("resolution"), dict) else {}
    side = [_positive_int(res.get(k)) for k in ("width", "height")]
    return _positive_int(cfg.get("downscale")), (max(side) if all(side) else None)


def default_steps(cfg: BuildConfig, train_steps: int | None) -> int:
    """The fine-tuning length when ``cfg.steps`` is empty: a fraction of the training, else DEFAULT_STEPS."""
    if not train_steps:
        return DEFAULT_STEPS
    return max(cfg.min_steps, int(round(cfg.finetune_fraction * train_steps)))


def downscale_cameras(cams: Cameras, max_side: int) -> Cameras:
    """``cams`` with images (and intrinsics) resized so the long side is at most ``max_side`` (antialiased)."""
    long_side = max(cams.width, cams.height)
    if long_side <= max_side or len(cams) == 0:
        return cams
    f = long_side / max_side
    w, h = max(1, int(round(cams.width / f))), max(1, int(round(cams.height / f)))
    Ks = cams.Ks.clone()
    Ks[:, 0, :] *= w / cams.width
    Ks[:, 1, :] *= h / cams.height
    images = None
    if cams.images is not None:
        x = cams.images.permute(0, 3, 1, 2).float()
        images = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True,
                                                 align_corners=False).clamp(0, 1).permute(0, 2, 3, 1).contiguous()
    return Cameras(cams.viewmats, Ks, w, h, images, list(cams.names))


@torch.no_grad()
def prefix_quality(units: UnitModel, cams: Cameras, k: int, batch: int = 4) -> tuple[float, float]:
    """Mean PSNR and SSIM over ``cams`` of the first ``k`` units (images clamped to [0, 1])."""
    ps, ss = [], []
    for s in range(0, len(cams), batch):
        c = cams[list(range(s, min(s + batch, len(cams))))]
        img = units.render(c, k).clamp(0, 1)
        gt = c.images.to(img)
        ps.append(metrics.psnr(img, gt))
        ss.append(metrics.ssim(img, gt))
    return metrics.mean(torch.cat(ps)), metrics.mean(torch.cat(ss))


def rd_counts(ckpt, points: int) -> list[int]:
    """Distinct prefix lengths for ``points`` target rates evenly spaced over [R(G_1), R(G_L)], plus the levels.

    Where neighbouring prefixes still lie more than one nominal spacing apart in bytes (the fixed cost of
    starting a chunk makes the rate jump over a target), prefixes in between are added, at most ``points``;
    not for the naive multi-anchor ablation, whose operating points are the levels only."""
    r0, r1 = ckpt.level_rates[0], ckpt.level_rates[-1]
    counts = set(int(s) for s in ckpt.level_sizes)
    for j in range(points):
        r = r0 + (r1 - r0) * j / (points - 1)
        counts.add(ckpt.select(rate=min(max(r, r0), r1)))
    out, step, i, extra = sorted(counts), (r1 - r0) / (points - 1), 0, 0
    while ckpt.interpolate and i < len(out) - 1 and extra < points:
        a, b = out[i], out[i + 1]
        mid = (a + b) // 2
        ba, bb = ckpt.prefix_bytes(a), ckpt.prefix_bytes(b)
        # a partial chunk can compress smaller with one more unit: only a prefix strictly between a and b in
        # bytes keeps the table's bytes increasing with the count
        if b - a > 1 and bb - ba > step and ba < ckpt.prefix_bytes(mid) < bb:
            out.insert(i + 1, mid)
            extra += 1
        else:
            i += 1
    return _undominated(ckpt, out)


def _undominated(ckpt, counts: list[int]) -> list[int]:
    """``counts`` without the prefixes that cost more bytes than a longer one (a partial chunk can compress
    smaller with more units), so the table's bytes never fall as the count rises; the levels always stay."""
    levels = set(int(s) for s in ckpt.level_sizes)
    keep: list[int] = []  # from the longest down
    for k in reversed(counts):
        if keep and ckpt.prefix_bytes(k) > ckpt.prefix_bytes(keep[-1]):
            if k not in levels:
                continue
            while keep and keep[-1] not in levels and ckpt.prefix_bytes(keep[-1]) < ckpt.prefix_bytes(k):
                keep.pop()
        keep.append(k)
    return keep[::-1]


def rd_table(ckpt, cams: Cameras, points: int, *, backend: str = "auto",
             background: Tensor | None = None, progress: bool = True) -> tuple[dict, int]:
    """The RD table {"count", "bytes", "psnr", "ssim"} of the decoded prefixes, and the number of renders."""
    units = backbone.decoded_units(ckpt, backend=backend, background=background)
    rd = {"count": [], "bytes": [], "psnr": [], "ssim": []}
    for k in tqdm(rd_counts(ckpt, points), desc="RD table", unit="rate", disable=not progress, leave=False):
        p, s = prefix_quality(units, cams, k)
        rd["count"].append(int(k))
        rd["bytes"].append(ckpt.prefix_bytes(int(k)))
        rd["psnr"].append(p)
        rd["ssim"].append(s)
    return rd, units.renders


class Builder:
    """One model + dataset + config; stages are computed on demand and cached (see module docstring)."""

    def __init__(self, model, train: Cameras, test: Cameras | None, cfg: BuildConfig | None = None,
                 *, scene_scale: float = 1.0, progress: bool = True, sources: dict | None = None,
                 train_steps: int | None = None, targets: str = "photos"):
        """``model``: an in-memory model of a registered kind (Gaussians, ScaffoldModel) or a
        :class:`~rave_viewer.rave.backbone.Backbone` wrapping one (rave/backbone.py picks the backbone)."""
        self.backbone = backbone.wrap(model)
        self.model = self.backbone.model
        self.cfg = cfg or BuildConfig()
        if self.cfg.chunk_size is None:  # the backbone's (Gaussians and anchors differ ~10x in bytes)
            self.cfg = self.cfg.replace(chunk_size=self.backbone.default_chunk_size)
        if self.cfg.steps is None:  # default length: a fraction of the original training, capped by size
            steps = default_steps(self.cfg, train_steps)
            cap = budget.steps_cap(self.backbone.cost())
            self.cfg = self.cfg.replace(steps=steps if cap is None else min(steps, cap))
        self.effort: budget.Effort | None = None  # set by build() / build_self(): what was chosen and why
        self.train_steps = train_steps
        self.progress = progress
        self.sources = dict(sources or {})
        if train.images is None or len(train) == 0:
            raise RaveError("the dataset has no training views with images")
        self.train = train
        self.rd_split = "test"
        if test is None or len(test) == 0 or test.images is None:
            test = train[list(range(0, len(train), 8))]
            self.rd_split = "train (every 8th: the dataset has no test views)"
        if targets not in TARGETS:
            raise ValueError(f"unknown targets {targets!r} (choose from {', '.join(TARGETS)})")
        self.targets = targets  # "self": the views' images are the full model's renders (rig.py)
        if targets == "self":
            self.rd_split = "held-out rig"
        self.test = test
        self.scene_scale = float(scene_scale)
        self.quant = self.backbone.fit_quant(self.cfg)  # fixed once over every unit: QAT and the stream agree
        self.fake_quantize = self.backbone.fake_quantize
        self.background = torch.tensor(self.cfg.background, dtype=torch.float32)
        self.units = self.backbone.units(backend=self.cfg.backend, background=self.background)
        n_levels = self.cfg.anchors or self.cfg.num_levels
        fr = level_fractions(n_levels, self.cfg.coarsest_fraction, delta_rate=self.cfg.delta_rate,
                             fractions=None if self.cfg.anchors else self.cfg.fractions)
        self.sizes = level_sizes(len(self.backbone), fr)
        self.stages: dict[str, dict] = {}
        self._levels: Levels | None = None
        self._tuned: dict[bool, tuple[UnitModel, dict]] = {}
        self._imp = {"accumulate": self.cfg.importance,
                     "param_names": backbone.importance_params(self.backbone, self.cfg),
                     "batch": self.cfg.importance_batch,
                     "full_model_score": "blend" if targets == "self" else "gradient"}

    @property
    def gaussians(self):
        """The input model (kept under its 3DGS name for existing callers)."""
        return self.model

    @property
    def lrs(self) -> dict[str, float]:
        """Fine-tuning learning rates per parameter (the backbone's; positions scaled by the scene size)."""
        return self.backbone.lrs(self.cfg, self.scene_scale)

    def variant(self, **changes) -> "Builder":
        """The same model and views with ``changes`` to the config (an ablation); the levels are shared when
        none of the changes affects them, so the variant costs only the stages it changes."""
        cfg = self.cfg.replace(**changes)
        b = Builder(self.backbone, self.train, self.test, cfg, scene_scale=self.scene_scale,
                    progress=self.progress, sources=self.sources, train_steps=self.train_steps,
                    targets=self.targets)
        b.effort = self.effort
        if all(getattr(cfg, k) == getattr(self.cfg, k) for k in LEVEL_KEYS):
            b._levels = self.levels()
            b.stages["levels"] = dict(self.stages["levels"])
        return b

    @contextmanager
    def _stage(self, name: str):
        t0, r0 = time.perf_counter(), self.units.renders
        yield
        self.stages[name] = {"seconds": round(time.perf_counter() - t0, 3), "renders": self.units.renders - r0}

    # -- stages ------------------------------------------------------------------------------------------
    def levels(self) -> Levels:
        if self._levels is None:
            with self._stage("levels"):
                self._levels = build_levels(self.units, self.train, self.sizes, method=self.cfg.level_method,
                                            progress=self.progress, **self._imp)
        return self._levels

    def tuned(self, finetune_: bool | None = None) -> tuple[UnitModel, dict]:
        """Level-ordered units after fine-tuning (or not), and the fine-tuning statistics."""
        ft = self.cfg.finetune if finetune_ is None else finetune_
        if ft not in self._tuned:
            lv = self.levels()
            units = self.units.select(lv.order)
            if not ft or self.cfg.steps <= 0:
                self._tuned[ft] = (units, {"steps": 0})
            else:
                c = self.cfg
                w = level_weights(len(self.sizes), c.level_sampling, AUTHORS_LEVEL_WEIGHTS)
                with self._stage("finetune"):
                    self._tuned[ft] = finetune(units, self.train, self.sizes, steps=c.steps, lrs=self.lrs, weights=w,
                                               transform=self.fake_quantize if c.qat else None, seed=c.seed,
                                               progress=self.progress)
        return self._tuned[ft]

    def checkpoint(self, ranking: str | None = None, finetune_: bool | None = None):
        """The full checkpoint (the backbone's kind) for a ranking mode ("context" / "global") and fine-tuning."""
        t_start = time.perf_counter()
        c = self.cfg
        ranking = ranking or c.ranking
        ft = c.finetune if finetune_ is None else finetune_
        lv = self.levels()
        units, ft_stats = self.tuned(ft)
        mode = "keep" if c.anchors else ranking
        with self._stage("ranking"):
            rk = rank(units, self.train, self.sizes, mode=mode, progress=self.progress,
                      transform=self.fake_quantize if c.rank_quantized else None, **self._imp)
        final = units.select(rk.perm)
        order = lv.order[rk.perm]
        bb = self.backbone
        with self._stage("rates"):
            enc = bb.encoder(final, c, progress=self.progress)
            level_rates = [int(enc.size_of_prefix(s)) for s in self.sizes]
            chunk_rates = chunk_rate_table(enc, final.num_units, c.chunk_size)
        ckpt = bb.checkpoint(final, enc, order=order, level_sizes=list(self.sizes), level_rates=level_rates,
                             chunk_rates=chunk_rates, cfg=c,
                             test_cameras=downscale_cameras(self.test, c.test_max_side))
        with self._stage("rd"):
            ckpt.rd, renders = rd_table(ckpt, self.test, c.rd_points, backend=c.backend, background=self.background,
                                        progress=self.progress)
        self.stages["rd"]["renders"] = renders
        used = ["levels"] + (["finetune"] if "finetune" in self.stages and ft and c.steps > 0 else []) + \
            ["ranking", "rates", "rd"]
        stages = {k: self.stages[k] for k in used if k in self.stages}
        ckpt.meta = {
            "ranking": "anchors" if c.anchors else ranking,
            "finetune": bool(ft and c.steps > 0),
            "config": {**c.to_dict(), "ranking": ranking, "finetune": bool(ft)},
            **self.backbone.meta(),
            "scene_scale": self.scene_scale,
            "train_steps": self.train_steps,
            "levels": {"method": c.level_method, "passes": lv.passes,
                       "fractions": [s / final.num_units for s in self.sizes]},
            "ranking_passes": rk.passes,
            "finetune_stats": ft_stats,
            "targets": self.targets,
            "rd_views": {"split": self.rd_split, "count": len(self.test), "width": self.test.width,
                         "height": self.test.height},
            "stages": stages,
            "total_seconds": round(sum(s["seconds"] for s in stages.values()), 3),
            "total_renders": int(sum(s["renders"] for s in stages.values())),
            "checkpoint_seconds": round(time.perf_counter() - t_start, 3),
            "sources": self.sources,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return ckpt


def _held_out(total: int, test_every: int) -> int:
    """Views a rig of ``total`` views holds out (every ``test_every``-th from 0; a single view is both)."""
    return len(range(0, total, test_every)) if total > 1 and test_every > 1 else 0


def build_self(ply: str | os.PathLike, out: str | os.PathLike | None, cfg: BuildConfig | None = None, *,
               cameras: str | os.PathLike | None = None, progress: bool = True, on_start=None):
    """``rave build`` without a dataset (self-distillation): views from a camera rig around the scene (or the
    poses of ``cameras``, a transforms.json-style file), targets = the full model's renders (rig.py); the
    first scoring pass uses the blending-weight score (importance.py). The checkpoint records
    ``meta["targets"] = "self"`` and the rig in ``meta["rig"]``; its RD table is PSNR vs the full model on the
    held-out rig views (every ``test_every``-th). Views, side and steps default by scene size (budget.py)."""
    from .rig import default_size, place_rig, render_targets, rig_from_cameras, say, scene_scale

    cfg = cfg or BuildConfig()
    bb = backbone.for_file(ply).load(ply)
    g = bb.proxy_gaussians()  # where the content is (rig placement and bounds)
    n, te = bb.cost(), cfg.test_every
    rec = training_record(ply)
    train_steps = training_steps(ply)
    _, trained_side = training_resolution(rec)
    asked_side = cfg.rig_size or cfg.max_side
    dsteps = None if cfg.steps is not None else default_steps(cfg, train_steps)
    if cameras is not None:
        from ..scene.rig_cameras import read_camera_file

        side0 = asked_side or min(default_size(n), budget.side_cap(n), trained_side or budget.MAX_SIDE)
        cams = read_camera_file(cameras, default_size=side0)
        long_side = max(cams.width, cams.height)
        avail = len(cams) - _held_out(len(cams), te)
        eff = budget.choose(n, available_views=avail or len(cams), photo_side=None, trained_side=trained_side,
                            views=cfg.views, max_side=asked_side, steps=cfg.steps, default_steps=dsteps,
                            rig_side=min(long_side, side0))
        cams = downscale_cameras(cams, eff.side)
        rig = rig_from_cameras(cams, str(cameras), test_every=te, g=g)
        if long_side > eff.side:
            rig.extra["downscaled_from"] = long_side
    else:
        want = cfg.views or budget.rig_views(n)
        total = cfg.rig_views
        if total is None:  # enough rig views that `want` remain after holding out every te-th
            total = want
            while total - _held_out(total, te) < want:
                total += 1
        avail = total - _held_out(total, te) or total
        eff = budget.choose(n, available_views=avail, photo_side=None, trained_side=trained_side, views=cfg.views,
                            max_side=asked_side, steps=cfg.steps, default_steps=dsteps, rig_side=default_size(n))
        rig = place_rig(g, views=total, size=eff.side, fov_deg=cfg.rig_fov, shape=cfg.rig_shape,
                        up=cfg.rig_up, distances=cfg.rig_distances, test_every=te)
    say(rig.describe() + (f" (downscaled from {rig.extra['downscaled_from']} px)"
                          if "downscaled_from" in rig.extra else ""), progress)
    bg = torch.tensor(cfg.background, dtype=torch.float32)
    views = render_targets(bb.units(backend=cfg.backend, background=bg), rig.cameras, progress=progress)
    rig.cameras = views
    train, test = rig.split()
    train = train[budget.subset(len(train), eff.views)]
    eff.views = len(train)
    sources = {bb.source_key: str(Path(ply)), "cameras": str(Path(cameras)) if cameras is not None else "rig"}
    cfg = cfg.replace(views=eff.views, max_side=eff.side, steps=eff.steps)
    b = Builder(bb, train, test, cfg, scene_scale=scene_scale(views), progress=progress, sources=sources,
                train_steps=train_steps, targets="self")
    eff.size = bb.describe()
    b.effort = eff
    if on_start is not None:
        on_start(b)
    ckpt = b.checkpoint()
    ckpt.meta["rig"] = rig.to_meta()
    if out is not None:
        bb.save_checkpoint(ckpt, out)
    return ckpt


def build(ply: str | os.PathLike, data: str | os.PathLike | None, out: str | os.PathLike | None,
          cfg: BuildConfig | None = None, *, progress: bool = True, allow_outside_paths: bool = False,
          on_start=None, cameras: str | os.PathLike | None = None):
    """``rave build``: read the PLY and the dataset, run every stage, write ``out`` (if given).

    ``data=None``: no dataset, self-distillation on a camera rig or on the poses of ``cameras``
    (:func:`build_self`). With a dataset, an empty ``cfg.downscale`` is the run record's (the resolution the
    model was trained at), and the views, side and steps default by scene size (budget.py): scoring,
    fine-tuning and the RD table use ``eff.views`` evenly spaced training views at long side ``eff.side``.

    ``allow_outside_paths``: see :func:`~rave_viewer.scene.datasets.load_dataset`; ``on_start(builder)`` is
    called once the inputs are loaded, before the first stage (``rave build`` prints its settings there).
    """
    from ..scene.datasets import load_dataset

    if data is None:  # self-distillation: a camera rig (or ``cameras``) instead of a dataset
        return build_self(ply, out, cfg, cameras=cameras, progress=progress, on_start=on_start)
    if cameras is not None:
        raise RaveError("--cameras is for builds without a dataset (the dataset has its own cameras)", cameras)
    cfg = cfg or BuildConfig()
    bb = backbone.for_file(ply).load(ply)
    rec = training_record(ply)
    rec_down, trained_side = training_resolution(rec)
    down = cfg.downscale if cfg.downscale is not None else (rec_down or 1)
    ds = load_dataset(data, downscale=down, test_every=cfg.test_every, background=tuple(cfg.background),
                      allow_outside_paths=allow_outside_paths)
    for line in ds.notes if progress else ():
        print(f"note: {line}", file=sys.stderr)
    train_steps = training_steps(ply)
    photo_side = max(ds.train.width, ds.train.height)
    if cfg.downscale is None and rec_down:  # loaded at the training downscale: that is the training resolution
        trained_side = trained_side or photo_side
    eff = budget.choose(bb.cost(), available_views=len(ds.train), photo_side=photo_side, trained_side=trained_side,
                        views=cfg.views, max_side=cfg.max_side, steps=cfg.steps,
                        default_steps=None if cfg.steps is not None else default_steps(cfg, train_steps))
    train = downscale_cameras(ds.train[budget.subset(len(ds.train), eff.views)], eff.side)
    test = downscale_cameras(ds.test, eff.side) if ds.test is not None and len(ds.test) else ds.test
    eff.views = len(train)
    sources = {bb.source_key: str(Path(ply)), "data": str(Path(data))}
    cfg = cfg.replace(downscale=down, views=eff.views, max_side=eff.side, steps=eff.steps)
    b = Builder(bb, train, test, cfg, scene_scale=ds.scene_scale, progress=progress, sources=sources,
                train_steps=train_steps)
    eff.size = bb.describe()
    b.effort = eff
    if on_start is not None:
        on_start(b)
    ckpt = b.checkpoint()
    if out is not None:
        bb.save_checkpoint(ckpt, out)
    return ckpt


__all__ = ["Builder", "build", "build_self", "downscale_cameras", "prefix_quality", "rd_counts", "rd_table"]
