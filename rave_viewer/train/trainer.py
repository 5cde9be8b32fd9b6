"""The 3DGS training loop: our render API, the 3DGS loss, Adam, and gsplat's densification strategy."""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .. import metrics
from ..errors import RaveError
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from . import record
from .config import TrainConfig
from .init import add_sky, init_gaussians, initial_points
from .optim import make_optimizers, make_splats, means_scheduler, splats_to_gaussians
from .schedule import Schedule, make_strategy, scaled_schedule


def resolve_backend(backend: str) -> tuple[str, torch.device]:
    """(renderer name, device) for a config backend: auto -> gsplat on CUDA, else the compiled cpu one."""
    from ..render import resolve_backend as render_backend

    name = render_backend(backend)
    return name, torch.device("cuda" if name == "gsplat" else "cpu")


@torch.no_grad()
def evaluate(gaussians: Gaussians, cams: Cameras, *, backend: str, background: Tensor | None = None,
             sh_degree: int | None = None, batch: int = 4) -> dict[str, float]:
    """Mean PSNR / SSIM of ``gaussians`` rendered at ``cams`` against ``cams.images`` (renders clamped to [0,1]).

    background: [3] or None (black). Returns {"psnr", "ssim", "views"}; NaN scores for zero cameras.
    """
    from ..render import render

    n = len(cams)
    if n == 0:
        return {"psnr": float("nan"), "ssim": float("nan"), "views": 0}
    psnrs, ssims = [], []
    for s in range(0, n, batch):
        c = cams[list(range(s, min(s + batch, n)))]
        bg = None if background is None else background.reshape(1, 3).expand(len(c), 3).contiguous()
        img, _, _ = render(gaussians, c.viewmats, c.Ks, c.width, c.height, sh_degree=sh_degree,
                           backgrounds=bg, backend=backend)
        img = img.clamp(0.0, 1.0)
        psnrs.append(metrics.psnr(img, c.images))
        ssims.append(metrics.ssim(img, c.images))
    return {"psnr": metrics.mean(torch.cat(psnrs)), "ssim": metrics.mean(torch.cat(ssims)), "views": n}


@dataclass
class TrainResult:
    """What a run produced: the trained Gaussians (float32, CPU) and its figures."""

    gaussians: Gaussians
    config: TrainConfig
    schedule: Schedule
    metrics: dict[str, Any]          # train_/test_/init_test_ psnr and ssim (None when not computed)
    history: list[dict[str, Any]]    # periodic {step, loss, num_gaussians, psnr, psnr_split, elapsed_s}
    steps_done: int
    interrupted: bool
    wall_time_s: float
    cpu_time_s: float                # process CPU time (all threads): wall time on dedicated cores is lower
    backend: str
    device: str
    init_mode: str
    num_initial: int                 # initial Gaussians, sky points included
    num_sky: int = 0                 # of which on the sky sphere (init_sky_points kept)
    extra: dict[str, Any] = field(default_factory=dict)
    load_average: tuple[float, ...] = ()  # 1-minute system load at the start and end (other work competing)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of the run (config, metrics, count, timing, versions, machine)."""
        import gsplat

        return {
            "format": "rave_viewer.train.run/1",
            "interrupted": self.interrupted,
            "steps_done": self.steps_done,
            "num_gaussians": len(self.gaussians),
            "sh_degree": self.gaussians.sh_degree,
            "metrics": self.metrics,
            "wall_time_s": round(self.wall_time_s, 3),
            "cpu_time_s": round(self.cpu_time_s, 3),
            "backend": self.backend,
            "device": self.device,
            "init": {"mode": self.init_mode, "num_gaussians": self.num_initial, "sky_points": self.num_sky},
            "config": self.config.to_dict(),
            "schedule": self.schedule.to_dict(),
            "history": self.history,
            "versions": record.versions(gsplat=gsplat.__version__),
            "machine": record.machine(self.device, self.load_average),
            **self.extra,
        }


