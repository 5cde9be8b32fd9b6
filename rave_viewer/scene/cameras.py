"""Pinhole cameras in gsplat's conventions: world-to-camera ``viewmats`` (OpenCV axes) and intrinsics ``Ks``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Cameras:
    """A batch of C pinhole cameras sharing one image size.

    Attributes:
        viewmats: [C, 4, 4] world-to-camera (OpenCV: x right, y down, z forward).
        Ks: [C, 3, 3] intrinsics in pixels (principal point in pixel units, pixel centres at +0.5).
        width, height: image size in pixels.
        images: optional [C, H, W, 3] float32 ground truth in [0, 1].
        names: optional image names, one per camera.
    """

    viewmats: Tensor
    Ks: Tensor
    width: int
    height: int
    images: Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def __getitem__(self, idx) -> "Cameras":
        """Select cameras by int, slice or index list; keeps the batch dimension."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        sel = lambda t: None if t is None else t[idx]  # noqa: E731
        names = self.names
        if names:
            ids = range(len(self))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
            names = [self.names[i] for i in ids]
        return Cameras(sel(self.viewmats), sel(self.Ks), self.width, self.height, sel(self.images), names)

    @property
    def camtoworlds(self) -> Tensor:
        """[C, 4, 4] camera-to-world matrices."""
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:
        """[C, 3] camera centres in world space."""
        return self.camtoworlds[:, :3, 3]

    def to(self, device) -> "Cameras":
        img = None if self.images is None else self.images.to(device)
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height, img, self.names)

    def scaled(self, factor: float) -> "Cameras":
        """Cameras for images downscaled by ``factor`` (intrinsics scaled; images are not resampled)."""
        Ks = self.Ks.clone()
        Ks[:, :2, :] /= factor
        w, h = int(round(self.width / factor)), int(round(self.height / factor))
        return Cameras(self.viewmats, Ks, w, h, None, self.names)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """[4, 4] world-to-camera (OpenCV axes) for a camera at ``eye`` looking at ``target``."""
    eye, target = eye.double(), target.double()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) if up is None else up.double()
    fwd = target - eye
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, up)
    if right.norm() < 1e-8:  # looking along up: pick any perpendicular
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])  # rows: camera axes in world
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = R
    m[:3, 3] = -R @ eye
    return m.float()


def intrinsics(width: int, height: int, fov_x_rad: float) -> Tensor:
    """[3, 3] pinhole intrinsics with square pixels and the principal point at the image centre."""
    import math

    f = 0.5 * width / math.tan(0.5 * fov_x_rad)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
