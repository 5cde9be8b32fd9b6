"""Transform coding of the SH rest (format version 4): one per-scene orthonormal basis, one uniform grid.

The SH-rest coefficients of a Gaussian (D = 3 x 3/8/15 numbers) are correlated: across colour channels, and
across bands in fitted scenes. A Karhunen-Loeve transform (the eigenvectors of their opacity-weighted covariance,
fitted once on the whole scene, so every prefix shares it) turns them into D uncorrelated numbers, most of them
small; each is coded on a uniform grid of step ``shN_step`` (a faint Gaussian's: ``shN_step * 2^drop``). The basis
is orthonormal, so the squared error of the SH rest is that of the grid, while most codes fall to 0 or +-1. The
very-high preset's stream (benchmarks/CODEC.md) against the per-coefficient scalar grids of version 3: 26 % smaller
on the SH3 scenes (whose band 3 is synthesised from bands 1-2), 9-13 % on the trained SH2 demo scenes, within
-0.6..+0.1 dB of their PSNR.

Exactness: the basis, the mean and the ranges are stored as integers in units of 2^-15 (:data:`SHIFT`), so the
decoder's ``codes @ basis`` multiplies and adds integers below 2^36: float64 computes it exactly in any order or
blocking, and decoding is bit-exact whatever the BLAS, the prefix length or the batch. Codes are ``q + L_j`` in
0..2 L_j with ``L_j = ceil(range_j / step)`` (at most 2^15 - 1), stored as 16-bit columns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError, shown
from ..scene.gaussians import Gaussians

SHIFT = 15  # basis, mean and ranges are integers in units of 2^-SHIFT
UNIT = 2.0**-SHIFT
MAX_CODE = (1 << 15) - 1  # largest |q|: codes 0..2L fit 16 bits
MAX_VALUE = (1 << 31) - 1  # int32 storage
FIT_SAMPLE = 1 << 18  # Gaussians the covariance is estimated on (a seeded uniform sample of larger scenes)
RANGE_MARGIN = 1.25  # ranges: the scene's largest |coefficient| per basis vector, with room for fine-tuning
DIMS = (0, 9, 24, 45)  # D per SH degree


def fit_basis(g: Gaussians) -> np.ndarray:
    """[D + 2, D] int32 basis, mean and ranges (units of 2^-15) of ``g``'s SH rest (see the module doc)."""
    n, k = g.shN.shape[0], g.shN.shape[1]
    d = 3 * k
    if d == 0:
        return np.zeros((2, 0), dtype=np.int32)
    x = torch.nan_to_num(g.shN.detach().to("cpu", torch.float64), nan=0.0, posinf=0.0, neginf=0.0).reshape(n, d)
    x = x.clamp(-MAX_VALUE * UNIT / 2, MAX_VALUE * UNIT / 2)
    w = torch.sigmoid(torch.nan_to_num(g.opacities.detach().to("cpu", torch.float64), nan=0.0)) + 1e-3
    xs, ws = x, w
    if n > FIT_SAMPLE:
        pick = torch.from_numpy(np.sort(np.random.default_rng(0).choice(n, FIT_SAMPLE, replace=False)))
        xs, ws = x[pick], w[pick]
    mu = (xs * ws[:, None]).sum(0) / ws.sum() if n else torch.zeros(d, dtype=torch.float64)
    xc = xs - mu
    cov = (xc * ws[:, None]).T @ xc / ws.sum() if n else torch.eye(d, dtype=torch.float64)
    _, vec = np.linalg.eigh(cov.numpy())
    vec = vec[:, ::-1].T.copy()  # rows: basis vectors, largest variance first
    vec *= np.where(vec[np.arange(d), np.abs(vec).argmax(1)] < 0, -1.0, 1.0)[:, None]  # a fixed sign per vector
    basis = np.clip(np.round(vec / UNIT), -MAX_CODE, MAX_CODE)
    mean = np.clip(np.round(mu.numpy() / UNIT), -MAX_VALUE, MAX_VALUE)
    y = (x - torch.from_numpy(mean * UNIT)) @ torch.from_numpy(basis * UNIT).T
    top = y.abs().amax(0).numpy() if n else np.zeros(d)
    rng = np.clip(np.ceil(top * RANGE_MARGIN / UNIT) + 1, 1, MAX_VALUE)
    return np.ascontiguousarray(np.vstack([basis, mean[None], rng[None]]), dtype=np.int32)


