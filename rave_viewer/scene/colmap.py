"""A small COLMAP sparse-model reader/writer (binary and text), so datasets load without pycolmap.

Formats follow COLMAP's ``read_write_model.py``. Only what a 3DGS trainer needs is kept: cameras (model,
size, parameters), registered images (pose, camera, name; 2D keypoints are skipped) and 3D points (xyz, rgb;
tracks are skipped). The writers exist so tests can generate small models.

Every file is checked before it is trusted: each declared count (cameras, images, 2D points, 3D points,
track lengths) must fit in the bytes that follow it before anything is allocated, image sizes must be
positive, and every number (intrinsics, poses, points) must be finite, so any input gives a model or one
:class:`RaveError` line naming the file.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RaveError
from ..fileio import atomic_write_bytes, atomic_write_text

#: COLMAP camera models: id -> (name, number of parameters).
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
#: Models we read: pinhole intrinsics plus (the last four) OpenCV-style distortion, which the dataset
#: loader undistorts (:mod:`.undistort`). Fisheye and other models are refused.
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")
#: Largest camera width or height accepted (pixels); a larger value is a corrupt file, not a camera.
MAX_CAMERA_SIZE = 1 << 20
# Smallest record of each binary list (bytes), so a declared count can be checked against the file size.
_CAMERA_MIN_BYTES = 24 + 8 * min(n for _, n in CAMERA_MODELS.values())  # iiQQ + parameters
_IMAGE_MIN_BYTES = 64 + 1 + 8  # i7di + name terminator + number of 2D points
_POINT2D_BYTES = 24  # x, y: double, point3D_id: int64
_POINT3D_MIN_BYTES = 51  # Q3d3BdQ (id, xyz, rgb, error, track length)
_TRACK_BYTES = 8  # image_id: int32, point2D_idx: int32


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [P] float64, COLMAP's parameter order for ``model``

    def K(self, source: str | os.PathLike | None = None) -> np.ndarray:
        """[3, 3] float64 pinhole intrinsics (COLMAP and gsplat both put pixel centres at +0.5).

        Raises RaveError (naming ``source``, the cameras file) for models that are not pinhole-like.
        """
        p = self.params
        if self.model in SUPPORTED_MODELS and (
            len(p) != MODEL_IDS[self.model][1] or not np.isfinite(p).all() or p[0] <= 0
            or (self.model in ("PINHOLE", "OPENCV", "FULL_OPENCV") and p[1] <= 0)
        ):
            raise RaveError(
                f"camera {self.id}: {self.model} needs {MODEL_IDS[self.model][1]} finite parameters with "
                f"positive focal lengths, got {_show(p.tolist())}",
                source,
            )
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
        elif self.model in ("PINHOLE", "OPENCV", "FULL_OPENCV"):
            fx, fy, cx, cy = p[:4]
        else:
            raise RaveError(
                f"camera {self.id}: COLMAP model {self.model} is not supported "
                f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort the images with colmap image_undistorter",
                source,
            )
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)

    @property
    def distortion(self) -> np.ndarray:
        """Distortion parameters (empty for pinhole models)."""
        skip = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3, "OPENCV": 4, "FULL_OPENCV": 4}
        return self.params[skip.get(self.model, len(self.params)) :]


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z), world-to-camera rotation
    tvec: np.ndarray  # [3] float64, world-to-camera translation
    camera_id: int
    name: str

    def viewmat(self) -> np.ndarray:
        """[4, 4] float64 world-to-camera matrix (OpenCV axes, as COLMAP)."""
        m = np.eye(4)
        m[:3, :3] = qvec_to_rotmat(self.qvec)
        m[:3, 3] = self.tvec
        return m


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera] = field(default_factory=dict)
    images: dict[int, ColmapImage] = field(default_factory=dict)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [P, 3] float64
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # [P, 3] uint8


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """[3, 3] rotation matrix of the (normalised) quaternion ``q = (w, x, y, z)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.abs(q).max()  # first to [-1, 1], so the norm cannot overflow (q = 1e300 is a valid rotation)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * z * x + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * z * x - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternion with w >= 0 of rotation matrix ``R`` (COLMAP's method)."""
    Rxx, Ryx, Rzx, Rxy, Ryy, Rzy, Rxz, Ryz, Rzz = np.asarray(R, dtype=np.float64).flat
    Km = (
        np.array(
            [
                [Rxx - Ryy - Rzz, 0, 0, 0],
                [Ryx + Rxy, Ryy - Rxx - Rzz, 0, 0],
                [Rzx + Rxz, Rzy + Ryz, Rzz - Rxx - Ryy, 0],
                [Ryz - Rzy, Rzx - Rxz, Rxy - Ryx, Rxx + Ryy + Rzz],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(Km)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


# -- reading --------------------------------------------------------------------------------------------


def find_model_files(folder: Path) -> tuple[Path, Path, Path] | None:
    """(cameras, images, points3D) paths of the model in ``folder`` (binary preferred), or None."""
    for ext in (".bin", ".txt"):
        cams = folder / f"cameras{ext}"
        if cams.is_file():
            return cams, folder / f"images{ext}", folder / f"points3D{ext}"
    return None


def read_model(folder: str | os.PathLike) -> ColmapModel:
    """Read the sparse model in ``folder`` (``cameras/images/points3D`` ``.bin`` or ``.txt``).

    A missing points3D file gives an empty point set; missing cameras/images files raise RaveError.
    """
    folder = Path(folder)
    files = find_model_files(folder)
    if files is None:
        raise RaveError("no COLMAP model here (looked for cameras.bin or cameras.txt)", folder)
    cams_p, imgs_p, pts_p = files
    if not imgs_p.is_file():
        raise RaveError("COLMAP model file not found", imgs_p)
    binary = cams_p.suffix == ".bin"
    model = ColmapModel()
    model.cameras = (_read_cameras_bin if binary else _read_cameras_txt)(cams_p)
    model.images = (_read_images_bin if binary else _read_images_txt)(imgs_p)
    if pts_p.is_file():
        model.points, model.colors = (_read_points_bin if binary else _read_points_txt)(pts_p)
    for im in model.images.values():
        if im.camera_id not in model.cameras:
            raise RaveError(f"image '{im.name}' refers to camera {im.camera_id}, which is not in {cams_p.name}", imgs_p)
    return model


@functools.lru_cache(maxsize=64)
def _struct(fmt: str) -> struct.Struct:
    return struct.Struct("<" + fmt)


class _Reader:
    """Little-endian struct reader over a whole file, turning short reads into RaveError."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.buf = path.read_bytes()
        except OSError as e:
            raise RaveError(f"cannot read file: {e.strerror or e}", path) from None
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        s = _struct(fmt)
        if self.pos + s.size > len(self.buf):
            raise RaveError(f"truncated COLMAP binary file (ends at byte {len(self.buf)})", self.path)
        out = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return out

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise RaveError(f"truncated COLMAP binary file (ends at byte {len(self.buf)})", self.path)
        self.pos += n

    def count(self, what: str, min_bytes: int) -> int:
        """Read a uint64 count of records of at least ``min_bytes`` each; refuse it if they cannot fit."""
        (n,) = self.read("Q")
        left = len(self.buf) - self.pos
        if n * min_bytes > left:
            raise RaveError(
                f"declares {n} {what} but only {left} bytes follow (at least {min_bytes} each): "
                "truncated or corrupt COLMAP binary file",
                self.path,
            )
        return n

    def cstring(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise RaveError("truncated COLMAP binary file (unterminated image name)", self.path)
        s = self.buf[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s


def _show(value: object, limit: int = 80) -> str:
    """``repr`` for an error message, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit printing limit
        return "(a number too long to print)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_camera(cam: ColmapCamera, path: Path, where: str) -> ColmapCamera:
    """``cam`` if its size is positive and bounded and its parameters are finite; RaveError otherwise."""
    if not (0 < cam.width <= MAX_CAMERA_SIZE and 0 < cam.height <= MAX_CAMERA_SIZE):
        raise RaveError(
            f"{where}camera {cam.id} is {cam.width}x{cam.height}: width and height must be 1..{MAX_CAMERA_SIZE}",
            path,
        )
    if not np.isfinite(cam.params).all():
        raise RaveError(f"{where}camera {cam.id} has non-finite parameters {_show(cam.params.tolist())}", path)
    return cam


def _check_image(im: ColmapImage, path: Path, where: str) -> ColmapImage:
    """``im`` if its pose is finite with a non-zero quaternion; RaveError otherwise."""
    label = f"{where}image {im.id} ({_show(im.name, 60)})"
    if not (np.isfinite(im.qvec).all() and np.isfinite(im.tvec).all()):
        raise RaveError(
            f"{label} has a non-finite pose (qvec {_show(im.qvec.tolist())}, tvec {_show(im.tvec.tolist())})", path
        )
    if not np.abs(im.qvec).max() > 0:
        raise RaveError(f"{label} has a zero quaternion (qvec {_show(im.qvec.tolist())})", path)
    if "\0" in im.name:
        raise RaveError(f"{label} has a NUL character in its name", path)
    return im


def _check_points(xyz: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RaveError(f"3D point {i} (of {len(xyz)}) has non-finite coordinates {_show(xyz[i].tolist())}", path)


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    cams = {}
    for _ in range(r.count("cameras", _CAMERA_MIN_BYTES)):
        cid, mid, w, h = r.read("iiQQ")
        if mid not in CAMERA_MODELS:
            raise RaveError(f"camera {cid} has unknown COLMAP model id {mid}", path)
        name, n = CAMERA_MODELS[mid]
        cam = ColmapCamera(cid, name, int(w), int(h), np.array(r.read(f"{n}d"), dtype=np.float64))
        cams[cid] = _check_camera(cam, path, "")
    return cams


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    images = {}
    for _ in range(r.count("images", _IMAGE_MIN_BYTES)):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("i7di")
        name = r.cstring()
        im = _check_image(ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name), path, "")
        n2d = r.count(f"2D points for image {iid}", _POINT2D_BYTES)
        r.skip(_POINT2D_BYTES * n2d)
        images[iid] = im
    return images


def _read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    n = r.count("3D points", _POINT3D_MIN_BYTES)  # bounds the arrays below by the file size
    xyz = np.empty((n, 3), dtype=np.float64)
    rgb = np.empty((n, 3), dtype=np.uint8)
    for i in range(n):
        _, x, y, z, cr, cg, cb, _err, track_len = r.read("Q3d3BdQ")
        xyz[i] = (x, y, z)
        rgb[i] = (cr, cg, cb)
        if track_len * _TRACK_BYTES > len(r.buf) - r.pos:
            raise RaveError(
                f"3D point {i} declares a track of {track_len} observations but only {len(r.buf) - r.pos} "
                "bytes follow: truncated or corrupt COLMAP binary file",
                path,
            )
        r.skip(_TRACK_BYTES * track_len)
    _check_points(xyz, path)
    return xyz, rgb


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise RaveError(f"cannot read file: {e.strerror or e}", path) from None


def _bad_line(path: Path, lineno: int, what: str) -> RaveError:
    return RaveError(f"line {lineno}: malformed {what}", path)


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for i, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        e = line.split()
        try:
            cid, model, w, h = int(e[0]), e[1], int(e[2]), int(e[3])
            params = np.array([float(v) for v in e[4:]], dtype=np.float64)
        except (ValueError, IndexError):
            raise _bad_line(path, i, "camera (expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...)") from None
        if model not in MODEL_IDS:
            raise RaveError(f"line {i}: unknown COLMAP camera model '{model}'", path)
        if len(params) != MODEL_IDS[model][1]:
            raise RaveError(f"line {i}: {model} needs {MODEL_IDS[model][1]} parameters, got {len(params)}", path)
        cams[cid] = _check_camera(ColmapCamera(cid, model, w, h, params), path, f"line {i}: ")
    return cams


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    images = {}
    lines = _text_lines(path)
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        e = line.split(maxsplit=9)
        try:
            iid = int(e[0])
            q = np.array([float(v) for v in e[1:5]])
            t = np.array([float(v) for v in e[5:8]])
            cid, name = int(e[8]), e[9]
        except (ValueError, IndexError):
            raise _bad_line(path, i, "image (expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME)") from None
        images[iid] = _check_image(ColmapImage(iid, q, t, cid, name), path, f"line {i}: ")
        i += 1  # the next line holds the image's 2D points (possibly empty): skipped
    return images


def _read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for i, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        e = line.split()
        try:
            p, c = [float(v) for v in e[1:4]], [int(v) for v in e[4:7]]
            if len(p) != 3 or len(c) != 3:
                raise ValueError
        except ValueError:
            raise _bad_line(path, i, "point (expected POINT3D_ID X Y Z R G B ERROR TRACK...)") from None
        if not all(map(math.isfinite, p)):
            raise RaveError(f"line {i}: 3D point has non-finite coordinates {_show(p)}", path)
        if not all(0 <= v <= 255 for v in c):
            raise RaveError(f"line {i}: 3D point colour {_show(c)} is not three integers in 0..255", path)
        xyz.append(p)
        rgb.append(c)
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(rgb, dtype=np.uint8).reshape(-1, 3)


# -- writing (test fixtures, exports) ---------------------------------------------------------------------


def write_colmap_binary(model: ColmapModel, folder: str | os.PathLike) -> None:
    """Write ``model`` as ``cameras.bin``, ``images.bin``, ``points3D.bin`` (no keypoints, empty tracks)."""
    folder = Path(folder)
    out = [struct.pack("<Q", len(model.cameras))]
    for c in model.cameras.values():
        mid, n = MODEL_IDS[c.model]
        out.append(struct.pack(f"<iiQQ{n}d", c.id, mid, c.width, c.height, *map(float, c.params)))
    atomic_write_bytes(folder / "cameras.bin", b"".join(out))
    out = [struct.pack("<Q", len(model.images))]
    for im in model.images.values():
        out.append(struct.pack("<i7di", im.id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id))
        out.append(im.name.encode("utf-8") + b"\0" + struct.pack("<Q", 0))
    atomic_write_bytes(folder / "images.bin", b"".join(out))
    out = [struct.pack("<Q", len(model.points))]
    for i, (p, c) in enumerate(zip(model.points, model.colors)):
        out.append(struct.pack("<Q3d3BdQ", i + 1, *map(float, p), *map(int, c), 0.0, 0))
    atomic_write_bytes(folder / "points3D.bin", b"".join(out))


def write_colmap_text(model: ColmapModel, folder: str | os.PathLike) -> None:
    """Write ``model`` as ``cameras.txt``, ``images.txt``, ``points3D.txt`` (floats with full precision)."""
    folder = Path(folder)
    r = repr  # shortest round-tripping float text
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for c in model.cameras.values():
        lines.append(" ".join([str(c.id), c.model, str(c.width), str(c.height), *(r(float(v)) for v in c.params)]))
    atomic_write_text(folder / "cameras.txt", "\n".join(lines) + "\n")
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for im in model.images.values():
        vals = [r(float(v)) for v in (*im.qvec, *im.tvec)]
        lines += [" ".join([str(im.id), *vals, str(im.camera_id), im.name]), ""]
    atomic_write_text(folder / "images.txt", "\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:"]
    for i, (p, c) in enumerate(zip(model.points, model.colors)):
        lines.append(" ".join([str(i + 1), *(r(float(v)) for v in p), *(str(int(v)) for v in c), "0.0"]))
    atomic_write_text(folder / "points3D.txt", "\n".join(lines) + "\n")
