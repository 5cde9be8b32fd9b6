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
* Lens distortion (COLMAP SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV; transforms.json's k1 k2 k3 p1 p2,
  global or per frame): the photos are undistorted to pinhole cameras (:mod:`.undistort`) at their file
  resolution, before the downscale, and each view's ``K`` is then the undistorted camera's: same image
  size, focal length and principal point chosen so every pixel sees the photo (no black border to bias
  training; the field of view changes by a few percent). One ``note:`` line on stderr says so (also kept in
  ``Dataset.notes``). ``undistort=False`` keeps the photos and the distorted cameras' K (a pinhole fit,
  with one warning). Fisheye models are refused.

Untrusted input (a dataset someone shared): every image and point-cloud path must resolve, symlinks
included, inside the dataset folder (``allow_outside_paths=True`` lifts this), so a dataset cannot pull
other local files into a checkpoint; a view may not reuse another view's image file; image sizes are read
from the file headers and checked (:data:`MAX_IMAGE_PIXELS`, equal sizes, total memory) before any pixel
is decoded; numbers must be finite. Any input gives a :class:`Dataset` or one :class:`RaveError` line.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError
from ..jsonio import read_json
from .cameras import Cameras
from .colmap import _show, find_model_files, read_model
from .undistort import Distortion, DistortionError, Remap, undistorted_K

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".webp", ".tif", ".tiff")
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
#: Largest image decoded, in pixels (8192 x 8192: a 0.8 GB float32 RGB array), checked from the file header
#: before any pixel is decoded. It is below Pillow's own decompression-bomb threshold (about 89.5 MP), so
#: Pillow never warns about an image this module would load.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Largest ``downscale`` factor accepted (any larger one leaves a few pixels of any photo).
MAX_DOWNSCALE = 1024
#: Longest integer literal accepted in a transforms.json (a float64 holds at most 309 digits).
_OUTSIDE_HINT = "refused so a dataset cannot pull in other files (allow with --allow-outside-paths)"


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
        notes: what loading did that a user should know (the undistortion line), one line each.
    """

    root: Path
    train: Cameras
    test: Cameras
    points: Tensor | None
    point_colors: Tensor | None
    scene_scale: float
    notes: list[str] = field(default_factory=list)

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
    source: Path  # the file that lists this view (transforms*.json, COLMAP images file), for messages
    label: str  # how messages name the view ("frame 3 ('./train/r_3')", "image 'a.png'")
    prescaled: bool = False  # image already downscaled on disk (COLMAP images_{d}/)
    distortion: Distortion | None = None  # lens distortion of the photo (None: pinhole)
    lens: str = ""  # how messages name the lens model (COLMAP's model name; "OPENCV" for transforms.json)
    lens_source: Path | None = None  # the file defining the lens, when not ``source`` (COLMAP cameras file)
    undistort: tuple | None = None  # set by _probe_split: (K of the file, undistorted K of the file, fw, fh)


class _Paths:
    """The dataset folder's file references: confined to the folder (symlinks resolved), each file used once."""

    def __init__(self, root: Path, allow_outside: bool):
        self.root = root
        self.real = None if allow_outside else os.path.realpath(root)

    def join(self, base: Path, ref: str, label: str, src: Path) -> Path:
        """``base / ref``, refused (RaveError naming ``src``) when ``ref`` has a NUL or leads outside the folder."""
        if "\0" in ref:
            raise RaveError(f"{label}: the path contains a NUL character", src)
        return self.check(base / ref, label, src)

    def check(self, path: Path, label: str, src: Path) -> Path:
        if self.real is not None:
            real = os.path.realpath(path)
            if os.path.commonpath([real, self.real]) != self.real:
                raise RaveError(
                    f"{label}: the path leads outside the dataset folder {self.root} (to {_show(real, 200)}); "
                    + _OUTSIDE_HINT,
                    src,
                )
        return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL: no such file
        return False


