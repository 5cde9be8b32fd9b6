"""Browser rendering: the selection as viser splats, one scene node per block of the ranked order.

viser's WebGL renderer takes centres, 3x3 covariances, RGB and opacity per Gaussian (32 bytes each on the
wire) and sorts all splat nodes together, so a scene may be split into nodes freely. Every operating point
is a prefix of one ranked order, so :class:`BlockSplats` keeps one node per block (:func:`block_for`: about
N / 64 Gaussians, 1,024 to 16,384)
plus one node for the partial block at the end: raising the rate adds the new blocks (and a new tail),
lowering it hides the blocks past the new end (a message of a few bytes each; shown again for free). A rate
change therefore sends about (Gaussians added + one block) x 32 bytes, never the whole scene again.

viser's splats have no spherical harmonics: for SH degree > 0 the per-Gaussian colour is evaluated for the
direction from the camera (:func:`view_colours`, the same SH evaluation as the server renderer) when the camera
rests somewhere new (:meth:`BlockSplats.recolour`), so a still browser image matches the server's. viser
re-sends a node's whole buffer (32 bytes per Gaussian) for a colour change, so only the shown blocks whose 8-bit
colours (what the browser holds) moved beyond :func:`stale` are re-sent; a hidden block is checked when it is
shown again. Colours are evaluated for the shown prefix only, and for more when a rate change shows more.
Non-finite values (real PLYs carry ±inf and NaN) are made harmless here: such a Gaussian gets opacity 0 at the
scene centre (otherwise the browser's bounding sphere becomes NaN).
"""

from __future__ import annotations

import math
import threading
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..render.sh import sh_to_rgb
from ..scene.gaussians import Gaussians

SH_C0 = 0.28209479177387814
BLOCK = 16_384  # Gaussians per scene node at most (512 KB on the wire)
MIN_BLOCK = 1_024
NODES = 64  # about this many block nodes for the whole scene (so small scenes get small blocks)
FLOAT16_MAX = 65_000.0  # viser sends covariances as float16
BYTES_PER_SPLAT = 32  # viser's buffer layout: 8 uint32 per Gaussian
AUTO_BROWSER_GAUSSIANS = 300_000  # above this many Gaussians (CPU server), a tab starts in browser rendering
RECOLOUR_SHIFT = 0.02  # re-evaluate SH colours once the camera moved this share of the scene radius
RECOLOUR_MEAN_LEVELS = 0.5  # re-send a block's colours when they moved by more than this (of 255) on average,
RECOLOUR_PEAK_LEVELS = 8  # ... or when more than RECOLOUR_PEAK_SHARE of its Gaussians moved by more than this
RECOLOUR_PEAK_SHARE = 0.01


@dataclass
class SplatArrays:
    """Arrays for ``scene.add_gaussian_splats``: centers [N,3], covariances [N,3,3], rgbs [N,3], opacities [N,1]."""

    centers: np.ndarray
    covariances: np.ndarray
    rgbs: np.ndarray
    opacities: np.ndarray

    def prefix(self, k: int) -> "SplatArrays":
        return self.slice(0, k)

    def slice(self, a: int, b: int) -> "SplatArrays":
        return SplatArrays(self.centers[a:b], self.covariances[a:b], self.rgbs[a:b], self.opacities[a:b])


def block_for(n: int) -> int:
    """Gaussians per node for a scene of ``n``: a power of two near n / NODES, within MIN_BLOCK..BLOCK."""
    if n <= 0:
        return MIN_BLOCK
    return int(min(BLOCK, max(MIN_BLOCK, 2 ** round(math.log2(max(n / NODES, 1))))))


