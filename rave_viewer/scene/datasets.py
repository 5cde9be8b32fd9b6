"""Training datasets from disk: COLMAP sparse models and NeRF/Blender ``transforms.json``, split and downscaled.

Conventions (those of 3DGS / gsplat):

* Cameras come out as world-to-camera ``viewmats`` in OpenCV axes (x right, y down, z forward) and pixel
  intrinsics ``Ks`` with pixel centres at +0.5. transforms.json poses are camera-to-world in OpenGL axes
  (x right, y up, z back): the y and z columns are negated, then the matrix is inverted.
* Test split: with ``transforms_train.json`` + ``transforms_test.json`` those files decide (file order kept;
  ``transforms_val.json`` is ignored). Otherwise views are sorted by image name and view ``i`` is a test view
  when ``i % test_every == 0`` (the Mip-NeRF 360 "every 8th" convention); ``test_every=0`` means no test
  views. If that rule would leave no training view (a single image), every view is used for training.
* Downscale by an integer factor ``d``: each image becomes ``round(W / d) x round(H / d)`` (Python ``round``,
  as :meth:`Cameras.scaled`) by area averaging (an exact d x d block mean when ``d`` divides the size,
  Pillow BOX in float otherwise). COLMAP datasets use ``images_{d}/`` instead when that folder exists.
  Intrinsics are always scaled per axis by (final image size / size the camera model refers to), so they
  match the pixels actually loaded (for divisible sizes this is exactly ``K[:2] / d``).
* Images: float32 [C, H, W, 3] in [0, 1]; alpha (RGBA, LA, transparent palette) is composited over
  ``background``; all images of a split must have the same size.
* ``scene_scale`` = 1.1 x the largest distance of a training camera centre from their mean (3DGS's
  ``getNerfppNorm``), or 1.0 when all cameras coincide.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError
from .cameras import Cameras
from .colmap import find_model_files, read_model

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".webp", ".tif", ".tiff")
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class Dataset:
    """A posed image set ready for training and evaluation.

    Attributes:
        root: the dataset folder.
        train: training cameras with images [C, H, W, 3] float32 in [0, 1].
        test: test cameras with images (possibly empty, len 0).
        points: [P, 3] float32 initial points (COLMAP points3D, or points3d.ply beside transforms.json), or None.
        point_colors: [P, 3] float32 colours in [0, 1] (None exactly when ``points`` is None).
        scene_scale: 1.1 x radius of the training camera centres around their mean.
    """

    root: Path
    train: Cameras
    test: Cameras
    points: Tensor | None
    point_colors: Tensor | None
    scene_scale: float

    def __repr__(self) -> str:
        pts = "none" if self.points is None else str(len(self.points))
        return (
            f"Dataset(root={str(self.root)!r}, train={len(self.train)} views {self.train.width}x{self.train.height},"
            f" test={len(self.test)} views, points={pts}, scene_scale={self.scene_scale:.4g})"
        )


@dataclass
class _View:
    """One posed image before loading."""

    name: str  # sort key and Cameras.names entry
    path: Path  # image file
    viewmat: np.ndarray  # [4, 4] float64 world-to-camera (OpenCV)
    intrinsics: Callable[[int, int], np.ndarray]  # (file width, file height) -> [3, 3] K for the file's pixels
    prescaled: bool = False  # image already downscaled on disk (COLMAP images_{d}/)


# -- public entry point -----------------------------------------------------------------------------------


def load_dataset(
    path: str | os.PathLike,
    downscale: int = 1,
    test_every: int = 8,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Dataset:
    """Load a COLMAP or NeRF/Blender dataset folder (see the module docstring for every convention).

    ``path`` is the dataset folder (or a ``transforms*.json`` file). COLMAP is recognised by
    ``sparse/0/`` or ``sparse/`` holding ``cameras.bin``/``cameras.txt`` with images in ``images/``; it is
    preferred when a folder also has a transforms.json. Problems raise :class:`RaveError` naming the file.
    """
    downscale, test_every = _as_int(downscale, "downscale", 1), _as_int(test_every, "test_every", 0)
    try:
        bg = np.array([float(v) for v in background], dtype=np.float32)
    except (TypeError, ValueError):
        bg = np.zeros(0)
    if bg.shape != (3,) or not np.isfinite(bg).all():
        raise RaveError(f"background must be three numbers (r, g, b) in [0, 1], got {background!r}")

    kind, where = detect_dataset(path)
    if kind == "colmap":
        root, split_files = Path(path), None
        views, points, colors = _colmap_views(root, where[0], downscale)
    else:
        root = where[0].parent
        views, split_files, points, colors = _transforms_views(where)

    if split_files is not None:
        train_v, test_v = split_files
    else:
        views = sorted(views, key=lambda v: v.name)
        if test_every > 0:
            test_v = [v for i, v in enumerate(views) if i % test_every == 0]
            train_v = [v for i, v in enumerate(views) if i % test_every != 0]
        else:
            train_v, test_v = views, []
        if not train_v:
            warnings.warn(
                f"{root}: test_every={test_every} leaves no training view among {len(views)}: "
                "all views used for training, no test views",
                stacklevel=2,
            )
            train_v, test_v = views, []
    if not train_v:
        raise RaveError("the dataset has no training images", root)

    train = _load_split(train_v, downscale, bg, "train")
    test = _load_split(test_v, downscale, bg, "test") if test_v else _empty_cameras(train)
    centers = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in train_v])
    radius = float(np.linalg.norm(centers - centers.mean(0), axis=1).max())
    scene_scale = 1.1 * radius if radius > 1e-12 else 1.0
    return Dataset(root, train, test, points, colors, scene_scale)


def _as_int(value, name: str, minimum: int) -> int:
    if not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= minimum:
        return int(value)
    raise RaveError(f"{name} must be an integer >= {minimum}, got {value!r}")


def detect_dataset(path: str | os.PathLike) -> tuple[str, list[Path]]:
    """("colmap", [sparse model folder]) or ("transforms", [json files]) for ``path``; RaveError otherwise.

    For transforms the list is ``[transforms.json]`` or ``[transforms_train.json, transforms_test.json]``
    (``[transforms_train.json]`` alone when there is no test file: then it is split like transforms.json).
    """
    root = Path(path)
    if not root.exists():
        raise RaveError("dataset folder not found", root)
    if root.is_file():
        if root.suffix.lower() == ".json":
            return "transforms", [root]
        raise RaveError("expected a dataset folder (COLMAP or transforms.json), got a file", root)
    for sparse in (root / "sparse" / "0", root / "sparse"):
        if find_model_files(sparse) is not None:
            return "colmap", [sparse]
    train, test, single = root / "transforms_train.json", root / "transforms_test.json", root / "transforms.json"
    if train.is_file() and test.is_file():
        return "transforms", [train, test]
    if single.is_file():
        return "transforms", [single]
    if train.is_file():
        return "transforms", [train]
    raise RaveError(
        "no dataset found: looked for a COLMAP model (sparse/0/ or sparse/ with cameras.bin or cameras.txt, "
        "images in images/) and for transforms.json or transforms_train.json + transforms_test.json",
        root,
    )


# -- COLMAP -----------------------------------------------------------------------------------------------


def _colmap_views(root: Path, sparse: Path, downscale: int):
    model = read_model(sparse)
    if not model.images:
        raise RaveError("the COLMAP model has no registered images", sparse)
    img_dir = root / "images"
    scaled_dir = root / f"images_{downscale}"
    prescaled = downscale > 1 and scaled_dir.is_dir()
    if prescaled:
        img_dir = scaled_dir
    elif not img_dir.is_dir():
        raise RaveError("COLMAP dataset has no images/ folder", root)
    warned: set[int] = set()
    views = []
    for im in model.images.values():
        cam = model.cameras[im.camera_id]
        K = cam.K(source=find_model_files(sparse)[0])  # raises for unsupported models
        if cam.id not in warned and np.any(cam.distortion != 0):
            warned.add(cam.id)
            warnings.warn(
                f"{sparse}: camera {cam.id} ({cam.model}) has lens distortion {cam.distortion.tolist()}; it is "
                "ignored (pinhole model used); undistort with `colmap image_undistorter` for accurate results",
                stacklevel=3,
            )
        views.append(_View(im.name, img_dir / im.name, im.viewmat(), _scaled_K(K, cam.width, cam.height), prescaled))
    points = colors = None
    if len(model.points):
        points = torch.from_numpy(model.points.astype(np.float32))
        colors = torch.from_numpy(model.colors.astype(np.float32) / 255.0)
    return views, points, colors


def _scaled_K(K: np.ndarray, ref_w: float, ref_h: float) -> Callable[[int, int], np.ndarray]:
    """Intrinsics function: ``K`` refers to a ref_w x ref_h image; rescale to the file's actual size."""

    def fn(w: int, h: int) -> np.ndarray:
        return np.diag([w / ref_w, h / ref_h, 1.0]) @ K

    return fn


