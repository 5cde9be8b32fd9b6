"""Scaffold-GS training: one view per step, L = 0.8 L1 + 0.2 (1 - SSIM) + 0.01 mean volume, anchor growing/pruning.

The loop follows the authors' ``train.py``: the anchors a view sees are decoded into neural Gaussians, rendered
through :func:`rave_viewer.render.render`, Adam steps every anchor tensor and MLP (exponentially decaying
learning rates for the offsets and the MLPs), and :class:`~rave_viewer.scaffold.grow.AnchorStrategy` grows
and prunes anchors on the scaled schedule. Ctrl-C stops at a step boundary and keeps the current model.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .. import metrics
from ..errors import RaveError
from ..scene.cameras import Cameras
from ..train import run as _run
from ..train.run import run_json_path  # noqa: F401 - ``scene.scaffold`` -> ``scene.json`` (the run record)
from .config import GrowSchedule, ScaffoldConfig, grow_schedule
from .grow import AnchorOptim, AnchorStrategy
from .init import auto_voxel_size, init_model
from .model import ScaffoldModel, ScaffoldSpec, render_views

SUFFIX = ".scaffold"


def lr_at(init: float, final: float, step: int, steps: int) -> float:
    """Log-linear decay from ``init`` (step 0) to ``final`` (last step); linear to 0 when ``final`` is 0."""
    if init <= 0:
        return 0.0
    t = min(max(step / max(steps, 1), 0.0), 1.0)
    if final <= 0:
        return init * (1.0 - t)
    return math.exp(math.log(init) * (1.0 - t) + math.log(final) * t)


@torch.no_grad()
def evaluate(model: ScaffoldModel, cams: Cameras, *, backend: str, background: Tensor | None = None) -> dict:
    """Mean PSNR / SSIM of ``model`` at ``cams`` (renders clamped to [0, 1]); NaN for no cameras."""
    n = len(cams)
    if n == 0:
        return {"psnr": float("nan"), "ssim": float("nan"), "views": 0}
    psnrs, ssims = [], []
    for i in range(n):
        c = cams[i]
        img = model.render(c, backend=backend, background=background).clamp(0.0, 1.0)
        gt = c.images.to(img)
        psnrs.append(metrics.psnr(img, gt))
        ssims.append(metrics.ssim(img, gt))
    return {"psnr": metrics.mean(torch.cat(psnrs)), "ssim": metrics.mean(torch.cat(ssims)), "views": n}


@dataclass
class ScaffoldResult:
    """What a run produced: the trained model (float32, CPU) and its figures."""

    model: ScaffoldModel
    config: ScaffoldConfig
    schedule: GrowSchedule
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    steps_done: int
    interrupted: bool
    wall_time_s: float
    cpu_time_s: float
    backend: str
    device: str
    init_mode: str
    num_initial: int
    grown: int = 0
    pruned: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    load_average: tuple[float, ...] = ()  # 1-minute system load at the start and end (other work competing)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of the run (config, metrics, anchor counts, timing, versions, machine and load)."""
        from ..train.record import machine, versions

        return {
            "format": "rave_viewer.scaffold.train/1",
            "interrupted": self.interrupted,
            "steps_done": self.steps_done,
            "num_anchors": len(self.model),
            "spec": self.model.spec.to_dict(),
            "anchors": {"initial": self.num_initial, "grown": self.grown, "pruned": self.pruned,
                        "init_mode": self.init_mode},
            "metrics": self.metrics,
            "wall_time_s": round(self.wall_time_s, 3),
            "cpu_time_s": round(self.cpu_time_s, 3),
            "backend": self.backend,
            "device": self.device,
            "config": self.config.to_dict(),
            "schedule": self.schedule.to_dict(),
            "history": self.history,
            "versions": versions(),
            "machine": machine(self.device, self.load_average),
            **self.extra,
        }