def _file_key(path: Path) -> tuple:
    """Identity of the file behind ``path`` (hard links and symlinks included)."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return (os.path.realpath(path),)


def _unique(views: list[_View]) -> list[_View]:
    """``views``, refused when two of them read the same image file (a small list must not cost n x memory)."""
    seen: dict[tuple, _View] = {}
    for v in views:
        first = seen.setdefault(_file_key(v.path), v)
        if first is not v:
            raise RaveError(
                f"{v.label} uses the same image file as {first.label}; each view needs its own image", v.source
            )
    return views


def _pose(viewmat: np.ndarray, label: str, src: Path) -> np.ndarray:
    """``viewmat`` if it and its inverse (the camera centre) are finite in float32; RaveError otherwise."""
    with np.errstate(all="ignore"):
        try:
            inv = np.linalg.inv(viewmat)
        except np.linalg.LinAlgError:
            inv = np.full((4, 4), np.nan)
        ok = np.isfinite(viewmat.astype(np.float32)).all() and np.isfinite(inv.astype(np.float32)).all()
    if not ok:
        raise RaveError(f"{label}: the camera pose is not finite (or too large for float32)", src)
    return viewmat


# -- public entry point -----------------------------------------------------------------------------------


def load_dataset(
    path: str | os.PathLike,
    downscale: int = 1,
    test_every: int = 8,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    allow_outside_paths: bool = False,
    undistort: bool = True,
) -> Dataset:
    """Load a COLMAP or NeRF/Blender dataset folder (see the module docstring for every convention).

    ``path`` is the dataset folder (or a ``transforms*.json`` file). COLMAP is recognised by
    ``sparse/0/`` or ``sparse/`` holding ``cameras.bin``/``cameras.txt`` with images in ``images/``; it is
    preferred when a folder also has a transforms.json. Image and point-cloud paths that resolve outside the
    dataset folder (``..``, absolute paths, symlinks) are refused unless ``allow_outside_paths``. Photos
    with lens distortion are undistorted unless ``undistort=False`` (then the distortion is ignored, with a
    warning). Problems raise :class:`RaveError` naming the file.
    """
    downscale = _as_int(downscale, "downscale", 1, MAX_DOWNSCALE)
    test_every = _as_int(test_every, "test_every", 0)
    try:
        bg = np.array([float(v) for v in background], dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        bg = np.zeros(0)
    if bg.shape != (3,) or not np.isfinite(bg).all():
        raise RaveError(f"background must be three numbers (r, g, b) in [0, 1], got {_show(background)}")

    kind, where = detect_dataset(path)
    if kind == "colmap":
        root, split_files = Path(path), None
        paths = _Paths(root, bool(allow_outside_paths))
        views, points, colors = _colmap_views(root, where[0], downscale, paths)
    else:
        root = where[0].parent
        paths = _Paths(root, bool(allow_outside_paths))
        views, split_files, points, colors = _transforms_views(where, paths)

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
    distorted = [v for v in (*train_v, *test_v) if v.distortion is not None]
    if distorted and not undistort:
        d = distorted[0]
        warnings.warn(
            f"{d.lens_source or d.source}: {len(distorted)} photos have lens distortion ({d.lens} "
            f"{d.distortion.describe()}); it is ignored (undistort=False: pinhole model used)",
            stacklevel=2,
        )
        for v in distorted:
            v.distortion = None

    # Headers first: sizes, intrinsics and memory are checked before any pixel is decoded.
    probes = [(_probe_split(v, downscale, s), v, s) for v, s in ((train_v, "train"), (test_v, "test")) if v]
    _check_memory([(len(v), size) for (size, _), v, _ in probes], downscale, root)
    remaps = _Remaps()
    splits = [_load_split(v, size, Ks, downscale, bg, s, remaps) for (size, Ks), v, s in probes]
    train = splits[0]
    test = splits[1] if len(splits) > 1 else _empty_cameras(train)
    centers = np.stack([np.linalg.inv(v.viewmat)[:3, 3] for v in train_v])  # finite in float32 (_pose)
    radius = float(np.linalg.norm(centers - centers.mean(0), axis=1).max())
    scene_scale = 1.1 * radius if radius > 1e-12 else 1.0
    notes = [_undistortion_note(root, distorted)] if distorted and undistort else []
    return Dataset(root, train, test, points, colors, scene_scale, notes)


def _undistortion_note(root: Path, views: list[_View]) -> str:
    """One line for the whole dataset: how many photos were undistorted, with which lens, what K became."""
    lenses = sorted({f"{v.lens} {v.distortion.describe()}" for v in views})
    what = lenses[0] if len(lenses) == 1 else f"{len(lenses)} lens models"
    zoom = [v.undistort[1][0, 0] / v.undistort[0][0, 0] for v in views if v.undistort is not None]
    lo, hi = min(zoom), max(zoom)
    z = f"{lo:.3f}" if abs(hi - lo) < 5e-4 else f"{lo:.3f}..{hi:.3f}"
    return (f"{root}: undistorted {len(views)} photos ({what}) to pinhole cameras; focal length x{z} so that "
            "every pixel sees the photo")


def _as_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if (
        not isinstance(value, bool)
        and isinstance(value, numbers.Integral)
        and value >= minimum
        and (maximum is None or value <= maximum)
    ):
        return int(value)
    bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    raise RaveError(f"{name} must be an integer {bound}, got {_show(value)}")


def detect_dataset(path: str | os.PathLike) -> tuple[str, list[Path]]:
    """("colmap", [sparse model folder]) or ("transforms", [json files]) for ``path``; RaveError otherwise.

    For transforms the list is ``[transforms.json]`` or ``[transforms_train.json, transforms_test.json]``
    (``[transforms_train.json]`` alone when there is no test file: then it is split like transforms.json).
    """
    root = Path(path)
    try:
        exists, is_file = root.exists(), root.is_file()
    except (OSError, ValueError):  # a name too long for the system, a NUL character
        exists = is_file = False
    if not exists:
        raise RaveError("dataset folder not found", root)
    if is_file:
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


def _colmap_views(root: Path, sparse: Path, downscale: int, paths: _Paths):
    model = read_model(sparse)
    cams_file, imgs_file, pts_file = find_model_files(sparse)
    if not model.images:
        raise RaveError("the COLMAP model has no registered images", sparse)
    img_dir = root / "images"
    scaled_dir = root / f"images_{downscale}"
    prescaled = downscale > 1 and scaled_dir.is_dir()
    if prescaled:
        img_dir = scaled_dir
    elif not img_dir.is_dir():
        raise RaveError("COLMAP dataset has no images/ folder", root)
    views = []
    for im in model.images.values():
        cam = model.cameras[im.camera_id]
        K = cam.K(source=cams_file)  # raises for unsupported models and bad parameters
        dist = Distortion.from_colmap(cam.model, cam.params)
        label = f"image {im.id} ({_show(im.name, 200)})"
        path = paths.join(img_dir, im.name, label, imgs_file)
        viewmat = _pose(im.viewmat(), label, imgs_file)
        views.append(_View(im.name, path, viewmat, _scaled_K(K, cam.width, cam.height), imgs_file, label, prescaled,
                           None if dist is None or dist.is_zero else dist, cam.model, cams_file))
    _unique(views)
    points = colors = None
    if len(model.points):
        with np.errstate(over="ignore"):
            xyz = model.points.astype(np.float32)
        if not np.isfinite(xyz).all():
            raise RaveError("3D points have coordinates too large for float32", pts_file)
        points = torch.from_numpy(xyz)
        colors = torch.from_numpy(model.colors.astype(np.float32) / 255.0)
    return views, points, colors


def _scaled_K(K: np.ndarray, ref_w: float, ref_h: float) -> Callable[[int, int], np.ndarray]:
    """Intrinsics function: ``K`` refers to a ref_w x ref_h image; rescale to the file's actual size."""

    def fn(w: int, h: int) -> np.ndarray:
        return np.diag([w / ref_w, h / ref_h, 1.0]) @ K

    return fn


