"""Lens distortion (the OpenCV / COLMAP model): forward model, per-point inverse, and photo undistortion.

Why this exists: the renderer (gsplat, our CPU rasterizer) projects through a pinhole camera. A phone or
COLMAP capture comes with lens distortion (COLMAP OPENCV, RADIAL, SIMPLE_RADIAL, FULL_OPENCV; the k1 k2 k3 p1
p2 keys of a nerfstudio transforms.json). Fitting a pinhole model to distorted photos makes the views
disagree by pixels near the image corners: training blurs or duplicates geometry there and test PSNR falls.
So the loader resamples every photo to an ideal pinhole camera first (and the procedural generator uses the
same model, inverted, to render photos "through" a distorting lens for tests).

The model, in normalised camera coordinates (x, y) = (X / Z, Y / Z), r2 = x^2 + y^2 (OpenCV's)::

    g  = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)
    xd = x g + 2 p1 x y + p2 (r2 + 2 x^2)
    yd = y g + p1 (r2 + 2 y^2) + 2 p2 x y

and pixels are u = fx xd + cx, v = fy yd + cy (pixel centres at +0.5, as everywhere in this package).
SIMPLE_RADIAL is k1 only, RADIAL k1 k2, OPENCV k1 k2 p1 p2, FULL_OPENCV all eight (k4..k6 rational).

Inverse (:meth:`Distortion.undistort_points`): Newton's method on the 2x2 system, started at the distorted
point, as OpenCV's ``undistortPoints`` (which iterates a fixed point instead); a point counts as inverted
only when the residual is tiny and the Jacobian is positive (no fold of the lens model).

Border handling (the choice made for training): an undistorted photo with the *same* intrinsics has pixels
that see outside the photo (pincushion lenses) or drops part of the photo (barrel lenses). Pixels outside
the photo would need a mask the trainer does not have, and a fill colour would bias training towards it. So
:func:`undistorted_K` computes new pinhole intrinsics for the same image size that crop to the largest
axis-aligned window fully covered by the photo (OpenCV's ``getOptimalNewCameraMatrix`` with alpha=0): same
pixel aspect (fx'/fy' = fx/fy), the window's centre at the image centre. Every output pixel then samples
the photo (up to the outer half pixel, where the border pixel is repeated); a barrel photo gets a slightly
wider field of view than its nominal K, a pincushion one a slightly narrower one. Resampling is bilinear
(:class:`Remap`), at the photo's own resolution, before any downscale (whose area averaging removes the
bilinear blur).

Keeping the nominal K for barrel lenses (which it also covers) was tried: it keeps the centre at the photo's
resolution but drops the photo's outer band. At downscale 1, k1 = -0.25 at 70 degrees (focal x0.855 with
the window above), training on the widened photos scored 0.2-0.4 dB higher test PSNR on three seeds of the
test in tests/train/test_train_distorted.py, and with a downscale (the usual case for real photos) the
widening costs no resolution at all, so the widest covered window is used in every case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

Array = np.ndarray

#: Newton iterations of :meth:`Distortion.undistort_points` (quadratic convergence: 4-6 suffice for phones).
NEWTON_ITERATIONS = 20
#: A point is inverted when its re-distorted position is this close to the target (normalised units).
INVERSE_TOLERANCE = 1e-9
#: Pixels per output chunk in :class:`Remap` (bounds the temporaries of a large photo to a few MB).
_CHUNK = 1 << 18


class DistortionError(ValueError):
    """The lens model cannot be inverted over the image (too strong, folded, or not finite numbers)."""


@dataclass(frozen=True)
class Distortion:
    """OpenCV distortion coefficients (all zero: no distortion). See the module docstring for the model."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0
    k5: float = 0.0
    k6: float = 0.0

    @classmethod
    def opencv(cls, coeffs) -> Distortion:
        """From OpenCV's coefficient order (k1, k2, p1, p2[, k3[, k4, k5, k6]]): 4, 5 or 8 numbers."""
        c = [float(v) for v in coeffs]
        if len(c) not in (4, 5, 8):
            raise DistortionError(f"expected 4, 5 or 8 distortion coefficients (k1,k2,p1,p2[,k3[,k4,k5,k6]]), "
                                  f"got {len(c)}")
        return cls(*c)

    @classmethod
    def from_colmap(cls, model: str, params) -> Distortion | None:
        """The distortion of a COLMAP camera (None for pinhole models and unsupported ones)."""
        p = [float(v) for v in params]
        if model == "SIMPLE_RADIAL" and len(p) == 4:
            return cls(k1=p[3])
        if model == "RADIAL" and len(p) == 5:
            return cls(k1=p[3], k2=p[4])
        if model == "OPENCV" and len(p) == 8:
            return cls(k1=p[4], k2=p[5], p1=p[6], p2=p[7])
        if model == "FULL_OPENCV" and len(p) == 12:
            return cls(k1=p[4], k2=p[5], p1=p[6], p2=p[7], k3=p[8], k4=p[9], k5=p[10], k6=p[11])
        return None

    def coefficients(self) -> tuple[float, ...]:
        """(k1, k2, p1, p2, k3, k4, k5, k6): OpenCV's full order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    @property
    def is_zero(self) -> bool:
        return not any(self.coefficients())

    @property
    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in self.coefficients())

    def describe(self) -> str:
        """The non-zero coefficients, e.g. ``k1=-0.12 k2=0.03 p1=0.002``."""
        parts = [f"{f.name}={getattr(self, f.name):.4g}" for f in fields(self) if getattr(self, f.name)]
        return " ".join(parts) or "none"

    def to_json(self) -> dict[str, float]:
        """transforms.json keys (nerfstudio's k1 k2 k3 p1 p2; k4..k6 only when used)."""
        d = {"k1": self.k1, "k2": self.k2, "k3": self.k3, "p1": self.p1, "p2": self.p2}
        if self.k4 or self.k5 or self.k6:
            d.update(k4=self.k4, k5=self.k5, k6=self.k6)
        return d

    # -- the model ------------------------------------------------------------------------------------

    def _radial(self, r2: Array) -> tuple[Array, Array]:
        """(g, dg/dr2) of the radial factor."""
        k1, k2, k3, k4, k5, k6 = self.k1, self.k2, self.k3, self.k4, self.k5, self.k6
        num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dnum = k1 + r2 * (2.0 * k2 + r2 * 3.0 * k3)
        if not (k4 or k5 or k6):
            return num, dnum
        den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
        dden = k4 + r2 * (2.0 * k5 + r2 * 3.0 * k6)
        return num / den, (dnum * den - num * dden) / (den * den)

    def distort(self, x: Array, y: Array) -> tuple[Array, Array]:
        """Distorted normalised coordinates of undistorted ones (arrays of any equal shape)."""
        r2 = x * x + y * y
        g, _ = self._radial(r2)
        xy = x * y
        return (x * g + 2.0 * self.p1 * xy + self.p2 * (r2 + 2.0 * x * x),
                y * g + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * xy)

    def _distort_jacobian(self, x: Array, y: Array):
        """(xd, yd, dxd/dx, dxd/dy, dyd/dx, dyd/dy, g)."""
        p1, p2 = self.p1, self.p2
        r2 = x * x + y * y
        g, dg = self._radial(r2)
        xy = x * y
        xd = x * g + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x)
        yd = y * g + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy
        cross = 2.0 * xy * dg + 2.0 * p1 * x + 2.0 * p2 * y
        a = g + 2.0 * x * x * dg + 2.0 * p1 * y + 6.0 * p2 * x
        d = g + 2.0 * y * y * dg + 6.0 * p1 * y + 2.0 * p2 * x
        return xd, yd, a, cross, cross, d, g

    def undistort_points(self, xd: Array, yd: Array, iterations: int = NEWTON_ITERATIONS,
                         tol: float = INVERSE_TOLERANCE) -> tuple[Array, Array, Array]:
        """Undistorted (x, y) of distorted normalised coordinates, and a bool mask of the points inverted.

        A point is inverted when re-distorting it lands within ``tol`` of the target, the Jacobian
        determinant there is positive and the radial factor is positive (the solution is on the lens
        model's unfolded part); other points' values are meaningless.
        """
        xd = np.asarray(xd, dtype=np.float64)
        yd = np.asarray(yd, dtype=np.float64)
        if self.is_zero:
            return xd.copy(), yd.copy(), np.isfinite(xd) & np.isfinite(yd)
        x, y = xd.copy(), yd.copy()
        with np.errstate(all="ignore"):
            for _ in range(iterations):
                fx_, fy_, a, b, c, d, _ = self._distort_jacobian(x, y)
                ex, ey = fx_ - xd, fy_ - yd
                det = a * d - b * c
                dx = (d * ex - b * ey) / det
                dy = (a * ey - c * ex) / det
                # A step can only move a point so far: Newton far from the root must not jump to a fold.
                lim = 0.5 * (1.0 + np.hypot(x, y))
                n = np.hypot(dx, dy)
                s = np.where(n > lim, lim / n, 1.0)
                x = x - s * dx
                y = y - s * dy
            fx_, fy_, a, b, c, d, g = self._distort_jacobian(x, y)
            ok = (np.hypot(fx_ - xd, fy_ - yd) <= tol * (1.0 + np.hypot(xd, yd))) & (a * d - b * c > 0) & (g > 0)
            ok &= np.isfinite(x) & np.isfinite(y)
        return x, y, ok


