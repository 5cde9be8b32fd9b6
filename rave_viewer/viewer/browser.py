"""Browser rendering: the selected Gaussians as viser splats, sent by a worker that only sends the newest one.

viser's WebGL splat renderer takes centres, 3x3 covariances, RGB and opacity per Gaussian (SH degree 0: the
browser shows view-independent colour). Arrays are computed once for the whole model; a selection is a prefix.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..scene.gaussians import Gaussians

SH_C0 = 0.28209479177387814


@dataclass
class SplatArrays:
    """Arrays for ``scene.add_gaussian_splats``: centers [N,3], covariances [N,3,3], rgbs [N,3], opacities [N,1]."""

    centers: np.ndarray
    covariances: np.ndarray
    rgbs: np.ndarray
    opacities: np.ndarray

    def prefix(self, k: int) -> "SplatArrays":
        return SplatArrays(self.centers[:k], self.covariances[:k], self.rgbs[:k], self.opacities[:k])


def splat_arrays(g: Gaussians) -> SplatArrays:
    """Activated parameters of ``g``: Sigma = R S S^T R^T, rgb = 0.5 + C0 * SH_DC (clamped), sigmoid opacity."""
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
    return SplatArrays(g.means.float().numpy(), cov.numpy(), rgb.numpy(), op.numpy())


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


__all__ = ["LatestWorker", "SplatArrays", "splat_arrays"]
