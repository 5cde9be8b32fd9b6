"""One render() for every backend: activations, projection, SH colour, then a backend's per-pixel compositing."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import RaveError
from ..scene.cameras import Cameras
from ..scene.gaussians import Gaussians
from .projection import camera_centers, project
from .sh import sh_to_rgb

BACKENDS = ("auto", "gsplat", "cpu", "reference")
TILE_SIZE = 16


def resolve_backend(backend: str) -> str:
    """The backend that ``backend`` means here: "auto" -> "gsplat" with CUDA, else "cpu"."""
    if backend not in BACKENDS:
        raise RaveError(f"unknown render backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "gsplat" if torch.cuda.is_available() else "cpu"
    if backend == "gsplat" and not torch.cuda.is_available():
        raise RaveError("render backend 'gsplat' needs CUDA, which is not available here; use 'cpu'")
    return backend


def render(
    gaussians: Gaussians,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    backend: str = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, dict]:
    """Render Gaussians into C cameras; differentiable w.r.t. every Gaussian tensor.

    Args:
        gaussians: the scene (raw parameters; activations are applied here like gsplat).
        viewmats: [C, 4, 4] world-to-camera (OpenCV).  Ks: [C, 3, 3] intrinsics.
        sh_degree: SH degree to use (None: the scene's degree; lower uses fewer bases).
        backgrounds: [C, 3] (or [3]) background colours; None is black.
        backend: "auto" (gsplat if CUDA else cpu), "gsplat", "cpu" or "reference" (dense torch oracle).
    Returns:
        colors [C, H, W, 3], alphas [C, H, W, 1] and info with gsplat's keys ("means2d" [C, N, 2] whose
        ``.grad`` is the pixel-space gradient, "radii" [C, N, 2] int32, "depths", "conics", "width", "height",
        "n_cameras", "tile_size", "gaussian_ids" (None), "backend").
    """
    backend = resolve_backend(backend)
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise RaveError(f"image size must be positive, got {width}x{height}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (viewmats.shape[0], 3, 3):
        raise RaveError(f"expected viewmats [C,4,4] and Ks [C,3,3], got {tuple(viewmats.shape)}, {tuple(Ks.shape)}")
    degree = gaussians.sh_degree if sh_degree is None else int(sh_degree)
    if not 0 <= degree <= gaussians.sh_degree:
        raise RaveError(f"sh_degree {sh_degree} is not in 0..{gaussians.sh_degree} (the scene's SH degree)")
    C = viewmats.shape[0]
    dtype, device = gaussians.means.dtype, gaussians.means.device
    viewmats, Ks = viewmats.to(device=device, dtype=dtype), Ks.to(device=device, dtype=dtype)
    if backgrounds is None:
        backgrounds = torch.zeros(C, 3, dtype=dtype, device=device)
    backgrounds = backgrounds.to(device=device, dtype=dtype).expand(C, 3)

    if backend == "gsplat":
        from .cuda import render_gsplat

        return render_gsplat(gaussians, viewmats, Ks, width, height, degree, backgrounds, near_plane, far_plane, eps2d)

    opacities = torch.sigmoid(gaussians.opacities)
    scales = torch.exp(gaussians.scales)
    opac = opacities[None, :].expand(C, -1)
    if backend == "cpu":  # compiled: fused projection + SH, then the tile rasterizer
        from . import cpu

        means2d, conics, colors, depths, radii = cpu.project(
            gaussians.means, gaussians.quats, scales, opacities, gaussians.sh0, gaussians.shN, viewmats, Ks,
            width, height, near_plane, far_plane, eps2d, degree,
        )
        image, alpha = cpu.rasterize(means2d, conics, colors, opac, depths, radii, backgrounds, width, height)
    else:  # pure torch: autograd through projection.py / sh.py and the dense oracle
        from .reference import composite_dense

        proj = project(
            gaussians.means, gaussians.quats, scales, opacities, viewmats, Ks, width, height, near_plane, far_plane,
            eps2d,
        )
        means2d, conics, depths, radii = proj.means2d, proj.conics, proj.depths, proj.radii
        colors = sh_to_rgb(gaussians.colors, gaussians.means, camera_centers(viewmats), degree)  # [C, N, 3]
        image, alpha = composite_dense(
            means2d, conics, colors, opac, depths.detach(), radii, backgrounds, width, height
        )
    info = {
        "means2d": means2d,
        "radii": radii,
        "depths": depths,
        "conics": conics,
        "opacities": opac,
        "gaussian_ids": None,
        "width": width,
        "height": height,
        "n_cameras": C,
        "tile_size": TILE_SIZE,
        "backend": backend,
    }
    return image, alpha, info


def render_cameras(gaussians: Gaussians, cams: Cameras, **kw) -> tuple[Tensor, Tensor, dict]:
    """:func:`render` for a :class:`Cameras` batch (same keyword arguments and returns)."""
    return render(gaussians, cams.viewmats, cams.Ks, cams.width, cams.height, **kw)