def splat_arrays(g: Gaussians) -> SplatArrays:
    """Activated parameters of ``g``: Sigma = R S S^T R^T, rgb = 0.5 + C0 * SH_DC (clamped), sigmoid opacity;
    a Gaussian with any non-finite value becomes invisible (opacity 0, at the finite centre, tiny)."""
    with torch.no_grad():
        q = torch.nn.functional.normalize(g.quats.float(), dim=-1)
        w, x, y, z = q.unbind(-1)
        R = torch.stack(
            [
                1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
            ],
            dim=-1,
        ).reshape(-1, 3, 3)  # fmt: skip
        M = R * torch.exp(g.scales.float())[:, None, :]
        cov = M @ M.transpose(1, 2)
        rgb = (0.5 + SH_C0 * g.sh0[:, 0, :].float()).clamp(0, 1)
        op = torch.sigmoid(g.opacities.float())[:, None]
        means = g.means.float().clone()
        bad = ~(torch.isfinite(means).all(1) & torch.isfinite(cov).flatten(1).all(1) & torch.isfinite(op[:, 0])
                & (cov.flatten(1).abs().amax(1) < FLOAT16_MAX))  # fmt: skip
        if bool(bad.any()):
            ok = ~bad
            centre = means[ok].median(dim=0).values if bool(ok.any()) else torch.zeros(3)
            means[bad] = centre
            cov[bad] = torch.eye(3) * 1e-8
            op[bad] = 0.0
        rgb = torch.nan_to_num(rgb, nan=0.0)
    return SplatArrays(means.numpy(), cov.numpy(), rgb.numpy(), op.numpy())


def to_u8(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] colours in [0, 1] as the 8 bits viser sends (its own conversion: x 255, truncated)."""
    return np.clip(np.asarray(rgb, np.float32) * 255.0, 0, 255).astype(np.uint8)


def stale(held: np.ndarray, new: np.ndarray) -> bool:
    """Whether a block's 8-bit colours ``held`` [n, 3] (in the browser) are too far from ``new`` to keep."""
    if not len(held):
        return False
    d = np.abs(new.astype(np.int16) - held.astype(np.int16))
    return bool(d.mean() > RECOLOUR_MEAN_LEVELS or (d.max(1) > RECOLOUR_PEAK_LEVELS).mean() > RECOLOUR_PEAK_SHARE)


def view_colours(g: Gaussians, campos: np.ndarray) -> np.ndarray:
    """[N, 3] RGB in [0, 1] of every Gaussian seen from ``campos`` [3] (SH evaluated as the server renders)."""
    with torch.no_grad():
        rgb = sh_to_rgb(g.colors.float(), g.means.float(), torch.as_tensor(campos, dtype=torch.float32)[None],
                        g.sh_degree)[0]  # fmt: skip
        return torch.nan_to_num(rgb.clamp(0, 1), nan=0.0).numpy()