def initial_points(dataset, cfg: ScaffoldConfig, gen: torch.Generator) -> tuple[Tensor, str]:
    """([P, 3] points, mode): the dataset's points (subsampled to ``init_max_points``) or uniform random ones
    in a cube of half-size ``init_extent x scene_scale`` around the cameras' mean centre."""
    pts = dataset.points
    has = pts is not None and len(pts) > 0
    mode = cfg.init if cfg.init != "auto" else ("points" if has else "random")
    if mode == "points":
        if not has:
            raise RaveError("config key 'init' is 'points' but the dataset has no initial points "
                            "(COLMAP points3D or points3d.ply); use init: random", dataset.root)
        pts = pts.float()
        if len(pts) > cfg.init_max_points:
            pts = pts[torch.randperm(len(pts), generator=gen)[: cfg.init_max_points].sort().values]
        return pts, mode
    center = dataset.train.centers.mean(dim=0).float() if len(dataset.train) else torch.zeros(3)
    half = cfg.init_extent * float(dataset.scene_scale)
    return center + (torch.rand(cfg.init_num_points, 3, generator=gen) * 2 - 1) * half, mode


def _scene_scale(dataset) -> float:
    s = float(dataset.scene_scale)
    return s if math.isfinite(s) and s > 0 else 1.0