# -- NeRF / Blender transforms.json -----------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RaveError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RaveError(f"cannot read file: {getattr(e, 'strerror', None) or e}", path) from None
    if not isinstance(meta, dict):
        raise RaveError("expected a JSON object with a 'frames' list", path)
    if "frames" not in meta:
        raise RaveError("missing key 'frames'", path)
    if not isinstance(meta["frames"], list):
        raise RaveError("key 'frames' must be a list", path)
    return meta


def _number(d: dict, key: str, where: str, src: Path, positive: bool = False) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        kind = "a positive number" if positive else "a finite number"
        raise RaveError(f"{where}key '{key}' must be {kind}, got {v!r}", src)
    return float(v)


def _resolve_image(base: Path, file_path: str) -> Path | None:
    p = base / file_path
    if p.is_file():
        return p
    for ext in IMAGE_EXTS:  # Blender writes "./train/r_0" without the extension
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    return None


def _frame_intrinsics(meta: dict, frame: dict, where: str, src: Path) -> Callable[[int, int], np.ndarray]:
    """Parse (and check) intrinsics now; evaluate once the image size is known."""

    def get(key: str, positive: bool = False) -> float | None:  # per-frame value overrides the global one
        if key in frame:
            return _number(frame, key, where, src, positive)
        return _number(meta, key, "", src, positive)

    fl_x, fl_y, cx, cy = get("fl_x", True), get("fl_y", True), get("cx"), get("cy")
    w, h = get("w", True), get("h", True)
    ax, ay = get("camera_angle_x", True), get("camera_angle_y", True)
    if fl_x is None and ax is None:
        raise RaveError(f"{where}missing key 'camera_angle_x' (or 'fl_x'): no focal length", src)
    for k in ("k1", "k2", "k3", "p1", "p2"):
        if _number(frame, k, where, src) or _number(meta, k, "", src):
            warnings.warn(f"{src}: lens distortion ('{k}') is ignored (pinhole model used)", stacklevel=4)
            break

    def fn(file_w: int, file_h: int) -> np.ndarray:
        W = w if w is not None else float(file_w)
        H = h if h is not None else float(file_h)
        if fl_x is not None:
            fx, fy = fl_x, fl_y if fl_y is not None else fl_x
        else:
            fx = 0.5 * W / math.tan(0.5 * ax)
            fy = 0.5 * H / math.tan(0.5 * ay) if ay is not None else fx
        K = np.array([[fx, 0, W / 2 if cx is None else cx], [0, fy, H / 2 if cy is None else cy], [0, 0, 1.0]])
        return np.diag([file_w / W, file_h / H, 1.0]) @ K

    return fn