# -- NeRF / Blender transforms.json -----------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    meta = read_json(path, "invalid JSON")
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
    ok = not isinstance(v, bool) and isinstance(v, (int, float))
    if ok:
        try:
            f = float(v)
        except OverflowError:  # an int beyond float64
            ok = False
        else:
            ok = math.isfinite(f) and (f > 0 or not positive)
    if not ok:
        kind = "a positive number" if positive else "a finite number"
        raise RaveError(f"{where}key '{key}' must be {kind}, got {_show(v)}", src)
    return f


def _find_image(base: Path, file_path: str, paths: _Paths, label: str, src: Path) -> Path:
    p = paths.join(base, file_path, label, src)
    # Blender writes "./train/r_0" without the extension
    for q in (p, *(p.parent / (p.name + ext) for ext in IMAGE_EXTS)):
        if _is_file(q):
            return paths.check(q, label, src)
    raise RaveError(f"image file not found ({label} of {src.name})", p)


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
    for key, angle in (("camera_angle_x", ax), ("camera_angle_y", ay)):
        if angle is not None and angle >= math.pi:
            raise RaveError(f"{where}key '{key}' must be a field of view in radians below pi, got {angle!r}", src)

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


#: transforms.json camera models that are not a pinhole with OpenCV distortion (nerfstudio's names).
_FISHEYE_MODELS = ("OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR", "FISHEYE624")