class _StopRequest:
    """While active (main thread only), the first Ctrl-C sets ``requested`` so the loop stops at a step
    boundary with consistent parameters; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._prev = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)
        return False


def _eval_subset(cams: Cameras, k: int) -> Cameras:
    """At most ``k`` cameras spread evenly over ``cams``."""
    n = len(cams)
    if n <= k:
        return cams
    idx = sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [0]
    return cams[idx]


def _consistent(splats) -> bool:
    n = {int(p.shape[0]) for p in splats.values()}
    return len(n) == 1


def train(dataset, cfg: TrainConfig, *, progress: bool = True,
          callback: Callable[[int, torch.nn.ParameterDict], None] | None = None) -> TrainResult:
    """Train 3DGS on ``dataset`` (a :class:`rave_viewer.scene.datasets.Dataset`) with ``cfg``.

    Reproducible: all randomness comes from ``cfg.seed`` (the caller's global torch RNG state is restored
    afterwards). Ctrl-C (SIGINT) stops at the next step boundary and returns the current Gaussians with
    ``interrupted=True``. ``callback(step, splats)`` runs after every step (tests, tools).
    """
    from tqdm.auto import tqdm

    from ..render import render

    backend, device = resolve_backend(cfg.backend)
    train_cams: Cameras = dataset.train
    test_cams: Cameras = dataset.test
    if len(train_cams) == 0:
        raise RaveError("the dataset has no training images", dataset.root)
    if train_cams.images is None:
        raise RaveError("the dataset's training cameras have no images", dataset.root)
    if min(train_cams.width, train_cams.height) < metrics.SSIM_WINDOW:
        raise RaveError(f"images of {train_cams.width}x{train_cams.height} pixels are too small to train on "
                        f"(SSIM needs at least {metrics.SSIM_WINDOW}x{metrics.SSIM_WINDOW})", dataset.root)
    sched = scaled_schedule(cfg)
    scene_scale = float(dataset.scene_scale)
    if not math.isfinite(scene_scale) or scene_scale <= 0:
        scene_scale = 1.0
    has_test = test_cams is not None and len(test_cams) > 0 and test_cams.images is not None
    train_cams = train_cams.to(device)
    test_cams = test_cams.to(device) if has_test else None
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    bg1 = bg.reshape(1, 3)
    eval_cams = _eval_subset(test_cams, cfg.eval_max_views) if has_test else _eval_subset(train_cams,
                                                                                          cfg.eval_max_views)
    eval_split = "test" if has_test else "train"

    rng_devices = [device] if device.type == "cuda" else []
    t0, c0, load0 = time.perf_counter(), time.process_time(), record.load1()
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(cfg.seed)  # gsplat's split() and MCMC sampling draw from the global RNG
        gen = torch.Generator().manual_seed(cfg.seed)
        pts, cols, init_mode = initial_points(dataset, cfg, gen)
        pts, cols, n_sky = add_sky(pts, cols, dataset, cfg, gen)
        g0 = init_gaussians(pts, cols, cfg, gen, scene_scale)
        # auto (None): reset with a random init, whose floaters nothing else removes (benchmarks/CAPTURE.md)
        reset_opacity = cfg.opacity_reset if cfg.opacity_reset is not None else init_mode == "random"
        splats = make_splats(g0, device)
        optimizers = make_optimizers(splats, cfg, scene_scale)
        scheduler = means_scheduler(optimizers["means"], cfg)
        strategy = make_strategy(cfg, sched, device)
        strategy.check_sanity(splats, optimizers)
        state = strategy.initialize_state(scene_scale=scene_scale) if cfg.strategy == "default" \
            else strategy.initialize_state()

        init_eval = evaluate(Gaussians.from_dict(splats).detach(), test_cams, backend=backend, background=bg) \
            if has_test else None
        history: list[dict[str, Any]] = []
        n_train = len(train_cams)
        order = torch.randperm(n_train, generator=gen)
        pos = 0
        loss_sum, loss_n = 0.0, 0
        last_psnr, last_at = (init_eval["psnr"], 0) if init_eval else (float("nan"), 0)
        step = 0
        interrupted = False
        bar = tqdm(total=cfg.steps, desc="train", unit="step", disable=not progress, dynamic_ncols=True,
                   mininterval=0.5)

        def postfix(loss: float):
            s = f"loss={loss:.4f} n={len(splats['means'])}"
            if math.isfinite(last_psnr):
                s += f" {eval_split}_psnr={last_psnr:.2f}@{last_at}"
            bar.set_postfix_str(s, refresh=False)

        try:
            with _StopRequest() as stop:
                for step in range(cfg.steps):
                    if stop.requested:
                        interrupted = True
                        break
                    if pos == n_train:  # a new epoch: a fresh seeded permutation of the views
                        order = torch.randperm(n_train, generator=gen)
                        pos = 0
                    i = int(order[pos])
                    pos += 1
                    gt = train_cams.images[i:i + 1]
                    sh = sched.sh_degree_at(step, cfg.sh_degree)
                    img, _, info = render(Gaussians.from_dict(splats), train_cams.viewmats[i:i + 1],
                                          train_cams.Ks[i:i + 1], train_cams.width, train_cams.height,
                                          sh_degree=sh, backgrounds=bg1, backend=backend)
                    info.setdefault("gaussian_ids", None)  # DefaultStrategy asserts the key (dense mode)
                    if cfg.strategy == "default":
                        strategy.step_pre_backward(splats, optimizers, state, step, info)
                    loss = metrics.rendering_loss(img, gt, lam=cfg.ssim_lambda)
                    if cfg.opacity_reg > 0:
                        loss = loss + cfg.opacity_reg * torch.sigmoid(splats["opacities"]).mean()
                    if cfg.scale_reg > 0:
                        loss = loss + cfg.scale_reg * torch.exp(splats["scales"]).mean()
                    loss.backward()
                    for opt in optimizers.values():
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    scheduler.step()
                    if cfg.strategy == "default":
                        strategy.step_post_backward(splats, optimizers, state, step, info, packed=False)
                        if (reset_opacity and 0 < step < sched.refine_stop_iter
                                and step % sched.reset_every == 0):
                            from gsplat.strategy.ops import reset_opa

                            reset_opa(splats, optimizers, state, value=cfg.prune_opa * 2.0)
                    else:
                        strategy.step_post_backward(splats, optimizers, state, step, info,
                                                    lr=scheduler.get_last_lr()[0])
                    lv = float(loss.detach())
                    if not math.isfinite(lv):
                        raise RaveError(f"training diverged at step {step + 1} (loss {lv}); try lower learning "
                                        "rates", dataset.root)
                    loss_sum += lv
                    loss_n += 1
                    done = step + 1
                    if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
                        ev = evaluate(Gaussians.from_dict(splats).detach(), eval_cams, backend=backend,
                                      background=bg)
                        last_psnr, last_at = ev["psnr"], done
                        history.append({"step": done, "loss": round(loss_sum / max(loss_n, 1), 6),
                                        "num_gaussians": len(splats["means"]),
                                        f"{eval_split}_psnr": round(last_psnr, 4),
                                        "elapsed_s": round(time.perf_counter() - t0, 2),
                                        "cpu_s": round(time.process_time() - c0, 2)})
                        loss_sum, loss_n = 0.0, 0
                    if callback is not None:
                        callback(step, splats)
                    if done % 10 == 0 or done == cfg.steps:
                        postfix(lv)
                    bar.update(1)
                else:
                    step = cfg.steps
        except KeyboardInterrupt:  # second Ctrl-C, or Ctrl-C outside the main thread
            interrupted = True
            if not _consistent(splats):
                bar.close()
                raise
        finally:
            bar.close()

    steps_done = step
    gaussians = splats_to_gaussians(splats)
    result_metrics: dict[str, Any] = {
        "init_test_psnr": init_eval["psnr"] if init_eval else None,
        "init_test_ssim": init_eval["ssim"] if init_eval else None,
        "train_psnr": None, "train_ssim": None, "test_psnr": None, "test_ssim": None,
        "train_views": len(train_cams), "test_views": len(test_cams) if has_test else 0,
    }
    if not interrupted:
        final_g = gaussians.to(device)
        try:
            tr = evaluate(final_g, train_cams, backend=backend, background=bg)
            result_metrics.update(train_psnr=tr["psnr"], train_ssim=tr["ssim"])
            if has_test:
                te = evaluate(final_g, test_cams, backend=backend, background=bg)
                result_metrics.update(test_psnr=te["psnr"], test_ssim=te["ssim"])
        except KeyboardInterrupt:  # Ctrl-C during the final evaluation: keep the trained model
            interrupted = True
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return TrainResult(gaussians=gaussians, config=cfg, schedule=sched, metrics=result_metrics, history=history,
                       steps_done=steps_done, interrupted=interrupted, wall_time_s=wall, cpu_time_s=cpu,
                       backend=backend,
                       device=str(device), init_mode=init_mode, num_initial=len(g0),
                       num_sky=n_sky, load_average=(load0, record.load1()),
                       extra={"resolution": {"width": int(train_cams.width), "height": int(train_cams.height)},
                              "opacity_reset": bool(reset_opacity)})