def _json_views(src: Path, root: Path, allow_empty: bool = False) -> tuple[list[_View], dict]:
    meta = _read_json(src)
    views = []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise RaveError(f"frame {i}: expected an object", src)
        fp = frame.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise RaveError(f"frame {i}: missing key 'file_path'", src)
        where = f"frame {i} ('{fp}'): "
        if "transform_matrix" not in frame:
            raise RaveError(f"{where}missing key 'transform_matrix'", src)
        try:
            c2w = np.array(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            c2w = np.zeros(0)
        if c2w.shape == (3, 4):
            c2w = np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]])
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all() or abs(np.linalg.det(c2w[:3, :3])) < 1e-12:
            raise RaveError(f"{where}key 'transform_matrix' must be an invertible 4x4 matrix of numbers", src)
        K_fn = _frame_intrinsics(meta, frame, where, src)
        path = _resolve_image(src.parent, fp)
        if path is None:
            raise RaveError(f"image file not found (frame {i} of {src.name})", src.parent / fp)
        viewmat = np.linalg.inv(c2w @ _OPENGL_TO_OPENCV)
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        views.append(_View(name, path, viewmat, K_fn))
    if not views and not allow_empty:
        raise RaveError("no frames (the 'frames' list is empty)", src)
    return views, meta


def _transforms_views(files: list[Path]):
    root = files[0].parent
    views, meta = _json_views(files[0], root)
    split = None
    if len(files) == 2:
        test_views, _ = _json_views(files[1], root, allow_empty=True)
        split = (views, test_views)
    points = colors = None
    ply_key = meta.get("ply_file_path")
    if isinstance(ply_key, str) and ply_key:
        ply = root / ply_key
        if not ply.is_file():
            raise RaveError(f"point cloud not found (key 'ply_file_path' of {files[0].name})", ply)
    else:
        ply = next((root / n for n in ("points3d.ply", "points3D.ply") if (root / n).is_file()), None)
    if ply is not None:
        points, colors = read_points_ply(ply)
    return views, split, points, colors