def _frame_distortion(meta: dict, frame: dict, where: str, src: Path) -> Distortion | None:
    """The frame's lens distortion (k1 k2 k3 p1 p2, per frame or global), None for a pinhole."""

    def get(key: str) -> float:
        v = _number(frame, key, where, src) if key in frame else _number(meta, key, "", src)
        return 0.0 if v is None else v

    model = frame.get("camera_model", meta.get("camera_model"))
    if isinstance(model, str) and model.upper() in _FISHEYE_MODELS:
        raise RaveError(f"{where}camera_model {_show(model)} is not supported (pinhole cameras with OpenCV "
                        "distortion k1 k2 k3 p1 p2 only)", src)
    for k in ("k4", "k5", "k6"):
        if get(k):
            raise RaveError(f"{where}key '{k}' is not supported (fisheye or higher-order lens model); "
                            "lens distortion is read from k1 k2 k3 p1 p2", src)
    dist = Distortion(k1=get("k1"), k2=get("k2"), p1=get("p1"), p2=get("p2"), k3=get("k3"))
    return None if dist.is_zero else dist


def frame_viewmat(frame: dict, where: str, src: Path) -> np.ndarray:
    """World-to-camera (OpenCV) matrix of a transforms.json frame's ``transform_matrix`` (OpenGL c2w, 3x4 or
    4x4); RaveError naming ``src`` unless it is an invertible matrix of finite numbers."""
    if "transform_matrix" not in frame:
        raise RaveError(f"{where}missing key 'transform_matrix'", src)
    try:
        c2w = np.array(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        c2w = np.zeros(0)
    if c2w.shape == (3, 4):
        c2w = np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]])
    with np.errstate(all="ignore"):
        if c2w.shape == (4, 4) and np.isfinite(c2w).all() and abs(np.linalg.det(c2w[:3, :3])) >= 1e-12:
            try:
                return np.linalg.inv(c2w @ _OPENGL_TO_OPENCV)
            except np.linalg.LinAlgError:  # e.g. a zero last row
                pass
    raise RaveError(f"{where}key 'transform_matrix' must be an invertible 4x4 matrix of numbers", src)


def _json_views(src: Path, root: Path, paths: _Paths, allow_empty: bool = False) -> tuple[list[_View], dict]:
    meta = _read_json(src)
    views = []
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise RaveError(f"frame {i}: expected an object", src)
        fp = frame.get("file_path")
        if not isinstance(fp, str) or not fp:
            raise RaveError(f"frame {i}: missing key 'file_path'", src)
        label = f"frame {i} ({_show(fp, 200)})"
        where = label + ": "
        viewmat = frame_viewmat(frame, where, src)
        K_fn = _frame_intrinsics(meta, frame, where, src)
        dist = _frame_distortion(meta, frame, where, src)
        path = _find_image(src.parent, fp, paths, label, src)
        viewmat = _pose(viewmat, label, src)
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        views.append(_View(name, path, viewmat, K_fn, src, label, distortion=dist, lens="OPENCV"))
    if not views and not allow_empty:
        raise RaveError("no frames (the 'frames' list is empty)", src)
    return _unique(views), meta


