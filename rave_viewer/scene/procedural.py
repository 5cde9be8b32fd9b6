"""Seeded analytic scenes ray-traced in numpy into a NeRF-style dataset: a real fitting problem with no Gaussians.

A scene is a handful of textured primitives (spheres, yawed boxes, capsules for poles, bars and a wire ring,
an optional square ground) lit by one directional light with hard shadows plus a fixed ambient term, in front
of a dim environment whose colour depends on the ray direction. Cameras sit on a hemisphere around the scene
centre (z-up world) and look at it. Everything (layout, textures, light, camera azimuth, pixel jitter, point
samples) follows from the seed, so the same seed gives byte-identical files.

Output layout of :func:`generate_scene`::

    images/r_000.png ...        RGB 8-bit, one per view (test views: index % 8 == 0)
    transforms_train.json       NeRF/Blender convention: c2w "transform_matrix" in OpenGL camera axes
    transforms_test.json        (x right, y up, z backward), camera_angle_x, fl_x fl_y cx cy w h
                                (+ camera_model "OPENCV", k1 k2 k3 p1 p2 with a distorting lens)
    points3d.ply                coloured points on surfaces seen by the training views (x y z nx ny nz rgb);
                                absent with n_points=0 (a capture without a point cloud)
    sparse/0/*.bin              only with colmap=True: the same cameras (PINHOLE, SIMPLE_RADIAL, RADIAL,
                                OPENCV or FULL_OPENCV), poses and points as a COLMAP model
    scene.json                  the recipe (preset, seed, sizes, lens, noise, generator version, objects)

Real captures are harder than clean renders: a lens distorts (OpenCV model, see
:mod:`~rave_viewer.scene.undistort`), photos are noisy, views are few and there is no point cloud.
:data:`HARD_CAPTURE` renders such a dataset, so what training and building do on phone captures can be
studied (and tested) on data whose ground truth is known: the same seed without the lens gives the
undistorted "twin" of every photo. With a lens, each jittered sample is a *distorted* image position; its
ray is that of the undistorted position (the model inverted per sample by Newton's method, as OpenCV's
``undistortPoints``), so each pixel is exactly what that lens would capture.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import RaveError
from .cameras import look_at
from .undistort import Distortion, colmap_camera

GENERATOR_VERSION = 2  # 2: lens distortion, photo noise, optional COLMAP model, no points3d.ply for 0 points
PRESETS = ("objects", "ground", "garden")
#: A "hard capture" like a phone's (a lens with barrel distortion, few views, no point cloud, photo noise):
#: ``generate_scene(out, **HARD_CAPTURE)``, ``rave generate --capture hard``. Explicit arguments override it.
HARD_CAPTURE = {"distortion": (-0.12, 0.03, 0.002, -0.0015), "noise": 0.02, "n_views": 32, "n_points": 0,
                "fov_deg": 60.0}
CAPTURES = {"clean": {}, "hard": HARD_CAPTURE}
TEMP_PREFIX = ".rave-"  # temp folders beside the output (short: the output's own name may be 250 characters)
TEST_EVERY = 8
EPS = 1e-6  # minimum ray distance
SHADOW_OFFSET = 1e-4  # shadow-ray origins are pushed this far along the normal
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips camera y and z axes (same matrix both ways)

Array = np.ndarray


# ----------------------------------------------------------------------------------------------------------
# Small vector helpers (rows are vectors)


def _dot(a: Array, b: Array) -> Array:
    """Row-wise dot product of [M, 3] arrays -> [M]."""
    return np.einsum("ij,ij->i", a, b)


def _mv(a: Array, v: Array) -> Array:
    """[M, 3] @ [3] -> [M] without BLAS (whose idle threads spin on small products)."""
    return np.einsum("ij,j->i", a, v)


def _mm(a: Array, m: Array) -> Array:
    """[M, 3] @ [3, 3] -> [M, 3] without BLAS."""
    return np.einsum("ij,jk->ik", a, m)


def _normalize(v: Array) -> Array:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rot_z(angle: float) -> Array:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _fract(x: Array) -> Array:
    return x - np.floor(x)


# ----------------------------------------------------------------------------------------------------------
# Textures


class ValueNoise:
    """Periodic 3D value noise with smooth trilinear interpolation and an fBm sum, from a seeded table."""

    def __init__(self, rng: np.random.Generator, size: int = 64):
        self.size = size
        self.table = rng.random(size**3)
        self.shifts = rng.uniform(0.0, size, (8, 3))

    def value(self, q: Array) -> Array:
        """[M, 3] coordinates -> [M] values in [0, 1]."""
        s = self.size
        i = np.floor(q)
        f = q - i
        u = f * f * (3.0 - 2.0 * f)
        i = i.astype(np.int64) % s
        j = (i + 1) % s
        x0, x1, y0, y1, z0, z1 = i[:, 0] * (s * s), j[:, 0] * (s * s), i[:, 1] * s, j[:, 1] * s, i[:, 2], j[:, 2]
        t = self.table
        ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]

        def lerp(a, b, w):
            return a + (b - a) * w

        def edge(y, z):
            return lerp(t[x0 + y + z], t[x1 + y + z], ux)

        return lerp(lerp(edge(y0, z0), edge(y1, z0), uy), lerp(edge(y0, z1), edge(y1, z1), uy), uz)

    def fbm(self, q: Array, octaves: int = 4) -> Array:
        """Fractal sum of ``octaves`` noise layers (lacunarity 2, gain 0.5) -> [M] in [0, 1]."""
        total, amp, norm = 0.0, 1.0, 0.0
        for o in range(octaves):
            total = total + amp * self.value(q * (2.0**o) + self.shifts[o])
            norm += amp
            amp *= 0.5
        return total / norm


@dataclass
class Texture:
    """A solid (3D) procedural albedo evaluated at object-local coordinates.

    kind: "solid" | "checker" | "stripes" | "marble" | "noise" | "tiles" (checker tiles with noise and
    thin grout lines, for grounds) | "bricks" (staggered courses with mortar and a colour per brick, on the
    local x-z / y-z faces: walls) | "lawn" (multi-scale noise with fine grain: grass, foliage).
    ``freq`` is in cycles per world unit.
    """

    kind: str
    c1: tuple[float, float, float]
    c2: tuple[float, float, float]
    freq: float = 4.0
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def albedo(self, q: Array, noise: ValueNoise) -> Array:
        """[M, 3] local coordinates -> [M, 3] albedo in [0, 1]."""
        c1, c2 = np.asarray(self.c1), np.asarray(self.c2)
        q = q + np.asarray(self.offset)
        f = self.freq
        if self.kind == "solid":
            w = np.zeros(len(q))
        elif self.kind == "checker":
            w = np.floor(q * f).sum(axis=1) % 2.0
        elif self.kind == "stripes":
            w = (_fract(_mv(q, np.asarray(self.axis)) * f) < 0.5).astype(np.float64)
        elif self.kind == "marble":
            w = 0.5 + 0.5 * np.sin(2.0 * np.pi * (_mv(q, np.asarray(self.axis)) * f) + 7.0 * noise.fbm(q * 2.5))
        elif self.kind == "noise":
            w = np.clip((noise.fbm(q * f, octaves=5) - 0.3) / 0.4, 0.0, 1.0)
        elif self.kind == "tiles":
            w = np.floor(q[:, :2] * f).sum(axis=1) % 2.0
            col = c1 + (c2 - c1) * w[:, None]
            col = col * (0.7 + 0.6 * noise.fbm(q * 3.0, octaves=3))[:, None]
            g = _fract(q[:, :2] * (2.0 * f))
            grout = ((g < 0.1).any(axis=1))[:, None]
            return np.clip(np.where(grout, col * 0.3, col), 0.0, 1.0)
        elif self.kind == "bricks":
            return self._bricks(q, noise, c1, c2)
        elif self.kind == "lawn":
            w = noise.fbm(q * f, octaves=5)
            grain = noise.value(q * (8.0 * f) + 17.0)
            col = c1 + (c2 - c1) * np.clip((w - 0.25) / 0.5, 0.0, 1.0)[:, None]
            return np.clip(col * (0.75 + 0.5 * grain)[:, None], 0.0, 1.0)
        else:
            raise ValueError(f"unknown texture kind {self.kind!r}")
        return c1 + (c2 - c1) * w[:, None]

    def _bricks(self, q: Array, noise: ValueNoise, c1: Array, c2: Array) -> Array:
        """Bricks 2/freq long and 1/freq high along local x+y (one wall face each), half-offset every course."""
        f = self.freq
        u, v = (q[:, 0] + q[:, 1]) * (0.5 * f), q[:, 2] * f
        row = np.floor(v)
        uu = u + 0.5 * row
        col_i = np.floor(uu)
        ids = np.stack([col_i * 1.37, row * 2.11, np.zeros_like(row)], axis=1)
        w = noise.value(ids)  # one value per brick
        col = c1 + (c2 - c1) * w[:, None]
        col = col * (0.8 + 0.4 * noise.fbm(q * (6.0 * f), octaves=2))[:, None]
        mortar = (_fract(v) < 0.1) | (_fract(uu) < 0.05)
        return np.clip(np.where(mortar[:, None], np.array([0.72, 0.7, 0.66]), col), 0.0, 1.0)

    def describe(self) -> dict:
        return {"kind": self.kind, "c1": list(self.c1), "c2": list(self.c2), "freq": self.freq}


# ----------------------------------------------------------------------------------------------------------
# Primitives: intersect(o, d) -> t [M] (inf on a miss), normal(p) -> [M, 3], local(p) -> texture coordinates


@dataclass
class _Primitive:
    texture: Texture
    bound_center: Array = field(init=False)
    bound_radius: float = field(init=False)  # inf: no bounding-sphere culling

    def candidates(self, o: Array, d: Array, t_best: Array) -> Array:
        """Indices of rays whose bounding sphere is hit in front of the nearest hit so far."""
        if not math.isfinite(self.bound_radius):
            return np.arange(len(d))
        if o.strides[0] == 0:  # one origin for all rays (primary rays)
            oc = o[0] - self.bound_center
            b = _mv(d, oc)
            disc = b * b - (float(oc @ oc) - self.bound_radius**2)
        else:
            oc = o - self.bound_center
            b = _mv(oc, d[0]) if d.strides[0] == 0 else _dot(oc, d)  # one direction: shadow rays
            disc = b * b - (_dot(oc, oc) - self.bound_radius**2)
        ok = disc >= 0.0
        sq = np.sqrt(np.where(ok, disc, 0.0))
        ok &= (-b + sq > EPS) & (-b - sq < t_best)
        return np.flatnonzero(ok)

    def local(self, p: Array) -> Array:
        return p - self.bound_center


@dataclass
class Sphere(_Primitive):
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 1.0

    def __post_init__(self):
        self.bound_center, self.bound_radius = np.asarray(self.center, float), float(self.radius)

    def intersect(self, o: Array, d: Array) -> Array:
        oc = o - self.bound_center
        b = _dot(oc, d)
        h = b * b - (_dot(oc, oc) - self.radius**2)
        sq = np.sqrt(np.maximum(h, 0.0))
        t = np.where(-b - sq > EPS, -b - sq, -b + sq)
        return np.where((h >= 0.0) & (t > EPS), t, np.inf)

    def normal(self, p: Array) -> Array:
        return (p - self.bound_center) / self.radius

    def describe(self) -> dict:
        return {"type": "sphere", "center": list(self.center), "radius": self.radius,
                "texture": self.texture.describe()}


@dataclass
class Box(_Primitive):
    """A box with half-sizes ``half`` rotated by ``yaw`` radians about the world z axis."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half: tuple[float, float, float] = (0.5, 0.5, 0.5)
    yaw: float = 0.0

    def __post_init__(self):
        self.bound_center = np.asarray(self.center, float)
        self.bound_radius = float(np.linalg.norm(self.half))
        self._r = _rot_z(self.yaw)  # local -> world
        self._h = np.asarray(self.half, float)

    def intersect(self, o: Array, d: Array) -> Array:
        ol = _mm(o - self.bound_center, self._r)
        dl = _mm(d, self._r)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t1 = (-self._h - ol) * inv
            t2 = (self._h - ol) * inv
        tmin = np.fmax.reduce(np.fmin(t1, t2), axis=1)
        tmax = np.fmin.reduce(np.fmax(t1, t2), axis=1)
        t = np.where(tmin > EPS, tmin, tmax)
        return np.where((tmax >= tmin) & (t > EPS), t, np.inf)

    def normal(self, p: Array) -> Array:
        q = self.local(p) / self._h
        ax = np.abs(q).argmax(axis=1)
        nl = np.zeros_like(q)
        rows = np.arange(len(q))
        nl[rows, ax] = np.sign(q[rows, ax])
        return _mm(nl, self._r.T)

    def local(self, p: Array) -> Array:
        return _mm(p - self.bound_center, self._r)

    def describe(self) -> dict:
        return {"type": "box", "center": list(self.center), "half": list(self.half), "yaw": self.yaw,
                "texture": self.texture.describe()}


