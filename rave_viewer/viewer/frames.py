"""Pixels for the viewer: a selection seen from a browser camera, a test view with its exact PSNR, GT comparisons.

Camera conventions: viser and nerfview give camera-to-world matrices in OpenCV axes (x right, y down,
z forward) and a *vertical* field of view; our renderer takes world-to-camera ``viewmats`` and pixel ``Ks``
(see :mod:`rave_viewer.scene.cameras`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..metrics import psnr
from ..render import render, resolve_backend
from ..render.cached import PrefixRenderer
from ..scene.cameras import Cameras
from .sources import ViewSource

DIFF_GAIN = 4.0  # the difference view shows |render - ground truth| x this gain
RENDER_MODES = ("RGB", "alpha", "depth")  # what a server frame shows: colour, accumulated opacity, or depth
ADDED_RGB = (1.0, 0.0, 1.0)  # "what the slider adds": the Gaussians between rate A and rate B, in magenta


# -- camera math --------------------------------------------------------------------------------------------
def intrinsics_from_fov(fov_y: float, width: int, height: int) -> Tensor:
    """[3, 3] pinhole K for a vertical field of view (radians), principal point at the centre (as nerfview)."""
    f = height / 2.0 / math.tan(fov_y / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)


def viewmat_from_c2w(c2w: np.ndarray) -> Tensor:
    """[4, 4] world-to-camera from a camera-to-world matrix (both OpenCV axes)."""
    return torch.linalg.inv(torch.as_tensor(np.asarray(c2w), dtype=torch.float64)).float()


def pose_of_test_view(cams: Cameras, i: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(camera-to-world [4, 4], forward direction [3], vertical fov in radians) of test camera ``i``."""
    c2w = torch.linalg.inv(cams.viewmats[i].double()).numpy()
    fov_y = 2.0 * math.atan(cams.height / (2.0 * float(cams.Ks[i, 1, 1])))
    return c2w, c2w[:3, 2].copy(), fov_y


