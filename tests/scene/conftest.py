"""Tiny generated datasets (COLMAP and transforms.json) for the scene I/O tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rave_viewer.scene.cameras import look_at
from rave_viewer.scene.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    rotmat_to_qvec,
    write_colmap_binary,
    write_colmap_text,
)

W, H = 16, 12


def random_image(rng: np.random.Generator, w: int = W, h: int = H, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)


def orbit_viewmats(n: int, seed: int, radius: float = 4.0) -> list[np.ndarray]:
    """World-to-camera (OpenCV) matrices of cameras on a sphere looking at the origin."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        eye = torch.tensor(d * radius * (1 + 0.2 * rng.random()))
        out.append(look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])).double().numpy())
    return out


def _make_colmap(
    root: Path,
    n: int = 10,
    binary: bool = True,
    model: str = "PINHOLE",
    params: list[float] | None = None,
    seed: int = 0,
    sparse: str = "sparse/0",
    n_points: int = 20,
) -> ColmapModel:
    """Write images/*.png (W x H random) and a COLMAP model; images listed in shuffled order."""
    rng = np.random.default_rng(seed)
    if params is None:
        params = {
            "SIMPLE_PINHOLE": [14.0, 8.0, 6.0],
            "PINHOLE": [14.0, 13.0, 8.25, 5.75],
            "SIMPLE_RADIAL": [14.0, 8.0, 6.0, 0.0],
            "RADIAL": [14.0, 8.0, 6.0, 0.0, 0.0],
            "OPENCV": [14.0, 13.0, 8.0, 6.0, 0.0, 0.0, 0.0, 0.0],
            "OPENCV_FISHEYE": [14.0, 13.0, 8.0, 6.0, 0.1, 0.0, 0.0, 0.0],
        }[model]
    m = ColmapModel()
    m.cameras[1] = ColmapCamera(1, model, W, H, np.array(params, dtype=np.float64))
    (root / "images").mkdir(parents=True, exist_ok=True)
    ids = rng.permutation(n)
    for k, (i, vm) in enumerate(zip(ids, orbit_viewmats(n, seed))):
        name = f"img_{i:03d}.png"
        Image.fromarray(random_image(rng)).save(root / "images" / name)
        m.images[k + 1] = ColmapImage(k + 1, rotmat_to_qvec(vm[:3, :3]), vm[:3, 3].copy(), 1, name)
    m.points = rng.normal(size=(n_points, 3))
    m.colors = rng.integers(0, 256, size=(n_points, 3), dtype=np.uint8)
    (root / sparse).mkdir(parents=True, exist_ok=True)
    (write_colmap_binary if binary else write_colmap_text)(m, root / sparse)
    return m


def gl_c2w(viewmat_cv: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world matrix of an OpenCV world-to-camera matrix."""
    return np.linalg.inv(viewmat_cv) @ np.diag([1.0, -1.0, -1.0, 1.0])


def _make_transforms(
    root: Path,
    n: int = 10,
    split: bool = False,
    ext_in_path: bool = True,
    rgba: bool = False,
    intrinsics: str = "angle",
    points: bool = True,
    seed: int = 0,
) -> dict:
    """Write a NeRF/Blender-style dataset; returns {"frames": {name: (viewmat_cv, rgb uint8 or rgba)}, ...}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    fov_x = 0.9
    vms = orbit_viewmats(n, seed)
    groups = {"train": list(range(n))} if not split else {"train": list(range(0, n, 2)), "test": list(range(1, n, 2))}
    truth = {}
    for gname, idx in groups.items():
        (root / gname).mkdir(exist_ok=True)
        frames = []
        for i in idx:
            img = random_image(rng, channels=4 if rgba else 3)
            Image.fromarray(img).save(root / gname / f"r_{i}.png")
            fp = f"./{gname}/r_{i}" + (".png" if ext_in_path else "")
            frames.append({"file_path": fp, "transform_matrix": gl_c2w(vms[i]).tolist()})
            truth[f"{gname}/r_{i}.png"] = (vms[i], img)
        meta: dict = {"frames": frames}
        if intrinsics == "angle":
            meta["camera_angle_x"] = fov_x
        else:
            meta.update(fl_x=15.0, fl_y=14.0, cx=8.5, cy=5.5, w=W, h=H)
        fname = "transforms.json" if not split else f"transforms_{gname}.json"
        (root / fname).write_text(json.dumps(meta, indent=1))
    if split:
        (root / "transforms_val.json").write_text(json.dumps({"camera_angle_x": fov_x, "frames": []}))
    if points:
        from plyfile import PlyData, PlyElement

        pts = np.zeros(7, dtype=[(c, "f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
        for c in "xyz":
            pts[c] = rng.normal(size=7)
        for c in ("red", "green", "blue"):
            pts[c] = rng.integers(0, 256, size=7)
        PlyData([PlyElement.describe(pts, "vertex")]).write(str(root / "points3d.ply"))
    return {"frames": truth, "fov_x": fov_x, "focal": 0.5 * W / math.tan(0.5 * fov_x)}


@pytest.fixture
def make_colmap():
    return _make_colmap


@pytest.fixture
def make_transforms():
    return _make_transforms