def _transforms_views(files: list[Path], paths: _Paths):
    root = files[0].parent
    views, meta = _json_views(files[0], root, paths)
    split = None
    if len(files) == 2:
        test_views, _ = _json_views(files[1], root, paths, allow_empty=True)
        split = (views, test_views)
    points = colors = None
    ply_key = meta.get("ply_file_path")
    if ply_key is not None and not isinstance(ply_key, str):
        raise RaveError(f"key 'ply_file_path' must be a string, got {_show(ply_key)}", files[0])
    if ply_key:
        label = f"key 'ply_file_path' ({_show(ply_key, 200)})"
        ply = paths.join(root, ply_key, label, files[0])
        if not _is_file(ply):
            raise RaveError(f"point cloud not found (key 'ply_file_path' of {files[0].name})", ply)
        paths.check(ply, label, files[0])
    else:
        ply = next((root / n for n in ("points3d.ply", "points3D.ply") if (root / n).is_file()), None)
        if ply is not None:
            paths.check(ply, f"point cloud {ply.name}", ply)
    if ply is not None:
        points, colors = read_points_ply(ply)
    return views, split, points, colors


# -- point clouds (points3d.ply) ----------------------------------------------------------------------------


def read_points_ply(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Coloured point cloud from a PLY ``vertex`` element (x y z [red green blue]) as float32 tensors.

    Integer colours are divided by their type's maximum (255 for uchar); float colours are taken as [0, 1].
    Missing colours are grey (0.5). Returns ([P, 3] points, [P, 3] colours in [0, 1]). The header is
    checked against the file size before any data is read, and only the vertex element is read
    (:func:`~rave_viewer.scene.ply.read_ply_vertices`), so a tiny file declaring huge elements costs nothing.
    """
    from .ply import read_ply_vertices

    path = Path(path)
    data = read_ply_vertices(path)  # scalar properties only; RaveError naming the file otherwise
    names = data.dtype.names or ()
    for n in ("x", "y", "z"):
        if n not in names:
            raise RaveError(f"point cloud PLY is missing property '{n}'", path)
    with np.errstate(all="ignore"):
        xyz = np.stack([np.asarray(data[n], dtype=np.float32) for n in ("x", "y", "z")], axis=1)
    if not np.isfinite(xyz).all():
        raise RaveError("point cloud has NaN/inf coordinates", path)
    if all(n in names for n in ("red", "green", "blue")):
        cols = []
        for n in ("red", "green", "blue"):
            c = np.asarray(data[n])
            if np.issubdtype(c.dtype, np.integer):
                c = c.astype(np.float32) / float(np.iinfo(c.dtype).max)
            with np.errstate(all="ignore"):
                cols.append(c.astype(np.float32))
        rgb = np.stack(cols, axis=1)
        bad = int((~np.isfinite(rgb)).any(axis=1).sum())
        if bad:
            warnings.warn(f"{path}: {bad} of {len(rgb)} points have NaN/inf colours; NaN and -inf set to 0, "
                          "+inf to 1", stacklevel=2)
        with np.errstate(all="ignore"):
            rgb = np.clip(np.nan_to_num(rgb), 0.0, 1.0)
    else:
        rgb = np.full_like(xyz, 0.5)
    del data  # release the memory map
    return torch.from_numpy(np.ascontiguousarray(xyz)), torch.from_numpy(np.ascontiguousarray(rgb))


# -- images -----------------------------------------------------------------------------------------------


def _image_error(e: Exception, path: Path) -> RaveError:
    from PIL import Image

    if isinstance(e, FileNotFoundError):
        return RaveError("image file not found", path)
    if isinstance(e, IsADirectoryError):
        return RaveError("is a folder, expected an image file", path)
    msg = " ".join(str(e).split()) or type(e).__name__
    msg = msg if len(msg) <= 300 else msg[:297] + "..."
    if isinstance(e, Image.DecompressionBombError):
        return RaveError(f"image is too large to decode ({msg}); the limit is {MAX_IMAGE_PIXELS} pixels", path)
    # PIL.UnidentifiedImageError, truncated/corrupt data (OSError, SyntaxError, ...)
    return RaveError(f"cannot read image ({msg})", path)


def _check_pixels(size: tuple[int, int], path: Path, max_pixels: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise RaveError(f"image is {w}x{h}: it has no pixels", path)
    if w * h > max_pixels:
        raise RaveError(
            f"image is {w}x{h} ({w * h / 1e6:.1f} megapixels), above the limit of {max_pixels / 1e6:.1f} "
            "megapixels (MAX_IMAGE_PIXELS); resize the images on disk",
            path,
        )


@contextlib.contextmanager
def _no_bomb_warning() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning (our own size check decides, in one line).

    Warnings filters are process-wide and ``catch_warnings`` is not thread-safe, so this acts in the main
    thread only; worker threads only open images whose header was already checked there (``_probe_split``),
    and :data:`MAX_IMAGE_PIXELS` is below Pillow's threshold, so they never trigger the warning.
    """
    from PIL import Image

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def image_size(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image from its file header (no pixel decoded); RaveError if unreadable or too large."""
    from PIL import Image

    try:
        with _no_bomb_warning(), Image.open(path) as im:
            size = im.size
    except Exception as e:
        raise _image_error(e, path) from None
    _check_pixels(size, path, max_pixels)
    return int(size[0]), int(size[1])


def load_image(path: Path, background: np.ndarray, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]; alpha composited over ``background``; RaveError naming ``path``.

    The size is checked from the header before decoding: images above ``max_pixels`` are refused.
    """
    from PIL import Image

    try:
        with _no_bomb_warning(), Image.open(path) as im:
            _check_pixels(im.size, path, max_pixels)
            im.load()
            mode = im.mode
            if mode.startswith("I;16") or mode in ("I", "F"):
                a = np.asarray(im, dtype=np.float32)
                a = a / 65535.0 if mode != "F" else a
                return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2)
            alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
            arr = np.asarray(im.convert("RGBA" if alpha else "RGB"), dtype=np.float32)
            arr /= 255.0
    except RaveError:
        raise
    except Exception as e:
        raise _image_error(e, path) from None
    if alpha:
        a = arr[..., 3:4]
        arr = arr[..., :3] * a + background * (1.0 - a)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _scaled_size(w: int, h: int, factor: int) -> tuple[int, int]:
    """Size of a w x h image after :func:`downscale_image` by ``factor``."""
    if h % factor == 0 and w % factor == 0:
        return w // factor, h // factor
    return max(1, int(round(w / factor))), max(1, int(round(h / factor)))


def downscale_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Area-average ``img`` [H, W, 3] to round(W / f) x round(H / f) (block mean when f divides the size)."""
    if factor == 1:
        return img
    h, w = img.shape[:2]
    if h % factor == 0 and w % factor == 0:
        return img.reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3), dtype=np.float32)
    from PIL import Image

    size = _scaled_size(w, h, factor)
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(size, Image.Resampling.BOX))
        for c in range(3)
    ]
    return np.stack(chans, axis=2).astype(np.float32)


def _probe_split(views: list[_View], downscale: int, split: str) -> tuple[tuple[int, int], np.ndarray]:
    """((width, height) after downscale, [n, 3, 3] Ks) from the image headers: sizes checked, nothing decoded."""
    Ks = np.zeros((len(views), 3, 3))
    new_K: dict[tuple, np.ndarray] = {}  # undistorted intrinsics per (K, lens, file size)
    size: tuple[int, int] | None = None
    first = views[0]
    for i, v in enumerate(views):
        fw, fh = image_size(v.path)
        w, h = (fw, fh) if v.prescaled else _scaled_size(fw, fh, downscale)
        if size is None:
            size = (w, h)
        elif (w, h) != size:
            raise RaveError(
                f"image is {w}x{h} (after downscale {downscale}) but {first.path.name} is {size[0]}x{size[1]}; "
                f"all {split} images must have the same size",
                v.path,
            )
        with np.errstate(all="ignore"):
            K = np.diag([w / fw, h / fh, 1.0]) @ v.intrinsics(fw, fh)
            K32 = K.astype(np.float32)  # what the cameras keep
            ok = bool(np.isfinite(K32).all() and K32[0, 0] > 0 and K32[1, 1] > 0)
        if not ok:
            raise RaveError(
                f"{v.label}: its intrinsics for the {fw}x{fh} image are not finite positive numbers "
                f"({_show(K.tolist())})",
                v.source,
            )
        if v.distortion is not None:
            K_file = v.intrinsics(fw, fh)
            key = (K_file.tobytes(), v.distortion, fw, fh)
            if key not in new_K:
                try:
                    new_K[key] = undistorted_K(K_file, v.distortion, fw, fh)
                except DistortionError as e:
                    raise RaveError(f"{v.label} ({v.lens} camera): {e}", v.lens_source or v.source) from None
            v.undistort = (K_file, new_K[key], fw, fh)
            K = np.diag([w / fw, h / fh, 1.0]) @ new_K[key]
        Ks[i] = K
    assert size is not None
    return size, Ks


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(splits: list[tuple[int, tuple[int, int]]], downscale: int, root: Path) -> None:
    """Refuse a dataset whose decoded images (float32) would not fit in this machine's memory."""
    need = sum(n * w * h * 3 * 4 for n, (w, h) in splits)
    total = _physical_memory()
    if total is not None and need > total:
        n = sum(n for n, _ in splits)
        raise RaveError(
            f"the {n} images need {need / 1e9:.1f} GB as float32 (after downscale {downscale}), more than this "
            f"machine's {total / 1e9:.1f} GB of memory; use a larger downscale",
            root,
        )


class _Remaps:
    """Undistortion maps shared by the views of one camera (built once, by one thread), bounded in memory."""

    BUDGET = 256 << 20  # bytes of maps kept (about 16 bytes per pixel)

    def __init__(self):
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._maps: OrderedDict[tuple, Remap] = OrderedDict()

    def get(self, view: _View) -> Remap:
        K_file, K_new, fw, fh = view.undistort
        key = (K_file.tobytes(), K_new.tobytes(), view.distortion, fw, fh)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._maps:
                    self._maps.move_to_end(key)
                    return self._maps[key]
            remap = Remap(K_file, view.distortion, K_new, fw, fh)
            with self._lock:
                self._maps[key] = remap
                while len(self._maps) > 1 and sum(16 * m.width * m.height for m in self._maps.values()) > self.BUDGET:
                    self._maps.popitem(last=False)
            return remap


def _load_view(view: _View, downscale: int, background: np.ndarray, remaps: _Remaps | None = None) -> np.ndarray:
    img = load_image(view.path, background)
    if view.undistort is not None and remaps is not None:
        fw, fh = view.undistort[2:]
        if img.shape[:2] != (fh, fw):  # the file changed since its header was read
            raise RaveError(f"image is {img.shape[1]}x{img.shape[0]} after decoding, expected {fw}x{fh}", view.path)
        img = remaps.get(view)(img)
    return img if view.prescaled else downscale_image(img, downscale)


def _load_split(
    views: list[_View], size: tuple[int, int], Ks: np.ndarray, downscale: int, background: np.ndarray, split: str,
    remaps: _Remaps | None = None,
) -> Cameras:
    from tqdm import tqdm

    n, (w, h) = len(views), size
    images = torch.empty(n, h, w, 3, dtype=torch.float32)
    workers = max(1, min(8, os.cpu_count() or 1, n))
    pool = ThreadPoolExecutor(workers)
    bar = None
    try:
        results = pool.map(lambda v: _load_view(v, downscale, background, remaps), views)
        bar = tqdm(results, total=n, desc=f"loading {split} images", unit="img", disable=None, leave=False)
        for i, img in enumerate(bar):
            if img.shape[:2] != (h, w):  # the file changed since its header was read
                got = f"{img.shape[1]}x{img.shape[0]}"
                raise RaveError(f"image is {got} after decoding, expected {w}x{h}", views[i].path)
            images[i] = torch.from_numpy(img)
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_futures=True)  # on error: do not decode the remaining images
    viewmats = torch.from_numpy(np.stack([v.viewmat for v in views])).float()
    return Cameras(
        viewmats=viewmats,
        Ks=torch.from_numpy(Ks).float(),
        width=int(w),
        height=int(h),
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


__all__ = [
    "Dataset", "load_dataset", "detect_dataset", "read_points_ply", "load_image", "image_size",
    "downscale_image", "MAX_IMAGE_PIXELS", "MAX_DOWNSCALE",
]  # fmt: skip
