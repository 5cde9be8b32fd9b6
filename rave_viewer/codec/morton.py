"""3D Morton (Z-order) codes of grid coordinates, so chunks store spatial neighbours next to each other."""

from __future__ import annotations

import numpy as np

_M = np.uint64


def _split3(v: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of ``v`` so that bit i lands on bit 3i."""
    x = v.astype(np.uint64) & _M(0x1FFFFF)
    x = (x | (x << _M(32))) & _M(0x1F00000000FFFF)
    x = (x | (x << _M(16))) & _M(0x1F0000FF0000FF)
    x = (x | (x << _M(8))) & _M(0x100F00F00F00F00F)
    x = (x | (x << _M(4))) & _M(0x10C30C30C30C30C3)
    x = (x | (x << _M(2))) & _M(0x1249249249249249)
    return x


def _compact3(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_split3`: gather bits 0, 3, 6, ... into the low 21 bits."""
    x = x & _M(0x1249249249249249)
    x = (x ^ (x >> _M(2))) & _M(0x10C30C30C30C30C3)
    x = (x ^ (x >> _M(4))) & _M(0x100F00F00F00F00F)
    x = (x ^ (x >> _M(8))) & _M(0x1F0000FF0000FF)
    x = (x ^ (x >> _M(16))) & _M(0x1F00000000FFFF)
    x = (x ^ (x >> _M(32))) & _M(0x1FFFFF)
    return x


def morton_encode(xyz: np.ndarray) -> np.ndarray:
    """[N] uint64 codes of [N, 3] non-negative integer coordinates below 2^21 (x in the lowest bit)."""
    xyz = np.asarray(xyz)
    return _split3(xyz[:, 0]) | (_split3(xyz[:, 1]) << _M(1)) | (_split3(xyz[:, 2]) << _M(2))


def morton_decode(codes: np.ndarray) -> np.ndarray:
    """[N, 3] int64 coordinates of [N] uint64 Morton codes."""
    c = np.asarray(codes, dtype=np.uint64)
    return np.stack([_compact3(c), _compact3(c >> _M(1)), _compact3(c >> _M(2))], axis=1).astype(np.int64)