def start_view(cams: Cameras, up: np.ndarray) -> int:
    """The test view a new tab opens on: the one of median elevation along ``up`` [3].

    Captures and rigs order their views by time or azimuth, so view 0 is arbitrary; on hemisphere captures the
    grazing views are the hardest (on demo_garden view 0 sits 8 degrees up at 21.2 dB, the top ones at 32 dB),
    and a top-down view shows little of the scene. The median elevation is a typical view of both.
    """
    n = len(cams)
    if n <= 1:
        return 0
    c2w = torch.linalg.inv(cams.viewmats.double()).numpy()
    u = np.asarray(up, float) / max(float(np.linalg.norm(up)), 1e-12)
    down = -(c2w[:, :3, 2] @ u)  # sin of the angle the camera looks down by
    order = np.argsort(down, kind="stable")
    return int(order[(n - 1) // 2])


def scene_frame(source: ViewSource) -> tuple[np.ndarray, float, np.ndarray]:
    """(centre [3], radius, automatic up direction [3]) of the scene (see :mod:`.viewpoint`)."""
    from .viewpoint import scene_frame as frame

    f = frame(source)
    return f.centre, f.radius, f.up


def match_test_view(c2w: np.ndarray, cams: Cameras | None, radius: float) -> int | None:
    """Index of the test view whose centre and viewing direction the camera ``c2w`` shares, else None.

    Tolerances: 0.1 % of the scene radius in position and 0.1 degree in direction (roll is ignored: the
    browser's orbit camera keeps its own up vector; test-view renders always use the exact test pose).
    """
    if cams is None or not len(cams):
        return None
    c2w = np.asarray(c2w, dtype=np.float64)
    ref = torch.linalg.inv(cams.viewmats.double()).numpy()
    d_pos = np.linalg.norm(ref[:, :3, 3] - c2w[:3, 3], axis=1)
    cos = ref[:, :3, 2] @ c2w[:3, 2]
    ok = (d_pos <= 1e-3 * radius + 1e-9) & (cos >= math.cos(math.radians(0.1)))
    idx = np.flatnonzero(ok)
    return int(idx[np.argmin(d_pos[idx])]) if len(idx) else None


# -- images -------------------------------------------------------------------------------------------------
def to_uint8(img: Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8 numpy."""
    return (img.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def draw_labels(img: np.ndarray, labels: list[tuple[int, str]], size: int | None = None) -> np.ndarray:
    """``img`` [H, W, 3] uint8 with white-on-black ``labels`` (x pixel, text) along its top edge."""
    h = img.shape[0]
    if not labels or h < 60:
        return img
    canvas = Image.fromarray(img)
    d = ImageDraw.Draw(canvas)
    font = _font(size or max(10, min(22, h // 24)))
    for x, text in labels:
        if not text:
            continue
        box = d.textbbox((x + 6, 4), text, font=font)
        d.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(0, 0, 0))
        d.text((x + 6, 4), text, font=font, fill=(255, 255, 255))
    return np.asarray(canvas)


def letterbox(img: np.ndarray, width: int, height: int, labels: list[tuple] = ()) -> np.ndarray:
    """Fit ``img`` [h, w, 3] uint8 into a black ``width`` x ``height`` canvas (aspect kept, centred).

    ``labels``: (x position as a fraction of ``img``'s width, text), or (x fraction, y fraction, text), drawn at
    the top (or at that height) of the fitted image.
    """
    h, w = img.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    fitted = Image.fromarray(img).resize((nw, nh), Image.BILINEAR if s > 1 else Image.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    canvas.paste(fitted, (x0, y0))
    if labels and nh >= 100:  # no room for text in thumbnails
        d = ImageDraw.Draw(canvas)
        size = max(10, min(22, nh // 18))
        font = _font(size)
        for lab in labels:
            fx, fy, text = lab if len(lab) == 3 else (lab[0], 0.0, lab[1])
            x, y = x0 + fx * nw + 6, y0 + fy * nh + 4
            box = d.textbbox((x, y), text, font=font)
            d.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(0, 0, 0))
            d.text((x, y), text, font=font, fill=(255, 255, 255))
    return np.asarray(canvas)


class FrameRenderer:
    """Renders prefixes of one source; caches test-view renders (keyed by selection and view).

    A source whose Gaussians depend on the camera (``source.view_dependent``, e.g. Scaffold-GS anchors) is drawn
    through its per-camera hooks (``source.gaussians_for`` / ``source.added_for``) in every view: live frames,
    test views and their PSNR, alpha/depth, A/B split and what the slider adds; ``k`` then counts its units.
    Thread-safe: renders hold no shared mutable state; the small caches are guarded by a lock.
    """

    def __init__(self, source: ViewSource, backend: str = "auto", cache_size: int = 16):
        self.source = source
        self.backend = resolve_backend(backend)
        device = "cuda" if self.backend == "gsplat" else "cpu"
        self.gaussians = source.gaussians.detach().float().to(device)
        self.cams = source.test_cameras
        self._cache: OrderedDict[tuple[int, int], Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._adds = None
        self.device = device
        self.view_dependent = bool(getattr(source, "view_dependent", False))
        #: live views on the CPU: the projection is kept per camera, so a rate change at rest projects only
        #: what it adds (render/cached.py); not for view-dependent sources (their Gaussians change per camera)
        self.prefix = PrefixRenderer(self.gaussians) if self.backend == "cpu" and not self.view_dependent else None

    def gaussians_for(self, k: int, viewmat: Tensor, K: Tensor, width: int, height: int):
        """The Gaussians the first ``k`` units show to this camera, on the render device."""
        if not self.view_dependent:
            return self.gaussians.prefix(int(k))
        return self.source.gaussians_for(int(k), viewmat, K, int(width), int(height)).to(self.device)

    def render(self, k: int, viewmat: Tensor, K: Tensor, width: int, height: int, cached: bool = False) -> Tensor:
        """[H, W, 3] float image of the first ``k`` units; ``cached``: through :attr:`prefix` (live views)."""
        if cached and self.prefix is not None:
            return self.prefix.render(k, viewmat, K, width, height).clamp(0, 1)
        with torch.no_grad():
            g = self.gaussians_for(k, viewmat, K, width, height)
            colors, _, _ = render(g, viewmat[None], K[None], int(width), int(height), backend=self.backend)
        return colors[0].clamp(0, 1).cpu()

    def warm_up(self) -> None:
        """One tiny render, so loading the rasterizer and first allocations happen now and not in the first frame."""
        vm = torch.eye(4)
        vm[2, 3] = 10.0
        self.render(min(self.source.n, 16), vm, intrinsics_from_fov(1.0, 8, 8), 8, 8)

    def render_c2w(self, k: int, c2w: np.ndarray, fov_y: float, width: int, height: int) -> Tensor:
        return self.render(k, viewmat_from_c2w(c2w), intrinsics_from_fov(fov_y, width, height), width, height,
                           cached=True)  # fmt: skip

    def render_split(self, k_a: int, k_b: int, c2w: np.ndarray, fov_y: float, width: int, height: int,
                     labels: tuple[str, str] = ("", "")) -> np.ndarray:
        """A/B split: the left half of the view rendered with ``k_a`` Gaussians, the right half with ``k_b``.

        Each half is exactly that half of a full-frame render (its own intrinsics with the principal point
        shifted), so the cost is one frame and the two halves meet seamlessly; a 2 px divider marks the cut."""
        vm = viewmat_from_c2w(c2w)
        K = intrinsics_from_fov(fov_y, width, height)
        wl = max(width // 2, 1)
        left = self.render(k_a, vm, K, wl, height, cached=True)
        Kr = K.clone()
        Kr[0, 2] -= wl
        right = self.render(k_b, vm, Kr, max(width - wl, 1), height, cached=True) if width > wl else left[:, :0]
        img = to_uint8(torch.cat([left, right], dim=1))
        img[:, max(wl - 1, 0):wl + 1] = 255
        return draw_labels(img, [(0, labels[0]), (wl, labels[1])])

    @staticmethod
    def _paint_added(g, added: Tensor):
        """``g`` with the Gaussians where ``added`` [len(g)] bool is set coloured :data:`ADDED_RGB`."""
        added = added.to(g.sh0.device)
        sh0, shN = g.sh0.clone(), g.shN.clone()
        sh0[added] = ((torch.tensor(ADDED_RGB) - 0.5) / 0.28209479177387814).to(sh0)
        shN[added] = 0
        return type(g)(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities, sh0=sh0, shN=shN)

    def added_gaussians(self, k_lo: int, k_hi: int):
        """The first ``k_hi`` Gaussians with those from ``k_lo`` to ``k_hi`` coloured :data:`ADDED_RGB`
        (a camera-independent source; see :meth:`render_adds` for any source)."""
        key = ("adds", int(k_lo), int(k_hi))
        with self._lock:
            if self._adds is not None and self._adds[0] == key:
                return self._adds[1]
        g = self.gaussians.prefix(int(k_hi))
        g = self._paint_added(g, torch.arange(len(g), device=g.sh0.device) >= int(k_lo))
        with self._lock:
            self._adds = (key, g)
        return g

    def render_adds(self, k_a: int, k_b: int, c2w: np.ndarray, fov_y: float, width: int, height: int) -> Tensor:
        """What the slider adds between A and B: the larger selection, its extra units' Gaussians in magenta."""
        lo, hi = sorted((int(k_a), int(k_b)))
        vm, K = viewmat_from_c2w(c2w), intrinsics_from_fov(fov_y, width, height)
        if self.view_dependent:
            g, added = self.source.added_for(lo, hi, vm, K, int(width), int(height))
            g = self._paint_added(g.to(self.device), added)
        else:
            g = self.added_gaussians(lo, hi)
        with torch.no_grad():
            colors, _, _ = render(g, vm[None], K[None], int(width), int(height), backend=self.backend)
        return colors[0].clamp(0, 1).cpu()

    def render_mode(self, k: int, c2w: np.ndarray, fov_y: float, width: int, height: int, mode: str) -> Tensor:
        """[H, W, 3] in [0, 1]: "RGB", "alpha" (accumulated opacity, white = opaque) or "depth" (alpha-weighted
        depth of the Gaussian centres, near = bright, scaled to their 2nd..98th percentile in front of the camera)."""
        if mode == "RGB":
            return self.render_c2w(k, c2w, fov_y, width, height)
        if mode not in RENDER_MODES:
            raise ValueError(f"render mode must be one of {RENDER_MODES}")
        vm, K = viewmat_from_c2w(c2w), intrinsics_from_fov(fov_y, width, height)
        g = self.gaussians_for(k, vm, K, width, height)
        vm = vm.to(g.means)
        if mode == "depth":
            z = g.means @ vm[2, :3] + vm[2, 3]
            front = z[z > 0]
            if len(front) >= 2:
                lo, hi = torch.quantile(front[:: max(len(front) // 100_000, 1)], torch.tensor([0.02, 0.98]).to(z))
            else:
                lo, hi = z.new_tensor(0.0), z.new_tensor(1.0)
            shade = 1.0 - ((z - lo) / (hi - lo).clamp_min(1e-9)).clamp(0, 1)
            sh0 = ((shade[:, None].expand(-1, 3) - 0.5) / 0.28209479177387814)[:, None, :]
            g = type(g)(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities, sh0=sh0,
                        shN=g.shN[:, :0])  # fmt: skip
        with torch.no_grad():
            colors, alphas, _ = render(g, vm[None], K[None], int(width), int(height), backend=self.backend)
        img = alphas[0].expand(-1, -1, 3) if mode == "alpha" else colors[0]
        return img.clamp(0, 1).cpu()

    def render_test(self, k: int, view: int) -> Tensor:
        """[h, w, 3] render of test view ``view`` at its own intrinsics and size (cached)."""
        key = (int(k), int(view))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        cams = self.cams
        img = self.render(k, cams.viewmats[view], cams.Ks[view], cams.width, cams.height)
        with self._lock:
            self._cache[key] = img
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return img

    def ground_truth(self, view: int) -> Tensor:
        return self.cams.images[view].float().clamp(0, 1)

    def test_psnr(self, k: int, view: int) -> float:
        """Exact PSNR (dB) of the first ``k`` units (Gaussians, anchors) on test view ``view``."""
        return float(psnr(self.render_test(k, view), self.ground_truth(view)))

    def comparison(self, k: int, view: int, how: str, width: int, height: int) -> np.ndarray:
        """Test view ``view`` next to its ground truth ("side by side") or their difference, fitted to W x H."""
        r, gt = self.render_test(k, view), self.ground_truth(view)
        if how == "side by side":  # side by side or one above the other, whichever fills the canvas more
            h, w = r.shape[:2]
            if min(width / w, height / (2 * h)) > min(width / (2 * w), height / h):
                img = torch.cat([r, gt], dim=0)
                labels = [(0.0, 0.0, f"RAVE, {k:,} {self.source.unit_label}"), (0.0, 0.5, "ground truth")]
            else:
                img = torch.cat([r, gt], dim=1)
                labels = [(0.0, f"RAVE, {k:,} {self.source.unit_label}"), (0.5, "ground truth")]
        elif how == "difference":
            img = ((r - gt).abs() * DIFF_GAIN).clamp(0, 1)
            labels = [(0.0, f"|render - ground truth| x {DIFF_GAIN:g}")]
        else:
            raise ValueError(f"unknown comparison '{how}'")
        return letterbox(to_uint8(img), int(width), int(height), labels)


__all__ = [
    "ADDED_RGB", "DIFF_GAIN", "RENDER_MODES", "FrameRenderer", "draw_labels", "intrinsics_from_fov", "letterbox", "match_test_view", "scene_frame",
    "pose_of_test_view", "to_uint8", "viewmat_from_c2w",
]  # fmt: skip
