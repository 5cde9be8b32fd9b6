"""Step schedules scaled to the run length, and gsplat's densification strategies built from the config."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RaveError
from .config import TrainConfig

#: gsplat's defaults are written for this many steps (simple_trainer's ``max_steps``).
REFERENCE_STEPS = 30_000


@dataclass(frozen=True)
class Schedule:
    """Absolute step numbers of one run (after scaling by ``steps / 30000``)."""

    steps: int
    refine_start_iter: int
    refine_stop_iter: int
    refine_every: int
    reset_every: int
    sh_degree_interval: int

    def sh_degree_at(self, step: int, max_degree: int) -> int:
        """SH degree used for training at ``step`` (0-based): one more every ``sh_degree_interval`` steps."""
        return min(step // self.sh_degree_interval, max_degree)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def scaled_schedule(cfg: TrainConfig) -> Schedule:
    """The config's step-based fields scaled to ``cfg.steps`` (gsplat ``Config.adjust_steps`` rule).

    ``refine_every`` is kept at least ``cfg.min_refine_every`` so each densification averages the
    screen-space gradient over several views; every interval is at least 1.
    """
    f = cfg.steps / REFERENCE_STEPS if cfg.scale_schedule else 1.0
    return Schedule(
        steps=cfg.steps,
        refine_start_iter=int(cfg.refine_start_iter * f),
        refine_stop_iter=int(cfg.refine_stop_iter * f),
        refine_every=max(int(cfg.refine_every * f), cfg.min_refine_every, 1),
        reset_every=max(int(cfg.reset_every * f), 1),
        sh_degree_interval=max(int(cfg.sh_degree_interval * f), 1),
    )


def make_strategy(cfg: TrainConfig, sched: Schedule, device: torch.device):
    """gsplat's ``DefaultStrategy`` or ``MCMCStrategy`` with the scaled schedule (used as-is, not re-implemented).

    MCMC relocation and position noise call gsplat CUDA kernels (``compute_relocation``,
    ``quat_scale_to_covar_preci``), so ``strategy: mcmc`` is refused without CUDA.
    """
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if cfg.strategy == "default":
        return DefaultStrategy(
            prune_opa=cfg.prune_opa,
            grow_grad2d=cfg.grow_grad2d,
            grow_scale3d=cfg.grow_scale3d,
            prune_scale3d=cfg.prune_scale3d,
            refine_start_iter=sched.refine_start_iter,
            refine_stop_iter=sched.refine_stop_iter,
            reset_every=sched.reset_every,
            refine_every=sched.refine_every,
            absgrad=False,
            verbose=False,
        )
    if device.type != "cuda":
        raise RaveError(
            "config key 'strategy': mcmc needs CUDA (gsplat's MCMC relocation runs CUDA kernels); "
            "use strategy: default on this machine"
        )
    return MCMCStrategy(
        cap_max=cfg.cap_max,
        noise_lr=cfg.noise_lr,
        refine_start_iter=sched.refine_start_iter,
        refine_stop_iter=sched.refine_stop_iter,
        refine_every=sched.refine_every,
        min_opacity=cfg.prune_opa,
        verbose=False,
    )
