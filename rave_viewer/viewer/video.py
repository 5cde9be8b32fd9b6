"""Rate-sweep video: a camera path (keyframes) rendered while the rate sweeps from R(G_1) to R(G_L), as MP4.

Only a rate-adaptive model can show this: every frame is the same scene at another operating point, a prefix
of one ranked order, with its exact encoded size and PSNR written on it. Encoded with imageio-ffmpeg (the
``video`` extra: ``pip install rave_viewer[video]``), H.264 in yuv420p so every player opens it.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import RaveError
from .frames import FrameRenderer, draw_labels, to_uint8
from .session import fmt_bytes
from .sources import ViewSource

Pose = tuple[np.ndarray, np.ndarray, float]  # (position [3], look-at [3], vertical fov in radians)
DEFAULT_FRAMES = 48
DEFAULT_FPS = 24
DEFAULT_SIZE = (640, 360)
MAX_FRAMES = 1200  # one export renders at most this many frames
MAX_SIDE = 1920


def look_at_c2w(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world (OpenCV axes: x right, y down, z forward) looking from ``position`` at ``target``."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= max(np.linalg.norm(z), 1e-12)
    x = np.cross(z, -np.asarray(up, float))
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, position
    return c2w


def camera_path(keyframes: list[Pose], n: int) -> list[Pose]:
    """``n`` poses along the keyframes (linear in position, look-at and fov; one keyframe: a still camera)."""
    if not keyframes:
        raise ValueError("a camera path needs at least one keyframe")
    if len(keyframes) == 1 or n == 1:
        return [keyframes[0]] * n
    out = []
    for t in np.linspace(0.0, len(keyframes) - 1, n):
        i = min(int(math.floor(t)), len(keyframes) - 2)
        f = t - i
        (p0, l0, v0), (p1, l1, v1) = keyframes[i], keyframes[i + 1]
        out.append(((1 - f) * p0 + f * p1, (1 - f) * l0 + f * l1, (1 - f) * v0 + f * v1))
    return out


def orbit_path(centre: np.ndarray, up: np.ndarray, start: np.ndarray, fov: float, n: int) -> list[Pose]:
    """A full turn around ``up`` through ``centre``, starting at ``start`` (the default path: no keyframes)."""
    up = np.asarray(up, float) / np.linalg.norm(up)
    r = np.asarray(start, float) - centre
    out = []
    for a in np.linspace(0.0, 2 * math.pi, n, endpoint=False):
        c, s = math.cos(a), math.sin(a)
        rot = r * c + np.cross(up, r) * s + up * np.dot(up, r) * (1 - c)  # Rodrigues
        out.append((centre + rot, centre.copy(), fov))
    return out


def sweep_ks(source: ViewSource, n: int) -> list[int]:
    """Prefix lengths for ``n`` frames, the rate rising geometrically from the lowest to the highest point."""
    if not source.has_rate_control:
        raise RaveError("a rate sweep needs a .ckpt or .rave (a plain .ply has no rates)", source.path)
    lo, hi = source.bounds("rate")
    rates = np.geomspace(max(lo, 1.0), max(hi, lo, 1.0), n)
    ks = [source.select("rate", float(r)) for r in rates]
    ks[-1] = source.select("rate", hi)
    return ks


def write_sweep(path: str | os.PathLike, frames: FrameRenderer, source: ViewSource, poses: list[Pose],
                up: np.ndarray, size: tuple[int, int] = DEFAULT_SIZE, fps: int = DEFAULT_FPS,
                progress: Callable[[int, int], None] | None = None) -> int:  # fmt: skip
    """Render and encode the sweep to ``path`` (MP4, H.264); returns the number of frames written."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RaveError("video export needs imageio-ffmpeg: pip install 'rave_viewer[video]'") from None
    n = len(poses)
    if not 1 <= n <= MAX_FRAMES:
        raise RaveError(f"a video has 1..{MAX_FRAMES} frames, asked for {n}")
    W, H = (int(v) // 16 * 16 for v in size)  # H.264 macro blocks: no rescaling by the encoder
    if not (16 <= W <= MAX_SIDE and 16 <= H <= MAX_SIDE):
        raise RaveError(f"video size must be 16..{MAX_SIDE} px per side, got {size[0]}x{size[1]}")
    ks = sweep_ks(source, n)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".rave-", suffix=".mp4", dir=path.parent)
    os.close(fd)
    writer = imageio_ffmpeg.write_frames(tmp, (W, H), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         quality=7, macro_block_size=16, ffmpeg_log_level="error")  # fmt: skip
    try:
        writer.send(None)
        bar = tqdm(total=n, desc="rate-sweep video", unit="frame", file=sys.stderr, leave=False)
        for i, ((pos, look, fov), k) in enumerate(zip(poses, ks)):
            img = to_uint8(frames.render_c2w(k, look_at_c2w(pos, look, up), fov, W, H))
            nbytes, ps = source.bytes_of(k), source.psnr_at(k)
            text = (fmt_bytes(nbytes) if nbytes is not None else "") + f" | {k:,} {source.unit_label}"
            text += f" | {ps:.2f} dB" if ps is not None else ""
            writer.send(np.ascontiguousarray(draw_labels(img, [(0, text)])))
            bar.update(1)
            if progress is not None:
                progress(i + 1, n)
        bar.close()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        try:
            writer.close()
        except Exception:
            pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return n


__all__ = ["DEFAULT_FPS", "DEFAULT_FRAMES", "camera_path", "look_at_c2w", "orbit_path", "sweep_ks", "write_sweep"]
