"""Initial anchors: the dataset's points (or random ones) snapped to a voxel grid, zero features and offsets."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import RaveError
from ..train.init import knn_rms_distance
from .model import ScaffoldMLPs, ScaffoldModel, ScaffoldSpec

#: At most this many points are used to estimate the automatic voxel size (a random sample beyond).
VOXEL_SAMPLE = 50_000


def auto_voxel_size(points: Tensor, generator: torch.Generator) -> float:
    """Median RMS distance of the points [P, 3] to their 3 nearest neighbours (on a sample of at most
    :data:`VOXEL_SAMPLE`; the distance of a sample is larger than of the whole set, i.e. a slightly coarser
    grid for very large clouds)."""
    p = points
    if len(p) > VOXEL_SAMPLE:
        p = p[torch.randperm(len(p), generator=generator)[:VOXEL_SAMPLE]]
    d = knn_rms_distance(p.float())
    d = d[d > 0]
    if d.numel() == 0:
        raise RaveError("cannot derive a voxel size: all initial points coincide (set voxel_size in the config)")
    return float(d.median())


def voxelize(points: Tensor, voxel_size: float) -> Tensor:
    """[A, 3] unique voxel centres round(p / v) * v of ``points`` [P, 3] (sorted lexicographically)."""
    if not voxel_size > 0:
        raise RaveError(f"the voxel size must be > 0, got {voxel_size}")
    cells = torch.unique(torch.round(points.double() / voxel_size).long(), dim=0)
    return (cells.double() * voxel_size).float()


def init_model(points: Tensor, spec: ScaffoldSpec, generator: torch.Generator) -> ScaffoldModel:
    """Anchors on the voxelized ``points`` [P, 3] (``spec.voxel_size`` > 0), as the authors initialise them:
    zero features and offsets, both log-scalings = log of the RMS distance to the 3 nearest anchors (floored
    at 1e-7 x the voxel size), and MLPs with torch's default initialisation drawn from ``generator``'s seed."""
    anchors = voxelize(points, spec.voxel_size)
    n = len(anchors)
    if n == 0:
        raise RaveError("no initial anchors (the point cloud is empty)")
    dist = knn_rms_distance(anchors) if n > 1 else torch.full((1,), spec.voxel_size)
    dist = dist.clamp_min(1e-7 * spec.voxel_size)
    params = {
        "anchor": anchors.contiguous(),
        "offset": torch.zeros(n, spec.n_offsets, 3),
        "anchor_feat": torch.zeros(n, spec.feat_dim),
        "scaling": torch.log(dist).unsqueeze(1).repeat(1, 6).contiguous(),
    }
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlps = ScaffoldMLPs(spec)
    return ScaffoldModel(spec, params, mlps)
