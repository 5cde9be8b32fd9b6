"""Vector quantization of the SH rest: one codebook per scene (k-means), one index per Gaussian.

The codebook is trained once on the whole scene (scikit-learn's MiniBatchKMeans, weighted by opacity so that
the entries go where Gaussians are visible), rounded onto the scalar SH grids of ``shN_bits`` (so it is stored
as small integers, exactly), and every Gaussian — of any prefix — takes the index of its nearest entry.
Assignment is a blocked float32 nearest-neighbour search in torch: the rows of a block never influence each
other and blocks start at multiples of :data:`ASSIGN_BLOCK`, so ``assign(x[:k]) == assign(x)[:k]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..scene.gaussians import Gaussians

ASSIGN_BLOCK = 4096  # rows per distance block (bounds the [block, K] temporary)
TRAIN_SAMPLE = 200_000  # k-means sees at most this many Gaussians (a uniform, seeded sample)
TRAIN_ITERS = 15  # MiniBatchKMeans passes (max_iter); it stops earlier when the centres settle


def codebook_size(requested: int, n: int) -> int:
    """Entries actually trained: at most ``requested`` and at most one per 32 Gaussians (>= 1): the codebook
    (~45 bytes per entry at SH degree 3) then stays below ~1.5 bytes per Gaussian of the stream."""
    return int(max(1, min(requested, n // 32)))


def train_codebook(g: Gaussians, cfg) -> np.ndarray:
    """[K, C, 3] int32 codebook codes on the ``cfg.shN_bits`` grids over ``cfg.shN_range`` (fitted first)."""
    from .quantize import _sh_params

    n, c = g.shN.shape[0], g.shN.shape[1]
    if c == 0 or n == 0:
        return np.zeros((1, c, 3), dtype=np.int32)
    x = torch.nan_to_num(g.shN.detach().to("cpu", torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    x = x.reshape(n, -1).numpy()
    w = torch.sigmoid(torch.nan_to_num(g.opacities.detach().to("cpu", torch.float64), nan=0.0)).numpy()
    rng = np.random.default_rng(0)
    if n > TRAIN_SAMPLE:
        pick = np.sort(rng.choice(n, TRAIN_SAMPLE, replace=False))
        x, w = x[pick], w[pick]
    k = codebook_size(cfg.sh_vq, len(x))
    if k >= len(np.unique(x, axis=0)):
        centres = np.unique(x, axis=0)
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, batch_size=max(4096, 2 * k), n_init=1, max_iter=TRAIN_ITERS,
                             init_size=min(len(x), max(3 * k, 8192)), random_state=0, reassignment_ratio=0.01)
        km.fit(x, sample_weight=w + 1e-3)
        centres = km.cluster_centers_
    L, r = _sh_params(cfg, c, "cpu")  # [C, 1] levels and ranges, float64
    codes = torch.from_numpy(np.asarray(centres, dtype=np.float64)).reshape(-1, c, 3)
    codes = (codes / r * L).round().clamp(-L, L) + L
    codes = np.unique(codes.to(torch.int32).numpy().reshape(len(codes), -1), axis=0).reshape(-1, c, 3)
    return np.ascontiguousarray(codes, dtype=np.int32)


@torch.no_grad()
def assign(x: Tensor, book: Tensor) -> Tensor:
    """[N] int64 index of the nearest row of ``book`` [K, C, 3] for every row of ``x`` [N, C, 3] (float32)."""
    n = x.shape[0]
    xf = x.reshape(n, -1).float()
    b = book.reshape(book.shape[0], -1).to(xf.device, torch.float32)
    half_norm = 0.5 * (b * b).sum(1)
    out = torch.empty(n, dtype=torch.int64, device=xf.device)
    for a in range(0, n, ASSIGN_BLOCK):
        blk = xf[a : a + ASSIGN_BLOCK]
        # argmin ||x - b||^2 = argmin (|b|^2 / 2 - x.b): a matrix product per block
        out[a : a + ASSIGN_BLOCK] = torch.addmm(half_norm, blk, b.T, alpha=-1.0).argmin(1)
    return out