def camera_normalized(K: Array, u: Array, v: Array) -> tuple[Array, Array]:
    """Normalised coordinates of pixel positions (u, v) under intrinsics K (no skew)."""
    return (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]


def undistorted_K(K: Array, dist: Distortion, width: int, height: int, samples: int = 256) -> Array:
    """[3, 3] pinhole intrinsics for a ``width`` x ``height`` undistorted image fully covered by the photo.

    The photo (``width`` x ``height`` pixels, intrinsics ``K``, distortion ``dist``) is undistorted along
    its border; the largest window of the photo's pixel aspect inside that outline is centred in the new
    image (see the module docstring). Raises :class:`DistortionError` when the lens model cannot be
    inverted over the photo (folds, does not converge, not finite numbers).
    """
    K = np.asarray(K, dtype=np.float64)
    if dist.is_zero:
        return K.copy()
    if not dist.is_finite:
        raise DistortionError(f"lens distortion has non-finite coefficients ({dist.describe()})")
    W, H = float(width), float(height)
    nu, nv = max(8, min(int(width) + 1, samples)), max(8, min(int(height) + 1, samples))
    us, vs = np.linspace(0.0, W, nu), np.linspace(0.0, H, nv)
    edges = {  # pixel-edge outline of the photo: (u, v) of each side
        "left": (np.zeros(nv), vs), "right": (np.full(nv, W), vs),
        "top": (us, np.zeros(nu)), "bottom": (us, np.full(nu, H)),
    }
    und = {}
    with np.errstate(all="ignore"):
        for side, (u, v) in edges.items():
            x, y, ok = dist.undistort_points(*camera_normalized(K, u, v))
            if not ok.all():
                raise DistortionError(f"lens distortion ({dist.describe()}) cannot be inverted at the photo's "
                                      f"{side} edge (the model folds or is too strong for this field of view)")
            und[side] = (x, y)
        left, right = und["left"][0].max(), und["right"][0].min()
        top, bottom = und["top"][1].max(), und["bottom"][1].min()
        if not (np.isfinite([left, right, top, bottom]).all() and left < right and top < bottom):
            raise DistortionError(f"lens distortion ({dist.describe()}) leaves no undistorted area inside the photo")
        fx, fy = K[0, 0], K[1, 1]
        a = max(W / ((right - left) * fx), H / ((bottom - top) * fy))
        K_new = np.array([[a * fx, 0.0, 0.0], [0.0, a * fy, 0.0], [0.0, 0.0, 1.0]])
        K_new[0, 2] = 0.5 * W - K_new[0, 0] * 0.5 * (left + right)
        K_new[1, 2] = 0.5 * H - K_new[1, 1] * 0.5 * (top + bottom)
        # The outline is sampled, so check the new image's own outline (and a coarse interior grid for folds)
        # and zoom in slightly where it still reaches outside the photo.
        for _ in range(60):
            cover, folded = _coverage(K, dist, K_new, width, height)
            if folded:
                raise DistortionError(f"lens distortion ({dist.describe()}) folds inside the photo "
                                      "(its Jacobian changes sign)")
            if cover:
                break
            K_new[:2, :2] *= 1.002
            K_new[0, 2] = 0.5 * W - K_new[0, 0] * 0.5 * (left + right)
            K_new[1, 2] = 0.5 * H - K_new[1, 1] * 0.5 * (top + bottom)
        else:
            raise DistortionError(f"lens distortion ({dist.describe()}): no undistorted window fits in the photo")
    if not (np.isfinite(K_new).all() and K_new[0, 0] > 0 and K_new[1, 1] > 0):
        raise DistortionError(f"lens distortion ({dist.describe()}) gives non-finite undistorted intrinsics")
    return K_new


