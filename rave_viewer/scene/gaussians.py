"""The Gaussian scene: gsplat-named parameter tensors with validation and cheap prefix/subset views."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterator

import torch
from torch import Tensor

from ..errors import RaveError

FIELDS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (0..3)."""
    return (degree + 1) ** 2


def sh_degree_from_bases(n_bases: int) -> int:
    """Inverse of :func:`num_sh_bases`; raises for counts that are not a square."""
    d = int(round(math.sqrt(n_bases))) - 1
    if d < 0 or (d + 1) ** 2 != n_bases or d > 3:
        raise RaveError(f"{n_bases} SH coefficients per channel is not a valid SH degree 0-3")
    return d


@dataclass
class Gaussians:
    """A 3DGS scene in gsplat's parameterisation (activations are applied at render time).

    Attributes:
        means: [N, 3] world positions.
        quats: [N, 4] rotations as quaternions (w, x, y, z), not necessarily normalised.
        scales: [N, 3] log-scales.
        opacities: [N] logit-opacities.
        sh0: [N, 1, 3] SH DC coefficients.
        shN: [N, K, 3] higher-order SH coefficients, K = (degree + 1)^2 - 1 (0 for degree 0).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def empty(cls, sh_degree: int = 0, dtype=torch.float32, device="cpu") -> "Gaussians":
        """A scene with no Gaussians (valid as a container, refused by :meth:`validate`)."""
        k = num_sh_bases(sh_degree) - 1
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        return cls(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 1, 3), z(0, k, 3))

    @classmethod
    def random(cls, n: int, sh_degree: int = 3, seed: int = 0, extent: float = 1.0) -> "Gaussians":
        """Random Gaussians in a cube of half-size ``extent`` (tests, benchmarks)."""
        g = torch.Generator().manual_seed(seed)
        k = num_sh_bases(sh_degree) - 1
        return cls(
            means=(torch.rand(n, 3, generator=g) * 2 - 1) * extent,
            quats=torch.randn(n, 4, generator=g),
            scales=torch.log(torch.rand(n, 3, generator=g) * 0.05 * extent + 0.005 * extent),
            opacities=torch.randn(n, generator=g),
            sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
            shN=torch.randn(n, k, 3, generator=g) * 0.1,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "Gaussians":
        """From a mapping with gsplat's keys (e.g. a trainer's ``splats`` ParameterDict)."""
        missing = [k for k in FIELDS if k not in d]
        if missing:
            raise RaveError(f"missing Gaussian parameters: {', '.join(missing)}")
        return cls(**{k: d[k] for k in FIELDS})

    # -- properties -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def colors(self) -> Tensor:
        """[N, (degree+1)^2, 3] all SH coefficients (DC first), as gsplat's ``colors`` argument."""
        return torch.cat([self.sh0, self.shN], dim=1)

    def items(self) -> Iterator[tuple[str, Tensor]]:
        for f in fields(self):
            yield f.name, getattr(self, f.name)

    def as_dict(self) -> dict[str, Tensor]:
        return dict(self.items())

    # -- transforms (all return new objects; prefix/subset of contiguous data are views) ----------
    def map(self, fn) -> "Gaussians":
        return Gaussians(**{k: fn(v) for k, v in self.items()})

    def prefix(self, k: int) -> "Gaussians":
        """The first ``k`` Gaussians (views, no copy)."""
        return self.map(lambda t: t[:k])

    def subset(self, index: Tensor) -> "Gaussians":
        """Gaussians at ``index`` (LongTensor [M] or bool mask [N])."""
        return self.map(lambda t: t[index])

    def to(self, device) -> "Gaussians":
        return self.map(lambda t: t.to(device))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self.map(lambda t: t.detach().clone())

    def float(self) -> "Gaussians":
        return self.map(lambda t: t.float())

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Truncate (or zero-pad) the SH coefficients to ``degree``."""
        k = num_sh_bases(degree) - 1
        shN = self.shN[:, :k]
        if shN.shape[1] < k:
            pad = shN.new_zeros(len(self), k - shN.shape[1], 3)
            shN = torch.cat([shN, pad], dim=1)
        return Gaussians(self.means, self.quats, self.scales, self.opacities, self.sh0, shN)

    @staticmethod
    def cat(parts: list["Gaussians"]) -> "Gaussians":
        return Gaussians(**{k: torch.cat([getattr(p, k) for p in parts]) for k in FIELDS})

    def equal(self, other: "Gaussians") -> bool:
        """Bit-exact equality of every tensor (shape, dtype and values)."""
        return all(
            a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
            for (_, a), (_, b) in zip(self.items(), other.items())
        )

    # -- validation -------------------------------------------------------------------------------
    def validate(self, source: str | None = None, allow_empty: bool = False) -> "Gaussians":
        """Check shapes, dtypes and finiteness; raise :class:`RaveError` naming ``source`` otherwise."""
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expect = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        for name, shape in expect.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise RaveError(f"Gaussian '{name}' has shape {tuple(t.shape)}, expected {shape}", source)
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise RaveError(f"Gaussian 'shN' has shape {tuple(self.shN.shape)}, expected ({n}, K, 3)", source)
        try:
            self.sh_degree
        except RaveError as e:
            raise RaveError(str(e), source) from None
        if n == 0 and not allow_empty:
            raise RaveError("the scene is empty (0 Gaussians)", source)
        for name, t in self.items():
            if not t.is_floating_point():
                raise RaveError(f"Gaussian '{name}' has dtype {t.dtype}, expected a float type", source)
            bad = ~torch.isfinite(t)
            if name == "opacities":  # +-inf logits are legal in PLYs (opacity exactly 0 or 1)
                bad = torch.isnan(t)
            if bad.any():
                i = int(bad.reshape(n, -1).any(dim=1).nonzero()[0, 0]) if n else 0
                raise RaveError(
                    f"Gaussian '{name}' has {int(bad.sum())} NaN/inf value(s) (first at Gaussian {i})", source
                )
        if (self.quats.norm(dim=-1) == 0).any():
            raise RaveError("some quaternions are all zero (no rotation defined)", source)
        return self
