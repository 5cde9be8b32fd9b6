"""Anchor growing and pruning (Scaffold-GS §3.3), with the optimiser surgery it needs.

Statistics (:meth:`AnchorStrategy.observe`, every step between ``start_stat`` and ``update_until``): for every
neural Gaussian (anchor i, offset j) visible in the view, the norm of its screen-space mean gradient (NDC
units: pixel gradient x (W/2, H/2), as 3DGS and gsplat) and a visit count; for every decoded anchor, the sum of
its k opacities (negative ones count 0) and a visit count.

Every ``update_interval`` steps after ``update_from`` (:meth:`AnchorStrategy.adjust`):

* growing: neural Gaussians seen in more than ``interval x success_threshold / 2`` views with mean gradient
  above ``grow_grad2d x 2^m`` (m = 0 … update_depth-1), each kept with probability 1 - 0.5^(m+1), propose
  new anchors at the centres of the cells of a grid of size voxel x update_init_factor / update_hierachy_factor^m
  that hold no anchor yet; a new anchor takes the element-wise maximum feature of the proposing anchors in its
  cell, zero offsets and log-scalings log(cell size). As in the authors' code, a finer level is only tried
  once a coarser one added anchors.
* pruning: anchors seen in more than ``interval x success_threshold`` views whose summed opacity per visit is
  below ``min_opacity`` are removed; the anchors' neural-Gaussian log-scalings are then clamped at
  ``max_log_scale``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .model import ANCHOR_FIELDS, NeuralGaussians


class AnchorOptim:
    """The trainable per-anchor tensors, one Adam each (resized with the anchors), and the MLPs' Adams."""

    def __init__(self, params: dict[str, Tensor], lrs: dict[str, float], mlps: nn.Module,
                 mlp_lrs: dict[str, float]):
        self.params = {f: nn.Parameter(params[f].detach().clone().float().contiguous()) for f in ANCHOR_FIELDS}
        self.opts = {f: self._adam([{"params": [p], "lr": lrs[f], "name": f}]) for f, p in self.params.items()}
        for f, p in self.params.items():
            p.requires_grad_(lrs[f] > 0)
        self.mlp_opt = self._adam([{"params": list(getattr(mlps, n).parameters()), "lr": lr, "name": n}
                                   for n, lr in mlp_lrs.items()])

    @staticmethod
    def _adam(groups):
        try:
            return torch.optim.Adam(groups, eps=1e-15, fused=True)
        except (RuntimeError, TypeError):  # torch without fused CPU Adam
            return torch.optim.Adam(groups, eps=1e-15)

    def __len__(self) -> int:
        return int(self.params["anchor"].shape[0])

    def step(self) -> None:
        for opt in (*self.opts.values(), self.mlp_opt):
            opt.step()
            opt.zero_grad(set_to_none=True)

    def set_lr(self, name: str, lr: float) -> None:
        """Learning rate of an anchor field or of an MLP group (``mlp_opacity`` …)."""
        groups = self.opts[name].param_groups if name in self.opts else self.mlp_opt.param_groups
        for g in groups:
            if g["name"] == name:
                g["lr"] = lr

    def _replace(self, name: str, new: Tensor, fn) -> None:
        """Swap ``name``'s tensor for ``new``, mapping its Adam moments with ``fn``."""
        old = self.params[name]
        p = nn.Parameter(new.contiguous(), requires_grad=old.requires_grad)
        opt = self.opts[name]
        state = opt.state.pop(old, None)
        opt.param_groups[0]["params"][0] = p
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = fn(state[key]).contiguous()
            opt.state[p] = state
        self.params[name] = p

    def cat(self, new: dict[str, Tensor]) -> None:
        """Append anchors (zero Adam moments)."""
        for f in ANCHOR_FIELDS:
            t = new[f].to(self.params[f])
            self._replace(f, torch.cat([self.params[f].detach(), t]), lambda s, t=t: torch.cat([s, torch.zeros_like(t)]))

    def keep(self, mask: Tensor) -> None:
        """Keep the anchors where ``mask`` [N] is true."""
        for f in ANCHOR_FIELDS:
            self._replace(f, self.params[f].detach()[mask], lambda s: s[mask])

    def clamp_scaling(self, max_log: float) -> None:
        with torch.no_grad():
            self.params["scaling"][:, 3:].clamp_(max=max_log)