def train(dataset, cfg: ScaffoldConfig, *, progress: bool = True,
          callback: Callable[[int, AnchorOptim], None] | None = None) -> ScaffoldResult:
    """Train Scaffold-GS on ``dataset`` (a :class:`rave_viewer.scene.datasets.Dataset`) with ``cfg``.

    Reproducible from ``cfg.seed`` (the caller's global RNG state is restored). ``callback(step, optim)``
    runs after every step.
    """
    from tqdm.auto import tqdm

    from ..train.record import load1
    from ..train.trainer import _StopRequest, _eval_subset, resolve_backend

    backend, device = resolve_backend(cfg.backend)
    train_cams: Cameras = dataset.train
    test_cams: Cameras = dataset.test
    if len(train_cams) == 0 or train_cams.images is None:
        raise RaveError("the dataset has no training images", dataset.root)
    if min(train_cams.width, train_cams.height) < metrics.SSIM_WINDOW:
        raise RaveError(f"images of {train_cams.width}x{train_cams.height} pixels are too small to train on "
                        f"(SSIM needs at least {metrics.SSIM_WINDOW}x{metrics.SSIM_WINDOW})", dataset.root)
    has_test = test_cams is not None and len(test_cams) > 0 and test_cams.images is not None
    sched = grow_schedule(cfg)
    scale = _scene_scale(dataset)
    train_cams = train_cams.to(device)
    test_cams = test_cams.to(device) if has_test else None
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    eval_cams = _eval_subset(test_cams if has_test else train_cams, cfg.eval_max_views)
    split = "test" if has_test else "train"

    t0, c0, load0 = time.perf_counter(), time.process_time(), load1()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        pts, init_mode = initial_points(dataset, cfg, gen)
        voxel = cfg.voxel_size if cfg.voxel_size > 0 else auto_voxel_size(pts, gen)
        spec = ScaffoldSpec(feat_dim=cfg.feat_dim, n_offsets=cfg.n_offsets, voxel_size=voxel,
                            opacity_dist=cfg.opacity_dist, cov_dist=cfg.cov_dist, color_dist=cfg.color_dist)
        model0 = init_model(pts, spec, gen)
        n_init = len(model0)
        mlps = model0.mlps.to(device)
        lrs = {"anchor": cfg.anchor_lr * scale, "offset": cfg.offset_lr * scale, "anchor_feat": cfg.feature_lr,
               "scaling": cfg.scaling_lr}
        mlp_lr = {"mlp_opacity": (cfg.mlp_opacity_lr, cfg.mlp_opacity_lr_final),
                  "mlp_cov": (cfg.mlp_cov_lr, cfg.mlp_cov_lr_final),
                  "mlp_color": (cfg.mlp_color_lr, cfg.mlp_color_lr_final)}
        optim = AnchorOptim({f: t.to(device) for f, t in model0.params.items()}, lrs, mlps,
                            {n: a for n, (a, _) in mlp_lr.items()})
        strategy = AnchorStrategy(n_init, n_offsets=spec.n_offsets, voxel_size=voxel, grow_grad2d=cfg.grow_grad2d,
                                  update_depth=cfg.update_depth, update_init_factor=cfg.update_init_factor,
                                  update_hierachy_factor=cfg.update_hierachy_factor,
                                  success_threshold=cfg.success_threshold, min_opacity=cfg.min_opacity,
                                  max_log_scale=cfg.max_log_scale, max_anchors=cfg.max_anchors, device=device)

        def current() -> ScaffoldModel:
            return ScaffoldModel(spec, {f: p.detach() for f, p in optim.params.items()}, mlps)

        init_eval = evaluate(current(), test_cams, backend=backend, background=bg) if has_test else None
        history: list[dict[str, Any]] = []
        n_train = len(train_cams)
        order, pos = torch.randperm(n_train, generator=gen), 0
        loss_sum, loss_n = 0.0, 0
        last_psnr, last_at = (init_eval["psnr"], 0) if init_eval else (float("nan"), 0)
        step, interrupted = 0, False
        bar = tqdm(total=cfg.steps, desc="train scaffold", unit="step", disable=not progress, dynamic_ncols=True,
                   mininterval=0.5)
        try:
            with _StopRequest() as stop:
                for step in range(cfg.steps):
                    if stop.requested:
                        interrupted = True
                        break
                    it = step + 1  # the authors' 1-based iteration number
                    optim.set_lr("offset", lr_at(cfg.offset_lr * scale, cfg.offset_lr_final * scale, step, cfg.steps))
                    for name, (a, b) in mlp_lr.items():
                        optim.set_lr(name, lr_at(a, b, step, cfg.steps))
                    if pos == n_train:
                        order, pos = torch.randperm(n_train, generator=gen), 0
                    i = int(order[pos])
                    pos += 1
                    cam = train_cams[i]
                    img, decoded, infos = render_views(optim.params, mlps, spec, cam, backend=backend,
                                                       background=bg)
                    ng, info = decoded[0], infos[0]
                    stats = sched.start_stat < it < sched.update_until
                    if stats and info["means2d"].requires_grad:
                        info["means2d"].retain_grad()
                    loss = metrics.rendering_loss(img, cam.images, lam=cfg.ssim_lambda)
                    if cfg.scaling_reg > 0 and ng.scales.shape[0] > 0:
                        loss = loss + cfg.scaling_reg * ng.scales.prod(dim=1).mean()
                    if loss.requires_grad:  # a view that sees no neural Gaussian renders the background only
                        loss.backward()
                        optim.step()
                    if stats:
                        strategy.observe(ng, info)
                        if it > sched.update_from and it % sched.update_interval == 0:
                            strategy.adjust(optim, sched.update_interval, gen)
                    lv = float(loss.detach())
                    if not math.isfinite(lv):
                        raise RaveError(f"training diverged at step {it} (loss {lv}); try lower learning rates",
                                        dataset.root)
                    loss_sum, loss_n = loss_sum + lv, loss_n + 1
                    if cfg.eval_every and it % cfg.eval_every == 0 and it < cfg.steps:
                        last_psnr, last_at = evaluate(current(), eval_cams, backend=backend, background=bg)["psnr"], it
                        history.append({"step": it, "loss": round(loss_sum / loss_n, 6), "num_anchors": len(optim),
                                        f"{split}_psnr": round(last_psnr, 4),
                                        "elapsed_s": round(time.perf_counter() - t0, 2)})
                        loss_sum, loss_n = 0.0, 0
                    if callback is not None:
                        callback(step, optim)
                    if it % 10 == 0 or it == cfg.steps:
                        s = f"loss={lv:.4f} anchors={len(optim)}"
                        if math.isfinite(last_psnr):
                            s += f" {split}_psnr={last_psnr:.2f}@{last_at}"
                        bar.set_postfix_str(s, refresh=False)
                    bar.update(1)
                else:
                    step = cfg.steps
        except KeyboardInterrupt:  # second Ctrl-C, or outside the main thread
            interrupted = True
            if len({int(t.shape[0]) for t in optim.params.values()}) != 1:  # stopped inside growing/pruning
                bar.close()
                raise
        finally:
            bar.close()

    model = current().detached()
    res: dict[str, Any] = {
        "init_test_psnr": init_eval["psnr"] if init_eval else None,
        "init_test_ssim": init_eval["ssim"] if init_eval else None,
        "train_psnr": None, "train_ssim": None, "test_psnr": None, "test_ssim": None,
        "train_views": len(train_cams), "test_views": len(test_cams) if has_test else 0,
    }
    if not interrupted:
        dev_model = ScaffoldModel(spec, {f: t.to(device) for f, t in model.params.items()}, model.mlps.to(device))
        try:
            tr = evaluate(dev_model, train_cams, backend=backend, background=bg)
            res.update(train_psnr=tr["psnr"], train_ssim=tr["ssim"])
            if has_test:
                te = evaluate(dev_model, test_cams, backend=backend, background=bg)
                res.update(test_psnr=te["psnr"], test_ssim=te["ssim"])
        except KeyboardInterrupt:
            interrupted = True
        model.mlps.to("cpu")
    return ScaffoldResult(model=model, config=cfg, schedule=sched, metrics=res, history=history, steps_done=step,
                          interrupted=interrupted, wall_time_s=time.perf_counter() - t0,
                          cpu_time_s=time.process_time() - c0, backend=backend, device=str(device),
                          init_mode=init_mode, num_initial=n_init, grown=strategy.grown, pruned=strategy.pruned,
                          load_average=(load0, load1()))


