"""Camera poses without images (``rave build --cameras FILE``): a transforms.json-style file read into Cameras.

The file is what a NeRF/Blender ``transforms.json`` holds, minus the photos: ``frames[].transform_matrix``
(camera-to-world, OpenGL axes, 4x4 or 3x4), the intrinsics globally or per frame (``camera_angle_x`` and
optionally ``camera_angle_y``, or ``fl_x``/``fl_y`` with optional ``cx``/``cy``), and the image size ``w``/``h``.
``file_path`` is ignored. Without ``w``/``h`` the images are ``default_size`` pixels wide, and as high as
``camera_angle_y`` makes them (square without it). All frames must share one image size. Conventions and checks
are those of :mod:`.datasets` (same parser, same one-line errors naming the file).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import RaveError
from .cameras import Cameras
from .datasets import _frame_intrinsics, _number, _pose, _read_json, frame_viewmat

#: Largest image side a camera file may ask for (larger renders are downscaled by the build anyway).
MAX_SIDE = 16384


def _size(meta: dict, frame: dict, where: str, src: Path, default_size: int) -> tuple[int, int]:
    def get(key: str) -> float | None:
        if key in frame:
            return _number(frame, key, where, src, positive=True)
        return _number(meta, key, "", src, positive=True)

    w, h = get("w"), get("h")
    if w is None and h is None:
        w = float(default_size)
        ax, ay = get("camera_angle_x"), get("camera_angle_y")
        h = w * math.tan(0.5 * ay) / math.tan(0.5 * ax) if ax is not None and ay is not None and ax < math.pi \
            and ay < math.pi else w
    elif w is None or h is None:
        raise RaveError(f"{where}give both 'w' and 'h' (the image size) or neither", src)
    W, H = int(round(w)), int(round(h))
    if not (1 <= W <= MAX_SIDE and 1 <= H <= MAX_SIDE):
        raise RaveError(f"{where}image size {W}x{H} is not within 1..{MAX_SIDE} pixels a side", src)
    return W, H


def read_camera_file(path: str | os.PathLike, default_size: int = 256) -> Cameras:
    """Cameras (no images) from a transforms.json-style file; one RaveError line naming the file otherwise."""
    src = Path(path)
    if not src.is_file():
        raise RaveError("no such camera file" if not src.exists() else "is not a file", src)
    meta = _read_json(src)
    vms, Ks, sizes, names = [], [], set(), []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise RaveError(f"frame {i}: expected an object", src)
        label = f"frame {i}"
        where = label + ": "
        viewmat = frame_viewmat(frame, where, src)
        viewmat = _pose(viewmat, label, src)
        W, H = _size(meta, frame, where, src, default_size)
        K = _frame_intrinsics(meta, frame, where, src)(W, H)
        if not np.isfinite(K).all():
            raise RaveError(f"{where}the intrinsics are not finite", src)
        sizes.add((W, H))
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise RaveError(f"frames have different image sizes ({a[0]}x{a[1]} and {b[0]}x{b[1]}); use one size", src)
        vms.append(viewmat)
        Ks.append(K)
        fp = frame.get("file_path")
        names.append(fp if isinstance(fp, str) and fp else f"frame_{i:04d}")
    if not vms:
        raise RaveError("no camera poses (the 'frames' list is empty)", src)
    (W, H), = sizes
    return Cameras(torch.tensor(np.stack(vms), dtype=torch.float32), torch.tensor(np.stack(Ks), dtype=torch.float32),
                   W, H, None, names)


__all__ = ["read_camera_file"]
