"""A tiny real RAVE checkpoint for the viewer tests: a coloured sphere of Gaussians, 4 levels, 3 test views.

Built once per session through the public APIs (ProgressiveEncoder for exact rates, the renderer for the
ground truth and a real dense RD table, save_checkpoint), then opened from disk like a user's file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds
from rave_viewer.metrics import psnr, ssim
from rave_viewer.rave.checkpoint import RaveCheckpoint, save_checkpoint
from rave_viewer.render import render_cameras
from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import write_ply

N = 1500
LEVELS = [200, 400, 800, N]
CHUNK = 128
W, H = 64, 48


def sphere_scene(n: int = N, seed: int = 0) -> Gaussians:
    """Gaussians on a unit sphere coloured by their normal; big opaque ones first (a plausible ranking)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    size = torch.rand(n, generator=g)
    scales = torch.log(0.02 + 0.12 * size)[:, None].expand(n, 3).clone()
    opac = 1.0 + 3.0 * size
    rgb = 0.5 + 0.45 * d
    order = torch.argsort(size, descending=True)
    return Gaussians(
        means=d, quats=torch.randn(n, 4, generator=g), scales=scales, opacities=opac,
        sh0=((rgb - 0.5) / 0.28209479177387814)[:, None, :], shN=torch.zeros(n, 3, 3),
    ).subset(order)  # fmt: skip


def make_cams(images_of: Gaussians | None = None) -> Cameras:
    eyes = [[0.0, -3.0, 0.8], [2.6, -1.5, 0.6], [-2.0, 2.2, -0.5]]
    vms = torch.stack([look_at(torch.tensor(e), torch.zeros(3)) for e in eyes])
    Ks = intrinsics(W, H, math.radians(55)).expand(3, 3, 3).clone()
    cams = Cameras(vms, Ks, W, H, None, ["front", "right", "back"])
    if images_of is not None:
        img = render_cameras(images_of, cams, backend="cpu")[0].clamp(0, 1)
        cams.images = torch.round(img * 255.0) / 255.0  # 8-bit, like a dataset's photos (and the .ckpt copy)
    return cams


def build_checkpoint() -> RaveCheckpoint:
    g = sphere_scene()
    truth = Gaussians.cat([g, sphere_scene(300, seed=1)])  # the "real" scene has detail the model lacks
    cams = make_cams(images_of=truth)
    quant = QuantConfig()
    bounds = scene_bounds(g)
    enc = ProgressiveEncoder(g, quant, codec="lzma", chunk_size=CHUNK, bounds=bounds, progress=False)
    ckpt = RaveCheckpoint(
        gaussians=g, order=torch.arange(N), level_sizes=list(LEVELS),
        level_rates=[int(enc.size_of_prefix(s)) for s in LEVELS], quant=quant, bounds=bounds, codec="lzma",
        chunk_size=CHUNK, rd={}, test_cameras=cams, meta={"source": "tests/viewer/conftest.py"},
    )  # fmt: skip
    ckpt._encoder = enc
    # the RD table measures what a receiver decodes (as `rave build` does), so the viewer's live PSNR must match it
    dec = ckpt.decoded_gaussians()
    counts = sorted(set(np.linspace(100, N, 40).round().astype(int).tolist()))
    rd = {"count": [], "bytes": [], "psnr": [], "ssim": []}
    with torch.no_grad():
        for k in counts:
            img = render_cameras(dec.prefix(k), cams, backend="cpu")[0].clamp(0, 1)
            rd["count"].append(int(k))
            rd["bytes"].append(int(enc.size_of_prefix(k)))
            rd["psnr"].append(float(psnr(img, cams.images).mean()))
            rd["ssim"].append(float(ssim(img, cams.images).mean()))
    ckpt.rd = rd
    return ckpt


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory):
    """{"ckpt", "rave", "ply"} paths of the same tiny scene."""
    d = tmp_path_factory.mktemp("viewer_scene")
    ckpt = build_checkpoint()
    paths = {"ckpt": d / "sphere.ckpt", "rave": d / "sphere.rave", "ply": d / "sphere.ply"}
    save_checkpoint(ckpt, paths["ckpt"])
    ckpt.encoder().write(paths["rave"])
    write_ply(ckpt.gaussians, paths["ply"])
    return paths


@pytest.fixture(scope="session")
def ckpt_source(scene_files):
    from rave_viewer.viewer.sources import open_source

    return open_source(scene_files["ckpt"])