def _coverage(K: Array, dist: Distortion, K_new: Array, width: int, height: int) -> tuple[bool, bool]:
    """(whether the outline of the new image maps inside the photo, whether the model folds in the window)."""
    W, H = float(width), float(height)
    n = 129
    t = np.linspace(0.0, 1.0, n)
    u = np.concatenate([t * W, t * W, np.zeros(n), np.full(n, W)])
    v = np.concatenate([np.zeros(n), np.full(n, H), t * H, t * H])
    x, y = camera_normalized(K_new, u, v)
    xd, yd = dist.distort(x, y)
    ud, vd = xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]
    tol = 1e-6 * max(W, H)
    cover = bool(np.all((ud >= -tol) & (ud <= W + tol) & (vd >= -tol) & (vd <= H + tol)))
    g = np.linspace(0.0, 1.0, 33)
    gx, gy = camera_normalized(K_new, *(a.ravel() for a in np.meshgrid(g * W, g * H)))
    *_, a, b, c, d, gg = dist._distort_jacobian(gx, gy)
    folded = bool(np.any(~(a * d - b * c > 0)) or np.any(~(gg > 0)))
    return cover, folded


class Remap:
    """Bilinear resampling of photos (``src_w`` x ``src_h``, intrinsics ``K``, distortion ``dist``) to a
    pinhole camera ``K_new`` of ``width`` x ``height`` pixels: for each output pixel centre, the forward
    model gives the photo position to sample. Built once per camera, applied to each of its photos.

    ``valid``: [height, width] bool, output pixels whose sample lies inside the photo (elsewhere the
    nearest border pixel is repeated); ``coverage`` its mean.
    """

    def __init__(self, K: Array, dist: Distortion, K_new: Array, width: int, height: int,
                 src_w: int | None = None, src_h: int | None = None):
        src_w = int(width if src_w is None else src_w)
        src_h = int(height if src_h is None else src_h)
        self.width, self.height, self.src_w, self.src_h = int(width), int(height), src_w, src_h
        K = np.asarray(K, dtype=np.float64)
        K_new = np.asarray(K_new, dtype=np.float64)
        n = self.width * self.height
        self.index = np.empty(n, dtype=np.int64)
        self.wx = np.empty(n, dtype=np.float32)
        self.wy = np.empty(n, dtype=np.float32)
        valid = np.empty(n, dtype=bool)
        uu = np.arange(self.width, dtype=np.float64) + 0.5
        rows_per = max(1, _CHUNK // max(1, self.width))
        with np.errstate(all="ignore"):
            for r0 in range(0, self.height, rows_per):
                r1 = min(self.height, r0 + rows_per)
                u, v = np.meshgrid(uu, np.arange(r0, r1, dtype=np.float64) + 0.5)
                xd, yd = dist.distort(*camera_normalized(K_new, u.ravel(), v.ravel()))
                us, vs = xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]
                sl = slice(r0 * self.width, r1 * self.width)
                valid[sl] = (us >= 0) & (us <= src_w) & (vs >= 0) & (vs <= src_h)
                # array coordinates (pixel centre i at i + 0.5), clamped: the border pixel is repeated
                sx = np.clip(np.nan_to_num(us - 0.5, nan=0.0), 0.0, src_w - 1.0)
                sy = np.clip(np.nan_to_num(vs - 0.5, nan=0.0), 0.0, src_h - 1.0)
                x0 = np.minimum(np.floor(sx), max(src_w - 2, 0))
                y0 = np.minimum(np.floor(sy), max(src_h - 2, 0))
                self.wx[sl] = sx - x0
                self.wy[sl] = sy - y0
                self.index[sl] = y0.astype(np.int64) * src_w + x0.astype(np.int64)
        self.dx = 1 if src_w > 1 else 0
        self.dy = src_w if src_h > 1 else 0
        self.valid = valid.reshape(self.height, self.width)
        self.coverage = float(valid.mean()) if n else 1.0

    def __call__(self, img: Array) -> Array:
        """[src_h, src_w, C] float image -> [height, width, C] float32 (bilinear)."""
        if img.shape[:2] != (self.src_h, self.src_w):
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}, this remap expects {self.src_w}x{self.src_h}")
        c = img.shape[2] if img.ndim == 3 else 1
        flat = np.ascontiguousarray(img, dtype=np.float32).reshape(-1, c)
        out = np.empty((self.width * self.height, c), dtype=np.float32)
        for s in range(0, len(out), _CHUNK):
            sl = slice(s, s + _CHUNK)
            i = self.index[sl]
            wx, wy = self.wx[sl, None], self.wy[sl, None]
            top = flat[i] * (1 - wx) + flat[i + self.dx] * wx
            bot = flat[i + self.dy] * (1 - wx) + flat[i + self.dy + self.dx] * wx
            out[sl] = top * (1 - wy) + bot * wy
        return out.reshape(self.height, self.width, *img.shape[2:])