def read_points_ply(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Coloured point cloud from a PLY ``vertex`` element (x y z [red green blue]) as float32 tensors.

    Integer colours are divided by their type's maximum (255 for uchar); float colours are taken as [0, 1].
    Missing colours are grey (0.5). Returns ([P, 3] points, [P, 3] colours in [0, 1]).
    """
    from .ply import _read_plydata

    path = Path(path)
    ply = _read_plydata(path)
    if "vertex" not in [e.name for e in ply.elements]:
        raise RaveError("PLY has no 'vertex' element", path)
    data = ply["vertex"].data
    names = data.dtype.names or ()
    for n in ("x", "y", "z"):
        if n not in names:
            raise RaveError(f"point cloud PLY is missing property '{n}'", path)
    xyz = np.stack([np.asarray(data[n], dtype=np.float32) for n in ("x", "y", "z")], axis=1)
    if not np.isfinite(xyz).all():
        raise RaveError("point cloud has NaN/inf coordinates", path)
    if all(n in names for n in ("red", "green", "blue")):
        cols = []
        for n in ("red", "green", "blue"):
            c = np.asarray(data[n])
            if np.issubdtype(c.dtype, np.integer):
                c = c.astype(np.float32) / float(np.iinfo(c.dtype).max)
            cols.append(np.clip(np.nan_to_num(c.astype(np.float32)), 0.0, 1.0))
        rgb = np.stack(cols, axis=1)
    else:
        rgb = np.full_like(xyz, 0.5)
    return torch.from_numpy(np.ascontiguousarray(xyz)), torch.from_numpy(np.ascontiguousarray(rgb))


# -- images -----------------------------------------------------------------------------------------------


def load_image(path: Path, background: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]; alpha composited over ``background``; RaveError naming ``path``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I;16") or mode in ("I", "F"):
                a = np.asarray(im, dtype=np.float32)
                a = a / 65535.0 if mode != "F" else a
                return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
            alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
            arr = np.asarray(im.convert("RGBA" if alpha else "RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise RaveError("image file not found", path) from None
    except RaveError:
        raise
    except Exception as e:  # PIL.UnidentifiedImageError, truncated/corrupt data (OSError, SyntaxError, ...)
        msg = " ".join(str(e).split()) or type(e).__name__
        raise RaveError(f"cannot read image ({msg})", path) from None
    if alpha:
        a = arr[..., 3:4]
        arr = arr[..., :3] * a + background * (1.0 - a)
    return np.ascontiguousarray(arr, dtype=np.float32)


def downscale_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Area-average ``img`` [H, W, 3] to round(W / f) x round(H / f) (block mean when f divides the size)."""
    if factor == 1:
        return img
    h, w = img.shape[:2]
    if h % factor == 0 and w % factor == 0:
        return img.reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3), dtype=np.float32)
    from PIL import Image

    size = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(size, Image.Resampling.BOX))
        for c in range(3)
    ]
    return np.stack(chans, axis=2).astype(np.float32)


def _load_view(view: _View, downscale: int, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = load_image(view.path, background)
    fh, fw = img.shape[:2]
    K = view.intrinsics(fw, fh)
    if not view.prescaled:
        img = downscale_image(img, downscale)
    h, w = img.shape[:2]
    return img, np.diag([w / fw, h / fh, 1.0]) @ K


def _load_split(views: list[_View], downscale: int, background: np.ndarray, split: str) -> Cameras:
    from tqdm import tqdm

    n = len(views)
    images: Tensor | None = None
    Ks = np.zeros((n, 3, 3))
    workers = max(1, min(8, os.cpu_count() or 1, n))
    pool = ThreadPoolExecutor(workers)
    bar = None
    try:
        results = pool.map(lambda v: _load_view(v, downscale, background), views)
        bar = tqdm(results, total=n, desc=f"loading {split} images", unit="img", disable=None, leave=False)
        for i, (img, K) in enumerate(bar):
            h, w = img.shape[:2]
            if images is None:
                images = torch.empty(n, h, w, 3, dtype=torch.float32)
            elif (w, h) != (images.shape[2], images.shape[1]):
                raise RaveError(
                    f"image is {w}x{h} (after downscale {downscale}) but {views[0].path.name} is "
                    f"{images.shape[2]}x{images.shape[1]}; all {split} images must have the same size",
                    views[i].path,
                )
            images[i] = torch.from_numpy(img)
            Ks[i] = K
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)  # on error: do not decode the remaining images
    assert images is not None
    viewmats = torch.from_numpy(np.stack([v.viewmat for v in views])).float()
    return Cameras(
        viewmats=viewmats,
        Ks=torch.from_numpy(Ks).float(),
        width=int(images.shape[2]),
        height=int(images.shape[1]),
        images=images,
        names=[v.name for v in views],
    )


def _empty_cameras(like: Cameras) -> Cameras:
    return Cameras(
        viewmats=torch.zeros(0, 4, 4),
        Ks=torch.zeros(0, 3, 3),
        width=like.width,
        height=like.height,
        images=torch.zeros(0, like.height, like.width, 3),
        names=[],
    )


__all__ = ["Dataset", "load_dataset", "detect_dataset", "read_points_ply", "load_image", "downscale_image"]