class AnchorStrategy:
    """Scaffold-GS's growing and pruning: statistics per neural Gaussian and per anchor (module docstring)."""

    def __init__(self, n_anchors: int, *, n_offsets: int, voxel_size: float, grow_grad2d: float = 2e-4,
                 update_depth: int = 3, update_init_factor: int = 16, update_hierachy_factor: int = 4,
                 success_threshold: float = 0.8, min_opacity: float = 0.005, max_log_scale: float = 0.05,
                 max_anchors: int = 5_000_000, device="cpu"):
        self.k = n_offsets
        self.voxel_size = voxel_size
        self.grow_grad2d = grow_grad2d
        self.update_depth = update_depth
        self.update_init_factor = update_init_factor
        self.update_hierachy_factor = update_hierachy_factor
        self.success_threshold = success_threshold
        self.min_opacity = min_opacity
        self.max_log_scale = max_log_scale
        self.max_anchors = max_anchors
        z = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        self.opacity_accum, self.anchor_visits = z(n_anchors), z(n_anchors)
        self.grad_accum, self.grad_visits = z(n_anchors * n_offsets), z(n_anchors * n_offsets)
        self.grown = 0
        self.pruned = 0

    @torch.no_grad()
    def observe(self, ng: NeuralGaussians, info: dict) -> None:
        """Accumulate one view's statistics; call after ``backward`` (``info["means2d"]`` must retain its grad)."""
        k = self.k
        idx = ng.anchors
        self.opacity_accum[idx] += ng.opacity.detach().clamp_min(0).reshape(-1, k).sum(dim=1).double()
        self.anchor_visits[idx] += 1
        g = info["means2d"].grad
        if g is None or g.shape[1] == 0:
            return
        w, h = info["width"], info["height"]
        grad = (g[0] * g.new_tensor([w / 2.0, h / 2.0])).norm(dim=-1)  # [M] NDC units
        radii = info["radii"][0]
        seen = (radii > 0).all(dim=-1) if radii.ndim == 2 else radii > 0
        local = ng.mask.nonzero().squeeze(1)  # [M] positions in the visible anchors' V*k block
        glob = idx[local // k] * k + local % k
        self.grad_accum.index_add_(0, glob[seen], grad[seen].double())
        self.grad_visits.index_add_(0, glob[seen], torch.ones_like(grad[seen], dtype=torch.float64))

    @torch.no_grad()
    def adjust(self, optim: AnchorOptim, interval: int, generator: torch.Generator) -> tuple[int, int]:
        """Grow then prune (module docstring); returns (anchors added, anchors removed)."""
        n0 = len(optim)
        mean_grad = torch.where(self.grad_visits > 0, self.grad_accum / self.grad_visits.clamp_min(1), 0.0)
        ready = self.grad_visits > interval * self.success_threshold * 0.5
        added = self._grow(optim, mean_grad, ready, generator)
        n1 = len(optim)
        pad = torch.zeros(n1 * self.k - self.grad_accum.numel(), dtype=torch.float64, device=self.grad_accum.device)
        self.grad_accum[ready] = 0
        self.grad_visits[ready] = 0
        self.grad_accum, self.grad_visits = torch.cat([self.grad_accum, pad]), torch.cat([self.grad_visits, pad])
        pad_a = torch.zeros(n1 - n0, dtype=torch.float64, device=pad.device)
        self.opacity_accum = torch.cat([self.opacity_accum, pad_a])
        self.anchor_visits = torch.cat([self.anchor_visits, pad_a])

        judged = self.anchor_visits > interval * self.success_threshold
        prune = (self.opacity_accum < self.min_opacity * self.anchor_visits) & judged
        self.opacity_accum[judged] = 0
        self.anchor_visits[judged] = 0
        keep = ~prune
        if bool(prune.any()):
            kk = keep.repeat_interleave(self.k)
            self.grad_accum, self.grad_visits = self.grad_accum[kk], self.grad_visits[kk]
            self.opacity_accum, self.anchor_visits = self.opacity_accum[keep], self.anchor_visits[keep]
            optim.keep(keep)
        optim.clamp_scaling(self.max_log_scale)
        removed = int(prune.sum())
        self.grown += added
        self.pruned += removed
        return added, removed

    def _grow(self, optim: AnchorOptim, mean_grad: Tensor, ready: Tensor, generator: torch.Generator) -> int:
        k = self.k
        n_orig = len(optim)
        added = 0
        for m in range(self.update_depth):
            if m > 0 and added == 0:  # the authors' code tries finer levels only after a coarser one grew
                break
            if len(optim) >= self.max_anchors:
                break
            thr = self.grow_grad2d * (self.update_hierachy_factor // 2) ** m
            rnd = torch.rand(mean_grad.shape, generator=generator).to(mean_grad.device)
            cand = (mean_grad >= thr) & ready & (rnd > 0.5 ** (m + 1))  # [n_orig * k]
            if not bool(cand.any()):
                continue
            p = optim.params
            anchor = p["anchor"].detach()
            xyz = (anchor[:n_orig, None, :] + p["offset"].detach()[:n_orig] *
                   torch.exp(p["scaling"].detach()[:n_orig, None, :3])).reshape(-1, 3)
            size = self.voxel_size * (self.update_init_factor // self.update_hierachy_factor ** m)
            if not size > 0:
                continue
            have = torch.round(anchor.double() / size).long()
            want = torch.round(xyz[cand].double() / size).long()
            cells, inv = torch.unique(want, dim=0, return_inverse=True)
            both, both_inv = torch.unique(torch.cat([have, cells]), dim=0, return_inverse=True)
            taken = torch.zeros(len(both), dtype=torch.bool, device=both.device)
            taken[both_inv[: len(have)]] = True
            fresh = ~taken[both_inv[len(have):]]  # [U] cells with no anchor
            room = self.max_anchors - len(optim)
            if room <= 0 or not bool(fresh.any()):
                continue
            feat_src = p["anchor_feat"].detach()[:n_orig].repeat_interleave(k, dim=0)[cand]
            feat = torch.full((len(cells), feat_src.shape[1]), -math.inf, dtype=feat_src.dtype, device=feat_src.device)
            feat = feat.scatter_reduce(0, inv[:, None].expand_as(feat_src), feat_src, reduce="amax")
            sel = fresh.nonzero().squeeze(1)[:room]
            pos = (cells[sel].double() * size).to(anchor.dtype)
            n_new = len(pos)
            optim.cat({
                "anchor": pos,
                "offset": torch.zeros(n_new, k, 3, dtype=anchor.dtype, device=anchor.device),
                "anchor_feat": feat[sel],
                "scaling": torch.full((n_new, 6), math.log(size), dtype=anchor.dtype, device=anchor.device),
            })
            added += n_new
        return added