def check_basis(b: np.ndarray) -> None:
    """RaveError unless ``b`` is a [D + 2, D] integer array (D = 0, 9, 24 or 45) within the stored ranges."""
    if not isinstance(b, np.ndarray) or b.ndim != 2 or b.shape[1] not in DIMS or b.shape[0] != b.shape[1] + 2 \
            or b.dtype.kind not in "iu":
        raise RaveError(f"the SH transform must be a [D + 2, D] integer array with D in {DIMS[1:]}, got "
                        f"{getattr(b, 'shape', type(b).__name__)}")
    d = b.shape[1]
    if d and (np.abs(b[:d].astype(np.int64)).max() > MAX_CODE or int(b[d + 1].min()) < 1):
        raise RaveError("the SH transform's basis or ranges are out of range")


def levels(cfg) -> np.ndarray:
    """[D] float64 largest |code| L_j of every basis vector at the config's step."""
    b = cfg.sh_basis
    d = b.shape[1]
    return np.clip(np.ceil(b[d + 1].astype(np.float64) * UNIT / cfg.shN_step), 1, MAX_CODE)


def _steps(cfg, drop: Tensor | None, device) -> Tensor:
    """[N, 1] (or [1, 1]) float64 grid step of each row: shN_step * 2^drop (exact: a power-of-two scaling)."""
    from .quantize import kind_drop

    s = torch.full((1, 1), cfg.shN_step, dtype=torch.float64, device=device)
    if drop is None:
        return s
    return s * torch.pow(2.0, kind_drop(drop, 16, "sh").to(device, torch.float64))[:, None]


def forward(x: Tensor, cfg, drop: Tensor | None) -> Tensor:
    """[N, K, 3] int32 codes of SH rest ``x`` [N, K, 3] (float64, any device)."""
    n, k = x.shape[0], x.shape[1]
    b, dev = cfg.sh_basis, x.device
    d = 3 * k
    if b.shape[1] != d:
        raise RaveError(f"the SH transform has {b.shape[1] // 3} coefficients per Gaussian, the scene {k}")
    basis = torch.from_numpy(b[:d].astype(np.float64) * UNIT).to(dev)
    mean = torch.from_numpy(b[d].astype(np.float64) * UNIT).to(dev)
    L = torch.from_numpy(levels(cfg)).to(dev)
    y = (torch.nan_to_num(x, nan=0.0).reshape(n, d) - mean) @ basis.T
    y = torch.nan_to_num(y, nan=0.0)
    q = torch.minimum(torch.maximum((y / _steps(cfg, drop, dev)).round(), -L), L) + L
    return q.to(torch.int32).reshape(n, k, 3)


def inverse(codes: Tensor, cfg, drop: Tensor | None) -> Tensor:
    """[N, K, 3] float32 SH rest of ``codes`` [N, K, 3]: exact integer products, then two rounded operations."""
    n, k = codes.shape[0], codes.shape[1]
    b, dev = cfg.sh_basis, codes.device
    d = 3 * k
    L = torch.from_numpy(levels(cfg)).to(dev)
    q = codes.reshape(n, d).double() - L
    s = q @ torch.from_numpy(b[:d].astype(np.float64)).to(dev)  # integers < 2^36: exact
    x = s * (_steps(cfg, drop, dev) * UNIT) + torch.from_numpy(b[d].astype(np.float64) * UNIT).to(dev)
    return x.float().reshape(n, k, 3)


def basis_from_dict(v) -> np.ndarray:
    """Inverse of the ``sh_basis`` part of ``QuantConfig.to_dict`` (RaveError for anything malformed)."""
    if not isinstance(v, dict) or set(v) != {"shape", "values"}:
        raise RaveError("sh_basis must be a mapping with 'shape' and 'values'")
    shape, vals = v["shape"], v["values"]
    if (not isinstance(shape, list) or len(shape) != 2 or shape[1] not in DIMS or shape[0] != shape[1] + 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)):
        raise RaveError(f"sh_basis shape must be [D + 2, D] with D in {DIMS[1:]}, got {shown(shape)}")
    from .quantize import b64_array

    return b64_array(vals, "sh_basis", "values", "<i4", shape, 4 * 4 * 47 * 45)


def to_bytes(cfg) -> bytes:
    """Raw header blob of the transform: the step (float64) and the [D + 2, D] int32 array, little-endian."""
    return np.float64(cfg.shN_step).astype("<f8").tobytes() + np.asarray(cfg.sh_basis).astype("<i4").tobytes()


def raw_size(d: int) -> int:
    return 8 + 4 * (d + 2) * d


def from_bytes(raw: bytes, d: int) -> tuple[float, np.ndarray]:
    """Inverse of :func:`to_bytes` (the caller checks the length: :func:`raw_size`)."""
    step = float(np.frombuffer(raw[:8], dtype="<f8")[0])
    return step, np.frombuffer(raw[8:], dtype="<i4").astype(np.int32).reshape(d + 2, d)


__all__ = ["fit_basis", "check_basis", "levels", "forward", "inverse"]