def checkpoint_path(path: str | os.PathLike) -> Path:
    """Where an interrupted run leaves its model: ``scene.scaffold`` -> ``scene.interrupted.scaffold``."""
    return _run.checkpoint_path(path, SUFFIX)


def check_output_path(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse, before any work, an output that is not a ``.scaffold`` path or that ``check_output`` refuses."""
    return _run.check_output_path(out, force=force, suffix=SUFFIX, what="the output of --model scaffold")


def start_line(dataset, cfg: ScaffoldConfig) -> str:
    """What a run is about to do: views and their resolution, steps, model size, backend."""
    tr, te = dataset.train, dataset.test
    return (f"training Scaffold-GS on {len(tr)} views at {tr.width}x{tr.height} ({len(te)} test views): "
            f"{cfg.steps:,} steps, {cfg.n_offsets} offsets x {cfg.feat_dim} features, backend {cfg.backend}, "
            f"seed {cfg.seed}")


def train_folder(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: ScaffoldConfig, *,
                 config_file: str | os.PathLike | None = None, progress: bool = True, force: bool = False,
                 allow_outside_paths: bool = False) -> tuple[ScaffoldResult, Path]:
    """Load ``data_dir``, train and write ``out`` (.scaffold) and its run JSON; returns (result, written file).

    An interrupted run writes :func:`checkpoint_path` instead (``result.interrupted``)."""
    from .io import save

    out = check_output_path(out, force=force)
    dataset = _run.load_training_data(data_dir, cfg, start_line, progress=progress,
                                 allow_outside_paths=allow_outside_paths)
    result = train(dataset, cfg, progress=progress)
    target = checkpoint_path(out) if result.interrupted else out
    summary = result.summary()
    save(result.model, target, extra={"train": {k: summary[k] for k in ("steps_done", "metrics", "config")}})
    summary.update(output=str(target), data_dir=str(data_dir),
                   config_file=None if config_file is None else str(config_file))
    _run.write_run_record(target, summary)
    return result, target