@dataclass
class Ground(_Primitive):
    """The square ``|x|, |y| <= half`` of the plane z = 0, seen from above."""

    half: float = 3.0

    def __post_init__(self):
        self.bound_center, self.bound_radius = np.zeros(3), math.inf

    def intersect(self, o: Array, d: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -o[:, 2] / d[:, 2]
        p = o[:, :2] + t[:, None] * d[:, :2]
        ok = (d[:, 2] < 0.0) & (t > EPS) & (np.abs(p) <= self.half).all(axis=1)
        return np.where(ok, t, np.inf)

    def normal(self, p: Array) -> Array:
        n = np.zeros_like(p)
        n[:, 2] = 1.0
        return n

    def describe(self) -> dict:
        return {"type": "ground", "half": self.half, "texture": self.texture.describe()}


@dataclass
class Capsules(_Primitive):
    """A group of capsules (segments a-b swept by ``radius``): poles, bars, or a polyline wire ring."""

    segments: list = field(default_factory=list)  # [(a, b), ...] as 3-tuples
    radius: float = 0.02
    name: str = "capsules"

    def __post_init__(self):
        seg = np.asarray(self.segments, float)  # [S, 2, 3]
        self._a, self._b = seg[:, 0], seg[:, 1]
        self._ba = self._b - self._a
        self._baba = np.einsum("sk,sk->s", self._ba, self._ba)
        self._mid = 0.5 * (self._a + self._b)
        self._rad2 = (0.5 * np.sqrt(self._baba) + self.radius) ** 2
        pts = seg.reshape(-1, 3)
        self.bound_center = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
        self.bound_radius = float(np.linalg.norm(pts - self.bound_center, axis=1).max() + self.radius)

    def intersect(self, o: Array, d: Array) -> Array:
        # Cull (ray, segment) pairs with each segment's bounding sphere, then intersect the pairs' capsules
        # (after Inigo Quilez) and keep the nearest hit per ray.
        oc = o[:, None, :] - self._mid  # [M, S, 3]
        bb = np.einsum("msk,mk->ms", oc, d)
        ri, si = np.nonzero(bb * bb - np.einsum("msk,msk->ms", oc, oc) + self._rad2 >= 0.0)
        t_best = np.full(len(d), np.inf)
        if ri.size == 0:
            return t_best
        r2 = self.radius**2
        os_, ds, a, ba, baba = o[ri], d[ri], self._a[si], self._ba[si], self._baba[si]
        oa = os_ - a
        bard = _dot(ds, ba)
        baoa = _dot(oa, ba)
        A = baba - bard * bard
        B = baba * _dot(ds, oa) - baoa * bard
        C = baba * _dot(oa, oa) - baoa * baoa - r2 * baba
        h = B * B - A * C
        hit = h >= 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t_body = (-B - np.sqrt(np.where(hit, h, 0.0))) / A
        y = baoa + t_body * bard
        body = hit & (y > 0.0) & (y < baba) & (t_body > EPS)
        oc = np.where((y <= 0.0)[:, None], oa, os_ - self._b[si])
        bc = _dot(ds, oc)
        hc = bc * bc - (_dot(oc, oc) - r2)
        t_cap = -bc - np.sqrt(np.maximum(hc, 0.0))
        cap = hit & ~body & (hc > 0.0) & (t_cap > EPS)
        t = np.where(body, t_body, np.where(cap, t_cap, np.inf))
        np.minimum.at(t_best, ri, t)
        return t_best

    def normal(self, p: Array) -> Array:
        best = np.full(len(p), np.inf)
        n = np.zeros_like(p)
        for a, b in zip(self._a, self._b):
            ba = b - a
            pa = p - a
            hh = np.clip(_mv(pa, ba) / float(ba @ ba), 0.0, 1.0)
            q = pa - hh[:, None] * ba
            dist = np.linalg.norm(q, axis=1)
            closer = dist < best
            best = np.where(closer, dist, best)
            n[closer] = q[closer] / np.maximum(dist[closer, None], 1e-12)
        return n

    def describe(self) -> dict:
        return {"type": self.name, "radius": self.radius, "n_segments": len(self._a),
                "bound_center": self.bound_center.tolist(), "texture": self.texture.describe()}


# ----------------------------------------------------------------------------------------------------------
# Scene


@dataclass
class ProceduralScene:
    """Primitives, light and environment of one seeded scene, plus its default camera rig."""

    preset: str
    seed: int
    primitives: list
    light_dir: Array  # [3] unit vector towards the light
    noise: ValueNoise
    center: Array  # [3] point the cameras look at
    camera_radius: float
    elevation_deg: tuple[float, float]
    ambient: float = 0.25
    env_colors: Array = field(default_factory=lambda: np.array([[0.05, 0.07, 0.14], [0.22, 0.25, 0.32],
                                                                  [0.07, 0.06, 0.05]]))  # zenith, horizon, nadir
    env_phase: float = 0.0
    clouds: float = 0.0  # cloud cover of the upper sky in [0, 1] (0: the plain gradient)

    def environment(self, d: Array) -> Array:
        """Background colour by ray direction: [M, 3] unit directions -> [M, 3]."""
        zen, hor, nad = self.env_colors
        z = d[:, 2:3]
        sky = hor + (zen - hor) * np.clip(z, 0.0, 1.0) ** 0.7
        low = hor * 0.7 + (nad - hor * 0.7) * np.clip(-z, 0.0, 1.0) ** 0.5
        col = np.where(z >= 0.0, sky, low)
        phi = np.arctan2(d[:, 1], d[:, 0])
        col = col * (1.0 + 0.12 * np.sin(2.0 * phi + self.env_phase))[:, None]
        if self.clouds > 0.0:
            up = np.clip(z, 0.0, 1.0)
            q = d[:, :2] / (up + 0.15) * 1.5  # a cloud layer projected onto the sky dome
            c = np.clip((self.noise.fbm(np.c_[q, np.full(len(q), 3.7)], octaves=5) - (1.0 - self.clouds) * 0.6)
                        * 3.0, 0.0, 1.0) * np.clip(z * 6.0, 0.0, 1.0)[:, 0]
            col = col + (np.array([0.78, 0.78, 0.8]) - col) * c[:, None]
        glow = np.clip(_mv(d, self.light_dir), 0.0, 1.0) ** 12
        return col + 0.2 * glow[:, None] * np.array([1.0, 0.9, 0.7])

    def trace(self, o: Array, d: Array, any_hit: bool = False) -> tuple[Array, Array]:
        """Nearest hit of rays o + t d ([M, 3] each): (t [M], primitive index [M], -1 on a miss).

        With ``any_hit`` only whether something is hit matters (shadow rays): index >= 0 for occluded rays.
        """
        m = len(d)
        t_best = np.full(m, np.inf)
        k_best = np.full(m, -1, dtype=np.int64)
        for k, prim in enumerate(self.primitives):
            cand = prim.candidates(o, d, t_best)
            if any_hit:
                cand = cand[k_best[cand] < 0]
            if cand.size == 0:
                continue
            t = prim.intersect(o[cand], d[cand])
            better = t < t_best[cand]
            idx = cand[better]
            t_best[idx] = t[better]
            k_best[idx] = k
        return t_best, k_best

    def shade(self, o: Array, d: Array) -> dict[str, Array]:
        """Colour of rays ([M, 3] origins, unit directions): dict with "rgb" [M, 3], "hit" [M] bool,
        "points" [M, 3], "normals" [M, 3] (valid where hit)."""
        t, k = self.trace(o, d)
        hit = k >= 0
        rgb = np.empty_like(d)
        rgb[~hit] = self.environment(d[~hit])
        hi = np.flatnonzero(hit)
        kh, dh = k[hi], d[hi]
        ph = o[hi] + t[hi, None] * dh
        nh = np.empty_like(ph)
        alb = np.empty_like(ph)
        for j, prim in enumerate(self.primitives):
            sel = np.flatnonzero(kh == j)
            if sel.size:
                pj = ph[sel]
                nh[sel] = prim.normal(pj)
                alb[sel] = prim.texture.albedo(prim.local(pj), self.noise)
        nh *= np.where(_dot(nh, dh) > 0.0, -1.0, 1.0)[:, None]  # face the viewer
        ndl = np.clip(_mv(nh, self.light_dir), 0.0, None)
        lit = np.flatnonzero(ndl > 0.0)
        if lit.size:
            so = ph[lit] + SHADOW_OFFSET * nh[lit]
            _, occ = self.trace(so, np.broadcast_to(self.light_dir, so.shape), any_hit=True)
            ndl[lit[occ >= 0]] = 0.0
        rgb[hi] = alb * (self.ambient + (1.0 - self.ambient) * ndl)[:, None]
        p = np.zeros_like(d)
        n = np.zeros_like(d)
        p[hi], n[hi] = ph, nh
        return {"rgb": np.clip(rgb, 0.0, 1.0), "hit": hit, "points": p, "normals": n}

    def render(self, viewmat: Array, K: Array, width: int, height: int, samples_per_pixel: int = 4,
               rng: np.random.Generator | None = None,
               distortion: Distortion | None = None) -> tuple[Array, dict[str, Array]]:
        """Render one view with ``samples_per_pixel`` jittered rays per pixel (stratified when a square).

        viewmat: [4, 4] world-to-camera (OpenCV axes); K: [3, 3] intrinsics (pixel centres at +0.5).
        distortion: the lens (OpenCV model); each sample position is a *distorted* image point, and its ray
        is that of the undistorted point (the model inverted per sample by Newton's method), so the image
        is what that lens captures. RaveError when the model cannot be inverted over the image.
        Returns (image [H, W, 3] float64 in [0, 1], per-ray dict as in :meth:`shade` with leading
        shape [H, W, S]; sample 0 of each pixel is a plain point on the surface seen through the pixel).
        """
        s = int(samples_per_pixel)
        if s == 1:
            jx = jy = np.full((height, width, 1), 0.5)
        else:
            rng = rng if rng is not None else np.random.default_rng(0)
            g = int(round(math.sqrt(s)))
            if g * g == s:
                cell = np.arange(s)
                jx = (cell % g + rng.random((height, width, s))) / g
                jy = (cell // g + rng.random((height, width, s))) / g
            else:
                jx, jy = rng.random((height, width, s)), rng.random((height, width, s))
        u = np.arange(width)[None, :, None] + jx
        v = np.arange(height)[:, None, None] + jy
        x = np.broadcast_to((u - K[0, 2]) / K[0, 0], (height, width, s))
        y = np.broadcast_to((v - K[1, 2]) / K[1, 1], (height, width, s))
        if distortion is not None and not distortion.is_zero:
            x, y, ok = distortion.undistort_points(x, y)
            if not ok.all():
                raise RaveError(f"lens distortion ({distortion.describe()}) cannot be inverted over a "
                                f"{width}x{height} image at this field of view (the model folds or is too strong)")
        dc = np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3)
        c2w = np.linalg.inv(viewmat)
        d = _normalize(_mm(dc, c2w[:3, :3].T))
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        out = self.shade(o, d)
        out = {key: val.reshape(height, width, s, *val.shape[1:]) for key, val in out.items()}
        return out["rgb"].mean(axis=2), out

    def describe(self) -> list[dict]:
        return [p.describe() for p in self.primitives]


# ----------------------------------------------------------------------------------------------------------
# Presets


def _color(rng: np.random.Generator, sat=(0.35, 0.85), val=(0.45, 0.92)) -> tuple[float, float, float]:
    """A random colour from HSV ranges."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return tuple(float(c) for c in [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _texture(rng: np.random.Generator, kind: str, freq: tuple[float, float]) -> Texture:
    axis = _normalize(rng.normal(size=3))
    c1 = _color(rng)
    c2 = _color(rng, sat=(0.1, 0.6), val=(0.15, 0.5)) if rng.random() < 0.5 else _color(rng, val=(0.6, 0.95))
    return Texture(kind, c1, c2, float(rng.uniform(*freq)), tuple(float(a) for a in axis),
                   tuple(float(a) for a in rng.uniform(0.0, 1.0, 3)))


def _place(rng: np.random.Generator, placed: list, footprint: float, region: float) -> tuple[float, float]:
    """Rejection-sample an (x, y) in a disk of radius ``region`` whose footprint overlaps nothing placed."""
    for _ in range(500):
        r, a = region * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        x, y = r * math.cos(a), r * math.sin(a)
        if all(math.hypot(x - px, y - py) > footprint + pr + 0.05 for px, py, pr in placed):
            placed.append((x, y, footprint))
            return x, y
    placed.append((x, y, footprint))  # crowded: accept an overlap rather than loop forever
    return x, y


_KINDS = ("checker", "stripes", "marble", "noise")
_FREQ = {"checker": (5.0, 9.0), "stripes": (6.0, 12.0), "marble": (1.5, 3.0), "noise": (3.0, 6.0)}


def _solids(rng: np.random.Generator, placed: list, n_spheres: int, n_boxes: int, region: float,
            float_prob: float) -> list:
    kinds = list(rng.permutation(_KINDS))
    prims = []
    for i in range(n_spheres + n_boxes):
        kind = str(kinds[i % len(kinds)])
        tex = _texture(rng, kind, _FREQ[kind])
        if i < n_spheres:
            r = float(rng.uniform(0.18, 0.38))
            x, y = _place(rng, placed, r, region)
            z = r + (float(rng.uniform(0.1, 0.45)) if rng.random() < float_prob else 0.0)
            prims.append(Sphere(tex, center=(x, y, z), radius=r))
        else:
            half = tuple(float(h) for h in rng.uniform(0.12, 0.3, 3))
            x, y = _place(rng, placed, math.hypot(half[0], half[1]), region)
            prims.append(Box(tex, center=(x, y, half[2]), half=half, yaw=float(rng.uniform(0, math.pi))))
    return prims


def _preset_objects(rng: np.random.Generator) -> dict:
    placed: list = []
    prims = _solids(rng, placed, int(rng.integers(3, 5)), int(rng.integers(2, 4)), region=1.0, float_prob=0.3)
    return {"primitives": prims, "center": np.array([0.0, 0.0, 0.3]), "camera_radius": 3.2,
            "elevation_deg": (5.0, 70.0)}


def _preset_ground(rng: np.random.Generator) -> dict:
    placed: list = []
    ground = Ground(Texture("tiles", _color(rng, val=(0.6, 0.9)), _color(rng, sat=(0.1, 0.5), val=(0.25, 0.5)),
                            2.0, offset=tuple(float(a) for a in rng.uniform(0, 1, 3))), half=2.6)
    prims: list = [ground]
    prims += _solids(rng, placed, int(rng.integers(1, 3)), int(rng.integers(1, 3)), region=1.5, float_prob=0.0)
    # Wire ring standing on its rim (a polyline of thin capsules).
    big, wire = float(rng.uniform(0.35, 0.55)), float(rng.uniform(0.012, 0.02))
    x, y = _place(rng, placed, big, 1.6)
    yaw = float(rng.uniform(0, math.pi))
    ax_u = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    c = np.array([x, y, big + wire + 0.03])
    ring = [c + big * (math.cos(a) * ax_u + math.sin(a) * np.array([0.0, 0.0, 1.0]))
            for a in np.linspace(0, 2 * math.pi, 33)]
    segs = [(tuple(ring[i]), tuple(ring[i + 1])) for i in range(32)]
    prims.append(Capsules(_texture(rng, "stripes", (8.0, 14.0)), segments=segs, radius=wire, name="wire_ring"))
    # Thin poles with candy stripes along their length.
    for _ in range(int(rng.integers(3, 6))):
        x, y = _place(rng, placed, 0.08, 1.8)
        h = float(rng.uniform(0.7, 1.4))
        tex = _texture(rng, "stripes", (6.0, 12.0))
        tex.axis = (0.0, 0.0, 1.0)
        prims.append(Capsules(tex, segments=[((x, y, 0.0), (x, y, h))], radius=float(rng.uniform(0.018, 0.035)),
                              name="pole"))
    # A fence: two posts and three thin bars.
    length = float(rng.uniform(0.8, 1.2))
    x, y = _place(rng, placed, 0.5 * length, 1.6)
    yaw = float(rng.uniform(0, math.pi))
    u = 0.5 * length * np.array([math.cos(yaw), math.sin(yaw), 0.0])
    p1, p2 = np.array([x, y, 0.0]) - u, np.array([x, y, 0.0]) + u
    top = float(rng.uniform(0.45, 0.7))
    segs = [(tuple(p1), tuple(p1 + [0, 0, top])), (tuple(p2), tuple(p2 + [0, 0, top]))]
    segs += [(tuple(p1 + [0, 0, f * top]), tuple(p2 + [0, 0, f * top])) for f in (0.35, 0.65, 0.95)]
    prims.append(Capsules(_texture(rng, "checker", (10.0, 16.0)), segments=segs, radius=0.015, name="fence"))
    return {"primitives": prims, "center": np.array([0.0, 0.0, 0.25]), "camera_radius": 4.5,
            "elevation_deg": (15.0, 65.0)}


def _preset_garden(rng: np.random.Generator) -> dict:
    """A walled courtyard: detail everywhere a camera looks (lawn, a tiled plaza, brick walls, trees, clouds)."""
    wall, height = 6.0, float(rng.uniform(1.6, 2.2))
    lawn = Texture("lawn", _color(rng, sat=(0.5, 0.7), val=(0.45, 0.6)), _color(rng, sat=(0.4, 0.7), val=(0.2, 0.35)),
                   float(rng.uniform(1.5, 2.5)))
    lawn.c1, lawn.c2 = (0.32, 0.55, 0.18), (0.12, 0.3, 0.08)  # green whatever the draw
    prims: list = [Ground(lawn, half=wall + 0.3)]
    plaza = Texture("tiles", _color(rng, sat=(0.1, 0.3), val=(0.7, 0.9)), _color(rng, sat=(0.3, 0.6), val=(0.35, 0.55)),
                    float(rng.uniform(2.5, 3.5)), offset=tuple(float(a) for a in rng.uniform(0, 1, 3)))
    prims.append(Box(plaza, center=(0.0, 0.0, 0.01), half=(2.1, 2.1, 0.01), yaw=float(rng.uniform(0, 0.3))))
    brick_c = _color(rng, sat=(0.45, 0.7), val=(0.45, 0.65)), _color(rng, sat=(0.3, 0.6), val=(0.25, 0.4))
    for k in range(4):  # four walls (local x along the wall), bricks on both faces
        a = k * math.pi / 2
        cx, cy = wall * math.cos(a), wall * math.sin(a)
        prims.append(Box(Texture("bricks", brick_c[0], brick_c[1], 7.0, offset=(0.0, 0.0, float(k) * 0.37)),
                         center=(cx, cy, 0.5 * height), half=(wall + 0.15, 0.15, 0.5 * height), yaw=a + math.pi / 2))
    placed: list = []
    # Solids on the plaza and around it: twice the objects preset's texture frequencies.
    kinds = list(rng.permutation(_KINDS))
    for i in range(int(rng.integers(9, 12))):
        kind = str(kinds[i % len(kinds)])
        lo, hi = _FREQ[kind]
        tex = _texture(rng, kind, (2.0 * lo, 2.0 * hi))
        if i % 2 == 0:
            r = float(rng.uniform(0.15, 0.35))
            x, y = _place(rng, placed, r, 2.6)
            z = 0.02 + r + (float(rng.uniform(0.1, 0.4)) if rng.random() < 0.25 else 0.0)
            prims.append(Sphere(tex, center=(x, y, z), radius=r))
        else:
            half = tuple(float(h) for h in rng.uniform(0.1, 0.3, 3))
            x, y = _place(rng, placed, math.hypot(half[0], half[1]), 2.6)
            prims.append(Box(tex, center=(x, y, 0.02 + half[2]), half=half, yaw=float(rng.uniform(0, math.pi))))
    # Trees between the plaza and the walls: a striped trunk under a leafy crown.
    for _ in range(int(rng.integers(5, 8))):
        r = float(rng.uniform(0.4, 0.65))  # outside the camera ring (radius 3.8), inside the walls
        for _try in range(200):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(4.7, wall - 0.8)
            x, y = d * math.cos(a), d * math.sin(a)
            if all(math.hypot(x - px, y - py) > r + pr for px, py, pr in placed):
                break
        placed.append((x, y, r))
        trunk_h = float(rng.uniform(0.6, 1.1))
        bark = Texture("stripes", (0.42, 0.3, 0.2), (0.25, 0.17, 0.1), float(rng.uniform(14.0, 22.0)))
        prims.append(Capsules(bark, segments=[((x, y, 0.0), (x, y, trunk_h))], radius=float(rng.uniform(0.05, 0.09)),
                              name="trunk"))
        leaves = Texture("lawn", _color(rng, sat=(0.5, 0.8), val=(0.45, 0.7)), (0.1, 0.25, 0.06),
                         float(rng.uniform(4.0, 7.0)))
        prims.append(Sphere(leaves, center=(x, y, trunk_h + 0.8 * r), radius=r))
    # Lamp posts and a fence of thin bars, as the ground preset's.
    for _ in range(int(rng.integers(3, 5))):
        x, y = _place(rng, placed, 0.08, 2.9)
        tex = _texture(rng, "stripes", (10.0, 16.0))
        tex.axis = (0.0, 0.0, 1.0)
        prims.append(Capsules(tex, segments=[((x, y, 0.0), (x, y, float(rng.uniform(0.8, 1.4))))],
                              radius=float(rng.uniform(0.02, 0.035)), name="pole"))
    length = float(rng.uniform(1.2, 1.8))
    x, y = _place(rng, placed, 0.5 * length, 2.8)
    yaw = float(rng.uniform(0, math.pi))
    u = 0.5 * length * np.array([math.cos(yaw), math.sin(yaw), 0.0])
    p1, p2 = np.array([x, y, 0.0]) - u, np.array([x, y, 0.0]) + u
    top = float(rng.uniform(0.45, 0.65))
    segs = [(tuple(p1 + t * 2 * u), tuple(p1 + t * 2 * u + [0, 0, top])) for t in np.linspace(0, 1, 7)]
    segs += [(tuple(p1 + [0, 0, f * top]), tuple(p2 + [0, 0, f * top])) for f in (0.4, 0.9)]
    prims.append(Capsules(_texture(rng, "checker", (14.0, 20.0)), segments=segs, radius=0.014, name="fence"))
    return {"primitives": prims, "center": np.array([0.0, 0.0, 0.3]), "camera_radius": 3.8,
            "elevation_deg": (8.0, 50.0), "clouds": 0.6, "ambient": 0.35,
            "env_colors": [[0.25, 0.42, 0.75], [0.62, 0.72, 0.85], [0.2, 0.2, 0.18]]}  # a day sky


_PRESET_FUNCS = {"objects": _preset_objects, "ground": _preset_ground, "garden": _preset_garden}


def build_scene(preset: str = "objects", seed: int = 0) -> ProceduralScene:
    """The seeded scene of ``preset`` ("objects": spheres and boxes over a dim environment; "ground": a
    tiled ground plane with a few solids, thin poles, a wire ring and a fence of thin bars; "garden": a
    walled courtyard with a lawn, a tiled plaza, about ten finely textured solids, trees, posts, a fence
    and a cloudy sky, textured wherever a camera looks)."""
    if preset not in PRESETS:
        raise RaveError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    rng = np.random.default_rng([int(seed), 0])
    noise = ValueNoise(np.random.default_rng([int(seed), 5]))
    parts = _PRESET_FUNCS[preset](rng)
    az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(40.0, 65.0))
    light = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    base = parts.get("env_colors", [[0.05, 0.07, 0.14], [0.22, 0.25, 0.32], [0.07, 0.06, 0.05]])
    env = np.array(base) * rng.uniform(0.8, 1.2, (3, 3))
    return ProceduralScene(preset, int(seed), parts["primitives"], light, noise, parts["center"],
                           parts["camera_radius"], parts["elevation_deg"], env_colors=env,
                           env_phase=float(rng.uniform(0, 2 * math.pi)), clouds=parts.get("clouds", 0.0),
                           ambient=parts.get("ambient", 0.25))


# ----------------------------------------------------------------------------------------------------------
# Cameras


def camera_poses(n_views: int, radius: float, center, elevation_deg: tuple[float, float], seed: int = 0) -> Array:
    """[n, 4, 4] float64 world-to-camera matrices (OpenCV axes) on a golden-angle spiral over a hemisphere band.

    Elevations are spread evenly in area between ``elevation_deg`` (low to high with the index), azimuths
    advance by the golden angle from a seeded start; every camera looks at ``center`` with z up.
    """
    lo, hi = (math.sin(math.radians(e)) for e in elevation_deg)
    az0 = float(np.random.default_rng([int(seed), 4]).uniform(0, 2 * math.pi))
    golden = math.pi * (3.0 - math.sqrt(5.0))
    c = torch.as_tensor(np.asarray(center, dtype=np.float64))
    out = []
    for i in range(n_views):
        el = math.asin(lo + (hi - lo) * (i + 0.5) / n_views)
        az = az0 + i * golden
        eye = c + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                                        dtype=torch.float64)
        out.append(look_at(eye, c).double().numpy())
    return np.stack(out)


def pinhole(width: int, height: int, fov_x_rad: float) -> Array:
    """[3, 3] float64 intrinsics: square pixels, principal point at the image centre (as cameras.intrinsics)."""
    f = 0.5 * width / math.tan(0.5 * fov_x_rad)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------------------
# Dataset writer


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RaveError("exists and is not a directory", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RaveError("directory exists and is not empty (pass overwrite / --overwrite to replace it)", out)


def _write_points(path: Path, pts: Array, normals: Array, colors: Array) -> None:
    from plyfile import PlyData, PlyElement

    dt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
          ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    v = np.empty(len(pts), dtype=dt)
    for i, k in enumerate("xyz"):
        v[k] = pts[:, i]
        v["n" + k] = normals[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        v[k] = colors[:, i]
    PlyData([PlyElement.describe(v, "vertex")], text=False, byte_order="<").write(str(path))


def _lens(distortion) -> Distortion | None:
    """The lens of a ``distortion`` argument (None or all-zero coefficients: an ideal pinhole)."""
    if distortion is None:
        return None
    try:
        lens = distortion if isinstance(distortion, Distortion) else Distortion.opencv(distortion)
    except (TypeError, ValueError) as e:
        raise RaveError(f"distortion: {e}") from None
    if not lens.is_finite:
        raise RaveError(f"distortion coefficients must be finite numbers, got {lens.describe()}")
    return None if lens.is_zero else lens


def _check_lens(lens: Distortion, K: Array, width: int, height: int) -> None:
    """RaveError unless ``lens`` inverts over the whole image (checked on its outline before any rendering)."""
    n = 257
    t = np.linspace(0.0, 1.0, n)
    u = np.concatenate([t * width, t * width, np.zeros(n), np.full(n, float(width))])
    v = np.concatenate([np.zeros(n), np.full(n, float(height)), t * height, t * height])
    _, _, ok = lens.undistort_points((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1])
    if not ok.all():
        raise RaveError(f"lens distortion ({lens.describe()}) cannot be inverted over a {width}x{height} image at "
                        "this field of view (the model folds or is too strong); use smaller coefficients")


def _write_colmap(folder: Path, K: Array, lens: Distortion | None, width: int, height: int, w2cs: Array,
                  pts: Array, cols: Array) -> None:
    """The dataset as a COLMAP binary model: one camera (simplest model for ``lens``), poses, points."""
    from .colmap import (
        ColmapCamera,
        ColmapImage,
        ColmapModel,
        rotmat_to_qvec,
        write_colmap_binary,
    )

    model_name, params = colmap_camera(K, lens)
    m = ColmapModel()
    m.cameras[1] = ColmapCamera(1, model_name, width, height, np.array(params, dtype=np.float64))
    for i, w2c in enumerate(w2cs):
        m.images[i + 1] = ColmapImage(i + 1, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), 1, f"r_{i:03d}.png")
    m.points = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    m.colors = np.asarray(cols, dtype=np.uint8).reshape(-1, 3)
    folder.mkdir(parents=True)
    write_colmap_binary(m, folder)


def _to_uint8(img: Array) -> Array:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def generate_scene(out_dir: str | os.PathLike, preset: str = "objects", n_views: int = 64, width: int = 128,
                   height: int = 128, seed: int = 0, fov_deg: float = 50.0, radius: float | None = None,
                   samples_per_pixel: int = 4, n_points: int = 10000, overwrite: bool = False,
                   progress: bool = True, distortion: Distortion | Sequence[float] | None = None,
                   noise: float = 0.0, colmap: bool = False) -> Path:
    """Render a seeded procedural scene into ``out_dir`` as a NeRF-style dataset (layout in the module doc).

    ``radius`` is the camera distance from the scene centre (None: the preset's default); ``fov_deg`` the
    horizontal field of view. Test views are those with index % 8 == 0. ``n_points`` points for
    initialisation are sampled on surfaces seen by the training views (0: no points3d.ply at all, as a
    capture without a point cloud). ``distortion``: a lens (OpenCV coefficients k1, k2, p1, p2[, k3], or a
    :class:`~rave_viewer.scene.undistort.Distortion`) the photos are rendered through, written to the
    transforms files (k1 k2 k3 p1 p2) and COLMAP cameras. ``noise``: standard deviation of Gaussian photo
    noise (in [0, 1] units, seeded per view) added before 8-bit rounding. ``colmap``: also write the
    cameras, poses and points as a COLMAP model in sparse/0/ (which loaders prefer). The dataset is written
    into a temp directory beside ``out_dir`` and renamed into place at the end; an existing non-empty
    ``out_dir`` is replaced only with ``overwrite=True``. Returns the output path.
    """
    out = Path(out_dir)
    if preset not in PRESETS:
        raise RaveError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if n_views < 2:
        raise RaveError(f"need at least 2 views (1 test + 1 train), got {n_views}")
    if width < 16 or height < 16:
        raise RaveError(f"image size must be at least 16x16, got {width}x{height}")
    if samples_per_pixel < 1:
        raise RaveError(f"samples per pixel must be >= 1, got {samples_per_pixel}")
    if not 1.0 <= fov_deg <= 150.0:
        raise RaveError(f"field of view must be within 1-150 degrees, got {fov_deg}")
    if radius is not None and radius <= 0:
        raise RaveError(f"camera radius must be positive, got {radius}")
    if n_points < 0:
        raise RaveError(f"number of points must be >= 0, got {n_points}")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and 0.0 <= noise <= 1.0):
        raise RaveError(f"photo noise must be a standard deviation in 0..1, got {noise!r}")
    lens = _lens(distortion)
    _check_out_dir(out, overwrite)

    scene = build_scene(preset, seed)
    radius = float(scene.camera_radius if radius is None else radius)
    fov_x = math.radians(fov_deg)
    K = pinhole(width, height, fov_x)
    if lens is not None:
        _check_lens(lens, K, width, height)
    w2cs = camera_poses(n_views, radius, scene.center, scene.elevation_deg, seed)
    is_test = [i % TEST_EVERY == 0 for i in range(n_views)]
    n_train = n_views - sum(is_test)
    per_view = math.ceil(n_points / n_train) if n_points else 0

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise RaveError(f"cannot create the output directory: {e.strerror or e}", out) from None
    try:
        (tmp / "images").mkdir()
        frames: dict[str, list] = {"train": [], "test": []}
        pts, nrm, cols = [], [], []

        def render_one(i: int) -> tuple[Array, Array | None, Array | None, Array | None]:
            """Image (uint8) and, for training views, up to ``per_view`` surface samples of view i."""
            img, rays = scene.render(w2cs[i], K, width, height, samples_per_pixel,
                                     np.random.default_rng([int(seed), 1, i]), distortion=lens)
            if noise:
                img = img + np.random.default_rng([int(seed), 6, i]).normal(0.0, float(noise), img.shape)
            if is_test[i] or not per_view:
                return _to_uint8(img), None, None, None
            hit = np.flatnonzero(rays["hit"][:, :, 0].reshape(-1))
            take = np.sort(np.random.default_rng([int(seed), 2, i]).choice(hit, min(per_view, hit.size), replace=False))
            return (_to_uint8(img), rays["points"][:, :, 0].reshape(-1, 3)[take],
                    rays["normals"][:, :, 0].reshape(-1, 3)[take], _to_uint8(rays["rgb"][:, :, 0].reshape(-1, 3)[take]))

        # Views are independent (own RNG streams), so threads (numpy releases the GIL) keep the output identical.
        # On an error or a signal the queued views are cancelled, not rendered before the cleanup.
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        try:
            results = pool.map(render_one, range(n_views))
            for i, (img, p, n, c) in enumerate(tqdm(results, total=n_views, desc=f"generate {preset}",
                                                    unit="view", disable=not progress)):
                name = f"images/r_{i:03d}.png"
                _save_png(tmp / name, img)
                c2w_gl = np.linalg.inv(w2cs[i]) @ OPENGL_FROM_OPENCV
                frames["test" if is_test[i] else "train"].append({"file_path": name,
                                                                  "transform_matrix": c2w_gl.tolist()})
                if p is not None:
                    pts.append(p)
                    nrm.append(n)
                    cols.append(c)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        cam = {"camera_angle_x": fov_x, "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
               "w": width, "h": height}
        if lens is not None:
            cam.update(camera_model="OPENCV", **lens.to_json())  # nerfstudio's keys
        for split in ("train", "test"):
            (tmp / f"transforms_{split}.json").write_text(json.dumps({**cam, "frames": frames[split]}, indent=2))
        pts_a = np.concatenate(pts) if pts else np.zeros((0, 3))
        nrm_a = np.concatenate(nrm) if nrm else np.zeros((0, 3))
        col_a = np.concatenate(cols) if cols else np.zeros((0, 3), np.uint8)
        if len(pts_a) > n_points:
            keep = np.sort(np.random.default_rng([int(seed), 3]).choice(len(pts_a), n_points, replace=False))
            pts_a, nrm_a, col_a = pts_a[keep], nrm_a[keep], col_a[keep]
        if n_points:
            _write_points(tmp / "points3d.ply", pts_a, nrm_a, col_a)
        if colmap:
            _write_colmap(tmp / "sparse" / "0", K, lens, width, height, w2cs, pts_a, col_a)
        recipe = {
            "generator": "rave_viewer.scene.procedural", "generator_version": GENERATOR_VERSION,
            "preset": preset, "seed": int(seed), "n_views": n_views, "width": width, "height": height,
            "fov_deg": fov_deg, "radius": radius, "samples_per_pixel": samples_per_pixel,
            "n_points": int(len(pts_a)), "test_every": TEST_EVERY, "n_train": n_train,
            "n_test": n_views - n_train, "point_cloud": bool(n_points), "colmap": bool(colmap),
            "distortion": None if lens is None else lens.to_json(), "noise": float(noise),
            "center": scene.center.tolist(),
            "elevation_deg": list(scene.elevation_deg), "light_dir": scene.light_dir.tolist(),
            "ambient": scene.ambient, "objects": scene.describe(),
        }
        (tmp / "scene.json").write_text(json.dumps(recipe, indent=2))
        _move_into_place(tmp, out, overwrite)
    except OSError as e:  # disk full, permissions, ...: one line naming the file
        shutil.rmtree(tmp, ignore_errors=True)
        raise RaveError(f"cannot write the dataset: {e.strerror or e}", e.filename or out) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _save_png(path: Path, img: Array) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, format="PNG")


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp directory to ``out`` (replacing an old one only when ``overwrite``)."""
    _check_out_dir(out, overwrite)  # again: something may have appeared while rendering
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".old", dir=out.parent))
    os.replace(out, old / "x")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / "x", out)
        raise
    shutil.rmtree(old, ignore_errors=True)
