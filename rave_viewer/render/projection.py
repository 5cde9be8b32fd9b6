"""Per-Gaussian EWA projection in torch (gsplat 1.5.3's math): the reference path and the compiled one's oracle."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD: dimmer contributions are skipped
MAX_EXTEND = 3.33  # gsplat's bounding-box extent in standard deviations
MAX_RADIUS = 2**30  # keeps int32 radii finite for Gaussians that blow up near the camera plane


@dataclass
class Projected:
    """Screen-space Gaussians for C cameras (entries of culled Gaussians are zero and their radii 0).

    Attributes:
        means2d: [C, N, 2] pixel positions (pixel centres at +0.5).
        conics: [C, N, 3] inverse 2D covariance (a, b, c) of [[a, b], [b, c]].
        depths: [C, N] camera-space z.
        radii: [C, N, 2] int32 per-axis pixel radii of the bounding box; 0 = culled.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def _rotations(quats: Tensor) -> list[list[Tensor]]:
    """Rotation matrix entries R[i][j] ([N] each) from quaternions [N, 4] (wxyz, normalised here)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances R S S^T R^T [N, 3, 3] from quaternions [N, 4] (wxyz, any norm) and scales [N, 3]."""
    R = torch.stack([torch.stack(row, dim=-1) for row in _rotations(quats)], dim=-2)
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projected:
    """EWA perspective projection of N Gaussians into C pinhole cameras, with gsplat's culling.

    Written with per-entry [C, N] tensors instead of batched 3x3 matmuls: several times faster on CPU,
    forward and backward.

    Args:
        means: [N, 3] world positions.  quats: [N, 4] wxyz (any norm).  scales: [N, 3] activated scales.
        opacities: [N] activated opacities (only used, without gradient, to tighten the radii).
        viewmats: [C, 4, 4] world-to-camera.  Ks: [C, 3, 3] intrinsics.
    """
    Rq = _rotations(quats)
    sx, sy, sz = scales.unbind(-1)
    # M = R S: the covariance is M M^T
    M = [[Rq[i][0] * sx, Rq[i][1] * sy, Rq[i][2] * sz] for i in range(3)]  # [N] each
    V = [[viewmats[:, i, j, None] for j in range(4)] for i in range(3)]  # [C, 1] each
    mx, my, mz = means.unbind(-1)
    x, y, z = (V[i][0] * mx + V[i][1] * my + V[i][2] * mz + V[i][3] for i in range(3))  # [C, N]
    valid = (z >= near_plane) & (z <= far_plane)
    z = torch.where(valid, z, torch.ones_like(z))  # keeps culled entries finite (and their gradients zero)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # clamp the Jacobian's view direction to 1.3x the field of view (gsplat's persp_proj)
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z
    u = torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))  # = tx / z
    v = torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    # rows of T = J W (J: EWA Jacobian [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]], W: camera rotation)
    T1 = [fx * rz * (V[0][k] - u * V[2][k]) for k in range(3)]
    T2 = [fy * rz * (V[1][k] - v * V[2][k]) for k in range(3)]
    # A = T M, so cov2d = A A^T
    A1 = [T1[0] * M[0][j] + T1[1] * M[1][j] + T1[2] * M[2][j] for j in range(3)]
    A2 = [T2[0] * M[0][j] + T2[1] * M[1][j] + T2[2] * M[2][j] for j in range(3)]
    a = A1[0] * A1[0] + A1[1] * A1[1] + A1[2] * A1[2] + eps2d  # low-pass filter: at least ~1 pixel wide
    b = A1[0] * A2[0] + A1[1] * A2[1] + A1[2] * A2[2]
    c = A2[0] * A2[0] + A2[1] * A2[1] + A2[2] * A2[2] + eps2d
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    det = a * c - b * b
    valid = valid & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        op = opacities.detach().to(a.dtype).expand_as(a)
        valid = valid & (op >= ALPHA_THRESHOLD)
        # opacity-aware extent (gsplat 1.5.3): beyond it alpha < 1/255
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp(max=MAX_EXTEND)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        valid = valid & ((rx > 0) | (ry > 0))
        px, py = means2d.detach().unbind(-1)
        inside = (px + rx > 0) & (px - rx < width) & (py + ry > 0) & (py - ry < height)
        valid = valid & inside
        radii = torch.stack([rx, ry], dim=-1).clamp(max=MAX_RADIUS)
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)

    vm = valid[..., None]
    return Projected(
        means2d=torch.where(vm, means2d, torch.zeros_like(means2d)),
        conics=torch.where(vm, conics, torch.zeros_like(conics)),
        depths=torch.where(valid, z, torch.zeros_like(z)),
        radii=radii,
    )


def camera_centers(viewmats: Tensor) -> Tensor:
    """[C, 3] camera centres in world space from world-to-camera matrices [C, 4, 4]."""
    return torch.linalg.inv(viewmats)[:, :3, 3]