def undistort_image(img: Array, K: Array, dist: Distortion, K_new: Array | None = None) -> tuple[Array, Array]:
    """(undistorted image, [H, W] validity mask) of one photo ``img`` [H, W, C] with intrinsics ``K``.

    ``K_new``: intrinsics of the output (same size as the photo); None uses :func:`undistorted_K` (all
    pixels valid). With ``K_new = K`` pixels that see outside the photo repeat its border (mask False).
    """
    h, w = img.shape[:2]
    if K_new is None:
        K_new = undistorted_K(K, dist, w, h)
    remap = Remap(K, dist, K_new, w, h)
    return remap(img), remap.valid


def colmap_camera(K: Array, dist: Distortion | None) -> tuple[str, list[float]]:
    """(COLMAP model name, parameters) describing pinhole intrinsics ``K`` with ``dist``, simplest model first.

    PINHOLE without distortion; SIMPLE_RADIAL (k1) or RADIAL (k1 k2) for purely radial distortion with
    square pixels; OPENCV for k1 k2 p1 p2; FULL_OPENCV when k3..k6 are used.
    """
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if dist is None or dist.is_zero:
        return "PINHOLE", [fx, fy, cx, cy]
    d = dist
    higher = d.k3 or d.k4 or d.k5 or d.k6
    if not higher and not d.p1 and not d.p2 and fx == fy:
        return ("SIMPLE_RADIAL", [fx, cx, cy, d.k1]) if not d.k2 else ("RADIAL", [fx, cx, cy, d.k1, d.k2])
    if not higher:
        return "OPENCV", [fx, fy, cx, cy, d.k1, d.k2, d.p1, d.p2]
    return "FULL_OPENCV", [fx, fy, cx, cy, d.k1, d.k2, d.p1, d.p2, d.k3, d.k4, d.k5, d.k6]


__all__ = ["Distortion", "DistortionError", "Remap", "undistorted_K", "undistort_image", "colmap_camera",
           "camera_normalized"]
