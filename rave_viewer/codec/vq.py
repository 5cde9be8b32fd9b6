"""Vector quantization of the SH rest: one codebook per scene (k-means), one index per Gaussian.

The codebook is trained once per scene (weighted Lloyd k-means in torch on a seeded sample of the scene, weighted
by opacity so that the entries go where Gaussians are visible; k-means++-style seeding), rounded onto the scalar SH
grids of ``shN_bits`` (so it is stored as small integers, exactly), and every Gaussian — of any prefix — takes the
index of its nearest entry. (scikit-learn's MiniBatchKMeans on up to 200k Gaussians, used before, took 8-16 s on
the 131k SH3 scene for no better codebook: benchmarks/CODEC.md.)
Assignment is a blocked float32 nearest-neighbour search in torch: the rows of a block never influence each
other and blocks start at multiples of :data:`ASSIGN_BLOCK`, so ``assign(x[:k]) == assign(x)[:k]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..scene.gaussians import Gaussians

ASSIGN_BLOCK = 4096  # rows per distance block (bounds the [block, K] temporary)
SAMPLE_PER_ENTRY = 16  # k-means sees at most this many Gaussians per codebook entry (a uniform, seeded sample)
MIN_SAMPLE = 8192  # ... and at least this many (or the whole scene)
TRAIN_ITERS = 6  # Lloyd iterations (it stops earlier when no assignment changes); 12 iterations on 4x the sample: +-0.06 dB
SEED_POOL = 8  # k-means++-style seeding: each new centre is the farthest of this many weighted random candidates


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
    k = codebook_size(cfg.sh_vq, n)
    sample = max(MIN_SAMPLE, SAMPLE_PER_ENTRY * k)
    if n > sample:
        pick = np.sort(rng.choice(n, sample, replace=False))
        x, w = x[pick], w[pick]
    uniq = np.unique(x, axis=0)
    centres = uniq if k >= len(uniq) else kmeans(x, w + 1e-3, k, rng)
    L, r = _sh_params(cfg, c, "cpu")  # [C, 1] levels and ranges, float64
    codes = torch.from_numpy(np.asarray(centres, dtype=np.float64)).reshape(-1, c, 3)
    codes = (codes / r * L).round().clamp(-L, L) + L
    codes = np.unique(codes.to(torch.int32).numpy().reshape(len(codes), -1), axis=0).reshape(-1, c, 3)
    return np.ascontiguousarray(codes, dtype=np.int32)


@torch.no_grad()
def kmeans(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, iters: int = TRAIN_ITERS) -> np.ndarray:
    """[k, D] float32 centres of a weighted Lloyd k-means of ``x`` [N, D] (weights ``w`` [N] > 0), seeded by
    drawing centres with probability ~ weight x squared distance to the nearest centre so far (k-means++) from
    batches of candidates, so seeding costs ~k/``SEED_POOL`` distance passes instead of k."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    wt = torch.from_numpy(np.asarray(w, dtype=np.float64))
    n = len(xt)
    first = int(rng.choice(n, p=(wt / wt.sum()).numpy()))
    centres = [xt[first]]
    d2 = ((xt - xt[first]) ** 2).sum(1).double()
    while len(centres) < k:  # a batch of draws per pass over the data (the distances refresh after each batch)
        m = min(k - len(centres), max(1, k // SEED_POOL))
        p = (wt * d2).numpy()
        p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
        new = xt[torch.from_numpy(rng.choice(n, m, replace=False, p=p) if np.count_nonzero(p) >= m
                                  else rng.choice(n, m, replace=False))]
        centres.extend(new)
        d2 = torch.minimum(d2, torch.cdist(xt, new).pow(2).min(1).values.double())
    c = torch.stack(centres)
    label = None
    for _ in range(iters):
        new_label = assign(xt, c)
        if label is not None and torch.equal(new_label, label):
            break
        label = new_label
        mass = torch.zeros(k, dtype=torch.float64).index_add_(0, label, wt)
        acc = torch.zeros(k, xt.shape[1], dtype=torch.float64).index_add_(0, label, xt.double() * wt[:, None])
        keep = mass > 0  # an emptied centre stays where it was
        c[keep] = (acc[keep] / mass[keep, None]).float()
    return c.numpy()


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
        d = torch.addmm(half_norm, blk, b.T, alpha=-1.0)
        # numpy's argmin is ~10x torch's on the CPU; both return the first of equal minima
        out[a : a + ASSIGN_BLOCK] = torch.from_numpy(np.argmin(d.numpy(), 1)) if d.device.type == "cpu" else d.argmin(1)
    return out
