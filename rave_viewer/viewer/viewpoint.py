"""Where the viewer looks from: the scene's robust centre and radius, its up axis, framing and reset poses.

A PLY without training cameras keeps the world's +Z as "up" in a plain viewer; a COLMAP world (-Y up) then
opens end-on or from below and orbits tumbling. The automatic up comes from the test cameras when there are
some (their mean "up" vector), else from the scene's principal axes (the thinnest axis with the sign from a
ground plane or the common conventions: :func:`rave_viewer.rave.rig.choose_shape`, the rule ``rave build``
uses for its rig). The user can override it with one of :data:`UP_CHOICES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .sources import ViewSource

UP_CHOICES = ("auto", "+X", "-X", "+Y", "-Y", "+Z", "-Z")
MAX_BOUNDS_SAMPLE = 300_000  # Gaussians used for the robust bounds (an even subsample of larger scenes)
FRAME_MARGIN = 1.15  # the bounding sphere fills the view with this much room to spare


@dataclass(frozen=True)
class SceneFrame:
    """centre [3], radius, automatic up [3] (unit) and why it was chosen."""

    centre: np.ndarray
    radius: float
    up: np.ndarray
    up_reason: str


def axis_vector(choice: str) -> np.ndarray:
    """"+Y" -> [0, 1, 0]."""
    v = np.zeros(3)
    v["XYZ".index(choice[1].upper())] = 1.0 if choice[0] == "+" else -1.0
    return v


def scene_frame(source: ViewSource) -> SceneFrame:
    """Robust centre/radius (floaters and far shells ignored) and the automatic up axis of ``source``."""
    from ..rave.rig import choose_shape, robust_bounds

    g = source.gaussians
    if len(g) > MAX_BOUNDS_SAMPLE:
        g = g.subset(torch.arange(0, len(g), math.ceil(len(g) / MAX_BOUNDS_SAMPLE)))
    finite = torch.isfinite(g.means).all(1) & torch.isfinite(g.scales).all(1)
    if not bool(finite.all()):
        g = g.subset(torch.nonzero(finite)[:, 0])
    if len(g) == 0:
        return SceneFrame(np.zeros(3), 1.0, np.array([0.0, 0.0, 1.0]), "empty scene: +Z")
    b = robust_bounds(g)
    centre = b.center.numpy().astype(np.float64)
    radius = float(b.radius)
    cams = source.test_cameras
    if cams is not None and len(cams):
        c2w = torch.linalg.inv(cams.viewmats.double()).numpy()
        u = -c2w[:, :3, 1].mean(axis=0)  # OpenCV: camera y points down
        if np.linalg.norm(u) > 1e-6:
            return SceneFrame(centre, radius, u / np.linalg.norm(u), "from the test cameras")
    _, up, why = choose_shape(b, "auto", "auto")
    up = up.numpy().astype(np.float64)
    return SceneFrame(centre, radius, up / np.linalg.norm(up), f"from the scene: {why}")


def _horizontal(direction: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``direction`` with its component along ``up`` removed (a fixed side direction if nothing is left)."""
    h = direction - np.dot(direction, up) * up
    if np.linalg.norm(h) < 1e-6:
        ref = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
        h = ref - np.dot(ref, up) * up
    return h / np.linalg.norm(h)


def framing_pose(frame: SceneFrame, up: np.ndarray, fov_y: float, aspect: float = 1.0,
                 forward: np.ndarray | None = None, elevation_deg: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """(position, look-at) so the scene's bounding sphere fills the view: looking along ``forward`` (kept as
    it is, for "frame the scene") or, without one, from the side at ``elevation_deg`` above the horizon."""
    fov = min(fov_y, 2 * math.atan(math.tan(fov_y / 2) * max(aspect, 1e-3)))  # the narrower of the two
    dist = FRAME_MARGIN * frame.radius / max(math.sin(fov / 2), 1e-3)
    if forward is None or not np.isfinite(forward).all() or np.linalg.norm(forward) < 1e-9:
        side = _horizontal(np.array([0.0, 1.0, 0.0]), up)
        e = math.radians(elevation_deg)
        forward = math.cos(e) * side - math.sin(e) * up
    forward = forward / np.linalg.norm(forward)
    return frame.centre - forward * dist, frame.centre.copy()


__all__ = ["FRAME_MARGIN", "SceneFrame", "UP_CHOICES", "axis_vector", "framing_pose", "scene_frame"]
