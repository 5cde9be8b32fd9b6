"""Initial Gaussians for training: the dataset's points (or random ones), kNN scales, low opacity."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import RaveError
from ..scene.gaussians import Gaussians, num_sh_bases
from .config import TrainConfig

#: Zeroth-order SH basis constant: colour = SH_C0 * sh0 + 0.5.
SH_C0 = 0.28209479177387814


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """[..., 3] colours in [0, 1] -> DC SH coefficients (inverse of gsplat's ``SH_C0 * sh0 + 0.5``)."""
    return (rgb - 0.5) / SH_C0


def knn_rms_distance(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """[N] root-mean-square distance of each point to its ``k`` nearest other points (3DGS's init scale).

    points: [N, 3]. Brute force with chunked ``cdist`` (memory chunk x N), fine up to ~100k points.
    Fewer than k + 1 points use all the others; a single point gets distance 0.
    """
    n = points.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return points.new_zeros(n)
    p = points.double()
    out = []
    for s in range(0, n, chunk):
        d = torch.cdist(p[s:s + chunk], p)  # [c, N]
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float("inf")  # exclude self
        out.append(d.topk(k, dim=1, largest=False).values.square().mean(dim=1).sqrt())
    return torch.cat(out).to(points.dtype)


def initial_points(dataset, cfg: TrainConfig, generator: torch.Generator) -> tuple[Tensor, Tensor, str]:
    """([P,3] positions, [P,3] colours in [0,1], mode) for ``cfg.init`` on ``dataset``.

    "points" uses ``dataset.points`` (random subsample to ``init_max_points``); "random" draws
    ``init_num_points`` uniformly in a cube of half-size ``init_extent * scene_scale`` centred on the
    cameras' mean centre with random colours (default ``init_min_views: 0``), or, with ``init_min_views > 0``,
    only where that fraction of the training views see them, coloured from the photos
    (:func:`covisible_points`); "auto" is "points" when the dataset has any.
    """
    pts = dataset.points
    has_points = pts is not None and len(pts) > 0
    mode = cfg.init
    if mode == "auto":
        mode = "points" if has_points else "random"
    if mode == "points":
        if not has_points:
            raise RaveError("config key 'init' is 'points' but the dataset has no initial points "
                            "(COLMAP points3D or points3d.ply); use init: random", dataset.root)
        pts = pts.float()
        cols = dataset.point_colors
        cols = torch.full_like(pts, 0.5) if cols is None else cols.float().clamp(0, 1)
        if len(pts) > cfg.init_max_points:
            keep = torch.randperm(len(pts), generator=generator)[: cfg.init_max_points].sort().values
            pts, cols = pts[keep], cols[keep]
        return pts, cols, mode
    n = cfg.init_num_points
    center = _cameras_center(dataset)
    half = cfg.init_extent * float(dataset.scene_scale)
    if cfg.init_min_views > 0 and dataset.train.images is not None and len(dataset.train):
        pts, cols = covisible_points(dataset.train, n, center, half, cfg.init_min_views, generator)
        if len(pts):
            return pts, cols, mode
    pts = center + (torch.rand(n, 3, generator=generator) * 2 - 1) * half
    cols = torch.rand(n, 3, generator=generator)
    return pts, cols, mode


def _project(cams, c: int, pts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(in-view mask [P], column [P] long, row [P] long) of float64 ``pts`` [P,3] in camera ``c`` of ``cams``."""
    vm, K = cams.viewmats[c].double(), cams.Ks[c].double()
    pc = pts @ vm[:3, :3].T + vm[:3, 3]
    z = pc[:, 2]
    zs = z.clamp_min(1e-9)
    u = K[0, 0] * pc[:, 0] / zs + K[0, 2]
    v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
    ok = (z > 0) & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
    return ok, u.clamp(0, cams.width - 1).long(), v.clamp(0, cams.height - 1).long()


def covisible_points(cams, n: int, center: Tensor, half: float, min_fraction: float,
                     generator: torch.Generator, rounds: int = 16) -> tuple[Tensor, Tensor]:
    """Random init where the content is: points uniform in the cube (``center`` [3], half-size ``half``) kept
    only when at least ``min_fraction`` of the views ``cams`` (and at least 2) see them, coloured by the mean
    of the pixels they fall on. Returns ([M,3], [M,3]) with M <= ``n`` (0 when no candidate qualifies).

    Why: the cube around the cameras' mean holds the cameras themselves; a point in front of one camera and
    in no other view fits that photo alone, and 3DGS keeps it as a floater that hurts every other view (on a
    generated hard capture most of a plain cube's points are such). Points that several views agree on are
    where the scene is (the same idea as a sparse point cloud: seen, so reconstructible)."""
    need = max(2, math.ceil(min_fraction * len(cams))) if len(cams) > 1 else 1
    got_p, got_c, total = [], [], 0
    for _ in range(rounds):
        cand = center.double() + (torch.rand(4 * n, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half
        hits = torch.zeros(len(cand), dtype=torch.float64)
        col = torch.zeros(len(cand), 3, dtype=torch.float64)
        for c in range(len(cams)):
            ok, u, v = _project(cams, c, cand)
            hits += ok
            col[ok] += cams.images[c, v[ok], u[ok]].double()
        keep = hits >= need
        got_p.append(cand[keep])
        got_c.append(col[keep] / hits[keep, None])
        total += int(keep.sum())
        if total >= n:
            break
    pts, cols = torch.cat(got_p)[:n].float(), torch.cat(got_c)[:n].float().clamp(0, 1)
    return pts, cols


def _cameras_center(dataset) -> Tensor:
    cams = dataset.train
    return cams.centers.mean(dim=0).float() if len(cams) else torch.zeros(3)


def add_sky(pts: Tensor, cols: Tensor, dataset, cfg: TrainConfig,
            generator: torch.Generator) -> tuple[Tensor, Tensor, int]:
    """``pts``/``cols`` plus ``cfg.init_sky_points`` sky candidates (see :func:`sky_points`); returns the
    number of sky points kept as well."""
    if cfg.init_sky_points <= 0 or dataset.train.images is None:
        return pts, cols, 0
    sp, sc = sky_points(dataset.train, cfg.init_sky_points, cfg.init_sky_radius * float(dataset.scene_scale),
                        _cameras_center(dataset), generator)
    return torch.cat([pts, sp]), torch.cat([cols, sc]), len(sp)


def sky_points(cams, n: int, radius: float, center: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Points on a sphere standing in for a distant background ("sky"), coloured from the images.

    ``n`` candidates uniform on the sphere of ``radius`` around ``center`` [3]; only those that project into
    at least one camera of ``cams`` (with images) are kept, coloured by the mean of the pixels they fall on.
    Returns ([M,3] positions, [M,3] colours in [0,1]).
    """
    d = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    pts = center.double() + radius * d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    col_sum = torch.zeros(n, 3, dtype=torch.float64)
    hits = torch.zeros(n, dtype=torch.float64)
    for c in range(len(cams)):
        ok, u, v = _project(cams, c, pts)
        if ok.any():
            col_sum[ok] += cams.images[c, v[ok], u[ok]].double()
            hits[ok] += 1
    keep = hits > 0
    return pts[keep].float(), (col_sum[keep] / hits[keep, None]).float()


def init_gaussians(points: Tensor, colors: Tensor, cfg: TrainConfig, generator: torch.Generator,
                   scene_scale: float = 1.0) -> Gaussians:
    """Gaussians at ``points`` [P,3] with ``colors`` [P,3]: isotropic kNN scales, random rotations.

    Scale = ``init_scale`` x RMS distance to the 3 nearest neighbours (floored at 1e-7 x scene scale for
    duplicate points), opacity ``init_opacity``, SH of degree ``cfg.sh_degree`` with only the DC term set.
    """
    n = points.shape[0]
    dist = knn_rms_distance(points)
    if n == 1:
        dist = torch.full((1,), 0.01 * scene_scale)
    dist = dist.clamp_min(1e-7 * max(scene_scale, 1e-6)) * cfg.init_scale
    k = num_sh_bases(cfg.sh_degree) - 1
    return Gaussians(
        means=points.float().contiguous(),
        quats=torch.rand(n, 4, generator=generator),
        scales=torch.log(dist).unsqueeze(-1).repeat(1, 3).float(),
        opacities=torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity)))
        if cfg.init_opacity < 1 else torch.full((n,), 20.0),
        sh0=rgb_to_sh(colors.float()).unsqueeze(1).contiguous(),
        shN=torch.zeros(n, k, 3),
    )