class BlockSplats:
    """The browser's splats of one tab: full blocks of the ranked order as nodes, plus a tail node."""

    def __init__(self, scene, arrays: SplatArrays, gaussians: Gaussians | None = None, block: int = BLOCK,
                 name: str = "/rave/splats", radius: float = 1.0):  # fmt: skip
        """``gaussians`` (SH degree > 0): view-dependent colour; ``radius``: the scene's, for re-colouring."""
        self.scene, self.arrays, self.block, self.name = scene, arrays, int(block), name
        self.sh = gaussians if gaussians is not None and gaussians.sh_degree > 0 else None
        self.radius = float(radius)
        self.nodes: dict[int, object] = {}  # block index -> handle (full blocks only)
        self.visible: set[int] = set()
        self.tail = None
        self.tail_key: tuple[int, int] | None = None  # (first, end) Gaussian of the tail node
        self.k: int | None = None
        self.bytes_sent = 0  # splat payload bytes sent so far (32 per Gaussian)
        self.recolour_bytes = 0  # of which the last recolour sent
        self.campos: np.ndarray | None = None  # where the colours were evaluated from (SH scenes)
        self._colours: np.ndarray | None = None  # [m, 3] uint8 colours of the first m Gaussians from campos
        self._held = to_u8(arrays.rgbs)  # [N, 3] uint8: what the browser holds (or will get) per Gaussian

    def _evaluate(self, k: int) -> None:
        """Colours from ``campos`` for at least the first ``k`` Gaussians (SH scenes)."""
        have = 0 if self._colours is None else len(self._colours)
        if self.sh is None or self.campos is None or k <= have:
            return
        part = self.sh.map(lambda t: t[have:k])
        new = to_u8(view_colours(part, self.campos))
        self._colours = new if self._colours is None else np.concatenate([self._colours, new])

    def _rgbs(self, a: int, b: int) -> np.ndarray:
        if self._colours is not None:
            self._evaluate(b)
            self._held[a:b] = self._colours[a:b]
        return self._held[a:b]

    def _add(self, name: str, a: int, b: int):
        s = self.arrays.slice(a, b)
        self.bytes_sent += (b - a) * BYTES_PER_SPLAT
        return self.scene.add_gaussian_splats(name, s.centers, s.covariances, self._rgbs(a, b), s.opacities)

    def _refresh(self, handle, a: int, b: int, force: bool = False) -> int:
        """Re-send a node's colours if the browser's are stale (or ``force``); returns the bytes sent."""
        if self._colours is None:
            return 0
        self._evaluate(b)
        if not force and not stale(self._held[a:b], self._colours[a:b]):
            return 0
        handle.rgbs = self._rgbs(a, b)
        self.bytes_sent += (b - a) * BYTES_PER_SPLAT
        return (b - a) * BYTES_PER_SPLAT

    def show(self, k: int) -> None:
        """Show the first ``k`` Gaussians, sending only what the browser does not hold yet."""
        k = int(k)
        full = k // self.block
        for j in range(full):
            if j not in self.nodes:
                self.nodes[j] = self._add(f"{self.name}/block{j:05d}", j * self.block, (j + 1) * self.block)
                self.visible.add(j)
            elif j not in self.visible:
                self._refresh(self.nodes[j], j * self.block, (j + 1) * self.block)  # (hidden during a recolour)
                self.nodes[j].visible = True
                self.visible.add(j)
        for j in sorted(self.visible):
            if j >= full:
                self.nodes[j].visible = False
                self.visible.discard(j)
        key = (full * self.block, k)
        if key != self.tail_key:
            if self.tail is not None:
                self.tail.remove()
                self.tail = None
            if k > full * self.block:
                self.tail = self._add(f"{self.name}/tail", *key)
            self.tail_key = key
        self.k = k

    def recolour(self, campos: np.ndarray, force: bool = False) -> bool:
        """Re-evaluate SH colours for a camera at ``campos`` (SH scenes, camera moved enough) and re-send the shown
        blocks whose colours went stale (:func:`stale`; ``force``: all of them); True if evaluated."""
        if self.sh is None:
            return False
        campos = np.asarray(campos, dtype=np.float64)
        if not force and self.campos is not None and np.linalg.norm(campos - self.campos) < RECOLOUR_SHIFT * self.radius:
            return False
        self.campos, self._colours = campos, np.zeros((0, 3), np.uint8)  # (evaluated on demand, from 0 on)
        self._evaluate(self.k or 0)
        sent = 0
        for j in sorted(self.visible):
            sent += self._refresh(self.nodes[j], j * self.block, (j + 1) * self.block, force)
        if self.tail is not None:
            sent += self._refresh(self.tail, *self.tail_key, force)
        self.recolour_bytes = sent
        return True

    def remove(self) -> None:
        for h in self.nodes.values():
            h.remove()
        if self.tail is not None:
            self.tail.remove()
        self.nodes.clear()
        self.visible.clear()
        self.tail, self.tail_key, self.k = None, None, None


class LatestWorker:
    """A thread running submitted jobs one at a time; a job submitted while another waits replaces it."""

    def __init__(self, name: str = "rave-view-worker"):
        self._cv = threading.Condition()
        self._job: Callable[[], None] | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cv:
            self._job = job
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job, self._job = self._job, None
            try:
                job()
            except Exception:  # a failed send must not kill the worker
                traceback.print_exc()


__all__ = [
    "AUTO_BROWSER_GAUSSIANS", "BLOCK", "BYTES_PER_SPLAT", "BlockSplats", "block_for", "LatestWorker", "SplatArrays",
    "splat_arrays", "stale", "to_u8", "view_colours",
]  # fmt: skip
