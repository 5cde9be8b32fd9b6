"""Scalar quantization of Gaussians, shared bit-exactly by the .rave codec and quantization-aware fine-tuning.

Every attribute is mapped to small unsigned integers with a configurable bit depth (:class:`QuantConfig`):

========== ======================================================================================
attribute  mapping (``b`` = its bit depth, ``M = 2^b - 1``)
========== ======================================================================================
means      fixed-point grid over the scene ``bounds`` [2,3] (fixed for a whole scene, stored in the
           .rave header): ``q = round((x - lo) / (hi - lo) * M)``.
quats      normalised, "smallest three": the index of the largest |component| (2 bits, that
           component made positive, which fixes the q/-q sign ambiguity), and the other three,
           which lie in [-1/sqrt2, 1/sqrt2], on a uniform ``b``-bit grid. The decoder rebuilds the
           largest as sqrt(1 - sum of squares) and returns a unit quaternion (w, x, y, z).
scales     log-scales on a uniform grid over ``[ref + scale_min, ref + scale_max]`` where
           ``ref = ln 2 * e`` and ``2^e`` is the smallest power of two >= the largest side of the
           bounds, so the grid follows the scene's size; values outside are clamped.
opacities  quantized in sigmoid (alpha) space, where the rendering error is linear in the quantization
           error (a uniform logit grid wastes levels on saturated values): ``q = floor(a * 2^b)``,
           decoded at the bin centre ``a = (q + 0.5) / 2^b`` and returned as a finite logit. +-inf
           logits (opacity exactly 0 or 1) land in the extreme bins; NaN never reaches the output.
sh0        symmetric mid-tread grid over [-sh0_range, sh0_range] (zero is a level).
shN        symmetric mid-tread grid per SH band (degree 1, 2, 3) with ``shN_bits[band]`` bits over
           ``[-shN_range[band], shN_range[band]]``: small coefficients become exactly 0, which the
           entropy coder stores in a fraction of a bit. Values outside the range are clamped.
========== ======================================================================================

:func:`dequantize` uses only exactly rounded float64 arithmetic (or a table built from the bit depth), so
the same integers always give the same float32 values whatever the tensor length or layout: the decoder
reproduces ``dequantize(quantize(g, cfg, bounds))`` bit for bit. :func:`fake_quantize` returns those same
values with an identity (straight-through) gradient, for quantization-aware fine-tuning.

Defaults: positions 14 bits/axis, rotations 3 x 6 bits (+ 2-bit index), log-scales 6 bits over
[-16, +1] + ln(scene size), opacity 6 bits, SH DC 8 bits over +-3 (step 0.024), SH rest 4 bits per band over
ranges FITTED to the scene (``shN_range=None``: per band, the 99.9th percentile of |coefficient|, see
:meth:`QuantConfig.fit`; fitted once on the whole scene and stored in the .rave header / checkpoint, so the grid
never depends on the prefix). A trained scene's SH rest is small (|x| < ~0.2): a fixed +-1 grid at these bit
depths rounds most of it to 0 (-1.9 dB on the demo scene). Measured on trained_scenes/demo_objects.ply (SH
degree 2, 164 B/Gaussian as PLY), renders of its 12 test views vs ground truth: 13.2 B/Gaussian (1/12.4 of the
PLY) for -0.17 dB PSNR (format version 1 figures).

Format version 2 adds, per config: ``fit_ranges`` (the log-scale range from its 0.1 % quantile to its largest
value and the SH DC range at the 99.99 % quantile of |DC|, fitted once like the SH ranges) and ``sh_vq`` (the SH
rest of a Gaussian as one index into a per-scene k-means codebook, vq.py; the codebook is part of the fitted
config, so checkpoints, fake_quantize and the stream share it). The ``rave encode --quality`` presets
(presets.py) use both; ``QuantConfig()`` itself keeps the version-1 defaults above. Format version 4 adds
``shN_step``: the SH rest in a per-scene orthonormal basis on one uniform grid (transform.py; the very-high and
lossless-ish presets). benchmarks/CODEC.md has the comparison with SPZ and SOG.
"""

from __future__ import annotations

import math
import base64
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError, shown
from ..scene.gaussians import Gaussians, num_sh_bases

MAX_POS_BITS = 21  # 3 * 21 = 63-bit Morton codes fit an int64
MAX_BITS = 16
MAX_RANGE = 1e4  # sane bound on every range: decoded values always fit float32
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
SH_FIT_QUANTILE = 0.999  # fitted SH-rest range: this quantile of |coefficient| per band (rarer outliers clamp)
SH_FIT_MIN_RANGE = 2.0**-10
#: Allowed bit depths: positions 1-21 (63-bit Morton codes), rotations and SH >= 2 (a sign and a magnitude),
#: everything <= 16 (codes are stored in at most two bytes).
BIT_RANGES = {"pos_bits": (1, MAX_POS_BITS), "rot_bits": (2, MAX_BITS), "scale_bits": (1, MAX_BITS),
              "opacity_bits": (1, MAX_BITS), "sh0_bits": (2, MAX_BITS), "shN_bits": (2, MAX_BITS)}
_BIT_FIELDS = ("pos_bits", "rot_bits", "scale_bits", "opacity_bits", "sh0_bits")
MAX_CODEBOOK = 1 << 16  # SH-rest codebook entries: indices fit two bytes
MIN_SH_STEP, MAX_SH_STEP = 2.0**-16, 1.0  # the SH transform's grid step (SH units): finer is lossless, coarser is 0
SCALE_FIT_QUANTILE = 0.001  # fitted log-scale range: from this quantile (tinier ones clamp up) to the largest
SH0_FIT_QUANTILE = 0.9999  # fitted SH DC range: this quantile of |DC| (rarer outliers clamp)
MAX_FAINT_BITS = 8
#: bits a faint Gaussian keeps at least, per attribute (the smallest grid that still codes a sign for SH/rotation)
FAINT_MIN_BITS = {"pos": 1, "rot": 2, "scale": 1, "sh": 2}
#: most bits a faint Gaussian's grid of each kind loses (log-scales: none, a coarser log-scale grid makes large faint
#: Gaussians grow or shrink by whole factors: -20 dB on the SH0 scene)
FAINT_CAP = {"pos": MAX_FAINT_BITS, "rot": MAX_FAINT_BITS, "scale": 0, "sh": MAX_FAINT_BITS}


def kind_drop(drop, bits: int, kind: str):
    """Bits a grid of ``kind`` with ``bits`` bits loses, per row of ``drop`` (torch or numpy integers)."""
    return drop.clip(0, max(min(FAINT_CAP[kind], bits - FAINT_MIN_BITS[kind]), 0))


def _is_real(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_bits(name: str, b: object) -> None:
    lo, hi = BIT_RANGES[name]
    if not isinstance(b, (int, np.integer)) or isinstance(b, (bool, np.bool_)) or not lo <= b <= hi:
        raise RaveError(f"{name} must be an integer {lo}..{hi}, got {type(b).__name__} ({shown(b)})")


def _triple(name: str, v: object) -> tuple:
    if not isinstance(v, (tuple, list)) or len(v) != 3:
        raise RaveError(f"{name} needs one value per SH band (degrees 1, 2, 3), got {shown(v)}")
    return tuple(v)


@dataclass(eq=False)
class QuantConfig:
    """Bit depths and value ranges of the quantizer (defaults documented in the module docstring).

    Attributes:
        pos_bits: bits per position axis over the scene bounds (1-21; every bit depth is an int, see
            ``BIT_RANGES``).
        rot_bits: bits per stored quaternion component ("smallest three"; plus 2 bits for the index).
        scale_bits: bits per log-scale.
        scale_min, scale_max: log-scale range relative to ln(size of the scene bounds) (see module doc).
        opacity_bits: bits of the opacity in sigmoid space.
        sh0_bits, sh0_range: bits and symmetric range of the SH DC coefficients.
        shN_bits, shN_range: bits and symmetric range of the SH coefficients of degree 1, 2 and 3 (with
            ``sh_vq``: the precision of the codebook entries).
        faint_bits: 0 = every Gaussian on the full grids; F > 0 = a Gaussian of quantized opacity alpha has its
            position, rotation, log-scale and SH grids coarsened by ``min(F, floor(-log2 alpha))`` bits (format
            version 3; :func:`faint_drop`): its share of the rendered error scales with alpha.
        sh_vq: 0 = every SH-rest coefficient scalar-quantized; K > 0 = the SH rest of a Gaussian is one index
            into a codebook of (at most) K entries, trained by k-means on the whole scene (format version 2).
        fit_ranges: fit the log-scale range and the SH DC range to the scene (:meth:`fit`) instead of using
            ``scale_min``/``scale_max``/``sh0_range`` as given (the fitted values replace them).
        sh_codebook: the fitted codebook, [K, num SH-rest coefficients, 3] int32 codes on the ``shN_bits``
            grids (None until :meth:`fit`); stored once in the .rave header and in checkpoints.
        shN_step: 0 = the SH rest on the ``shN_bits`` grids (or the codebook); S > 0 = the SH rest transform-coded
            (format version 4, transform.py): its coefficients in a per-scene orthonormal basis, each on one
            uniform grid of step S (in SH units; a faint Gaussian's step is S * 2^bits dropped).
        sh_basis: the fitted transform, [D + 2, D] int32 in units of 2^-15 (D = 3 x SH-rest coefficients): rows
            0..D-1 the basis vectors, row D the mean, row D + 1 the largest |coefficient| per basis vector (None
            until :meth:`fit`); stored once in the .rave header and in checkpoints.
    """

    pos_bits: int = 14
    rot_bits: int = 6
    scale_bits: int = 6
    scale_min: float = -16.0
    scale_max: float = 1.0
    opacity_bits: int = 6
    sh0_bits: int = 8
    sh0_range: float = 3.0
    shN_bits: tuple[int, int, int] = (4, 4, 4)
    shN_range: tuple[float, float, float] | None = None
    sh_vq: int = 0
    fit_ranges: bool = False
    faint_bits: int = 0
    sh_codebook: np.ndarray | None = field(default=None, repr=False)
    shN_step: float = 0.0
    sh_basis: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if isinstance(self.sh_codebook, Tensor):
            self.sh_codebook = self.sh_codebook.detach().cpu().numpy()
        if isinstance(self.sh_basis, Tensor):
            self.sh_basis = self.sh_basis.detach().cpu().numpy()
        self.validate()  # before any conversion: int(14.5) or float("3") would hide a wrong value
        for name in _BIT_FIELDS:
            setattr(self, name, int(getattr(self, name)))
        for name in ("scale_min", "scale_max", "sh0_range"):
            setattr(self, name, float(getattr(self, name)))
        self.shN_bits = tuple(int(b) for b in self.shN_bits)
        if self.shN_range is not None:
            self.shN_range = tuple(float(r) for r in self.shN_range)
        self.sh_vq = int(self.sh_vq)
        self.faint_bits = int(self.faint_bits)
        if self.sh_codebook is not None:
            self.sh_codebook = np.ascontiguousarray(self.sh_codebook, dtype=np.int32)
            self.sh_codebook.setflags(write=False)
        self.shN_step = float(self.shN_step)
        if self.sh_basis is not None:
            self.sh_basis = np.ascontiguousarray(self.sh_basis, dtype=np.int32)
            self.sh_basis.setflags(write=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantConfig):
            return NotImplemented
        def same(a, b) -> bool:
            return (a is None and b is None) or (a is not None and b is not None and a.shape == b.shape
                                                 and bool((a == b).all()))

        arrays = ("sh_codebook", "sh_basis")
        plain = [f.name for f in fields(self) if f.name not in arrays]
        return all(same(getattr(self, k), getattr(other, k)) for k in arrays) and all(
            getattr(self, k) == getattr(other, k) for k in plain)

    __hash__ = None  # mutable

    @property
    def fitted(self) -> bool:
        """True when every range (and the codebook, with ``sh_vq``) is fixed: the grid no longer depends on the
        data."""
        return (self.shN_range is not None and not self.fit_ranges and (not self.sh_vq or self.sh_codebook is not None)
                and (not self.shN_step or self.sh_basis is not None))

    @property
    def format_version(self) -> int:
        """The lowest .rave format version that can hold this configuration (2 for a codebook, 3 for faint
        classes, 4 for the SH transform)."""
        return 4 if self.shN_step else 3 if self.faint_bits else 2 if self.sh_vq else 1

    def fit(self, g: Gaussians, bounds: Tensor | None = None) -> "QuantConfig":
        """This config with ``shN_range`` (when None) fitted to ``g``: per SH band, the 99.9th percentile of
        ``|coefficient|`` over the finite values (clamped to [2^-10, MAX_RANGE]; 1.0 for bands ``g`` lacks).

        Call it once on the whole scene (the encoder does; so does the RAVE build before fine-tuning) so the
        grid is fixed for every prefix. A config that is already fitted is returned unchanged.
        """
        if self.fitted:
            return self
        cfg = self
        if cfg.shN_range is None:
            sh = g.shN.detach().to("cpu", torch.float64).numpy()
            ranges = []
            for band in (1, 2, 3):
                x = np.abs(sh[:, band * band - 1 : (band + 1) * (band + 1) - 1]).reshape(-1)
                x = x[np.isfinite(x)]
                r = float(np.quantile(x, SH_FIT_QUANTILE)) if x.size else 1.0
                ranges.append(float(np.float32(min(max(r, SH_FIT_MIN_RANGE), MAX_RANGE))))
            cfg = replace(cfg, shN_range=tuple(ranges))
        if cfg.fit_ranges:
            cfg = _fit_scale_and_dc(cfg, g, bounds)
        if cfg.sh_vq and cfg.sh_codebook is None:
            from .vq import train_codebook

            book = train_codebook(g, cfg)
            cfg = replace(cfg, sh_vq=int(book.shape[0]), sh_codebook=book)  # sh_vq: the entries trained
        if cfg.shN_step and cfg.sh_basis is None:
            from .transform import fit_basis

            cfg = replace(cfg, sh_basis=fit_basis(g))
        return cfg

    def validate(self) -> "QuantConfig":
        """Raise :class:`RaveError` for bit depths or ranges the codec cannot represent.

        Bit depths must be integers (not bools, floats or strings) in ``BIT_RANGES``; ranges real finite numbers
        within +-MAX_RANGE; ``shN_bits`` three bit depths, ``shN_range`` None or three ranges.
        """
        for name in _BIT_FIELDS:
            _check_bits(name, getattr(self, name))
        shN_bits = _triple("shN_bits", self.shN_bits)
        for b in shN_bits:
            _check_bits("shN_bits", b)
        shN_range = (1.0, 1.0, 1.0) if self.shN_range is None else _triple("shN_range", self.shN_range)
        named = [("scale_min", self.scale_min), ("scale_max", self.scale_max), ("sh0_range", self.sh0_range),
                 *(("shN_range", r) for r in shN_range)]
        for name, r in named:
            if not _is_real(r):
                raise RaveError(f"{name} must be a number, got {type(r).__name__} ({shown(r)})")
            if not abs(r) <= MAX_RANGE:  # also NaN, inf and ints too large for a float
                raise RaveError(f"quantization ranges must be finite and within +-{MAX_RANGE:g}, got {name} {shown(r)}")
        if self.sh0_range <= 0 or any(r <= 0 for r in shN_range):
            raise RaveError("SH ranges must be > 0")
        if not self.scale_min < self.scale_max:
            raise RaveError(f"scale_min ({self.scale_min}) must be < scale_max ({self.scale_max})")
        if not isinstance(self.sh_vq, (int, np.integer)) or isinstance(self.sh_vq, (bool, np.bool_)) or not (
                0 <= self.sh_vq <= MAX_CODEBOOK):
            raise RaveError(f"sh_vq must be an integer 0..{MAX_CODEBOOK} (codebook size), got {shown(self.sh_vq)}")
        fb = self.faint_bits
        if not isinstance(fb, (int, np.integer)) or isinstance(fb, (bool, np.bool_)) or not 0 <= fb <= MAX_FAINT_BITS:
            raise RaveError(f"faint_bits must be an integer 0..{MAX_FAINT_BITS}, got {shown(fb)}")
        if not isinstance(self.fit_ranges, (bool, np.bool_)):
            raise RaveError(f"fit_ranges must be true or false, got {shown(self.fit_ranges)}")
        st = self.shN_step
        if not _is_real(st) or not (st == 0 or MIN_SH_STEP <= st <= MAX_SH_STEP):
            raise RaveError(f"shN_step must be 0 or a number {MIN_SH_STEP:g}..{MAX_SH_STEP:g}, got {shown(st)}")
        if st and self.sh_vq:
            raise RaveError("the SH rest is either a codebook (sh_vq) or transform-coded (shN_step), not both")
        if self.sh_basis is not None:
            from .transform import check_basis

            if not st:
                raise RaveError("an SH transform basis needs shN_step > 0")
            check_basis(self.sh_basis)
        cb = self.sh_codebook
        if cb is not None:
            if not self.sh_vq:
                raise RaveError("an SH codebook needs sh_vq > 0")
            if not isinstance(cb, np.ndarray) or cb.ndim != 3 or cb.shape[2] != 3 or cb.shape[1] not in (0, 3, 8, 15) \
                    or not 1 <= cb.shape[0] <= self.sh_vq or cb.dtype.kind not in "iu":
                raise RaveError(f"the SH codebook must be [1..{self.sh_vq}, 0/3/8/15, 3] integer codes, got "
                                f"{getattr(cb, 'shape', type(cb).__name__)}")
            if cb.size:
                hi = _mid_tread_levels_vec(np.array(shN_bits)[_sh_band_of_coeff(cb.shape[1]) - 1]) * 2
                if int(cb.min()) < 0 or (cb.max(axis=(0, 2)) > hi).any():
                    raise RaveError("SH codebook codes are out of range for their bit depths")
        return self

    def to_dict(self) -> dict:
        """JSON-safe dict; the codebook as {"shape": [K, C, 3], "codes": base64 of little-endian uint16}, the SH
        transform as {"shape": [D + 2, D], "values": base64 of little-endian int32} (both keys only with it)."""
        d = asdict(replace(self, sh_codebook=None, sh_basis=None))
        d["shN_bits"] = list(self.shN_bits)
        d["shN_range"] = list(self.shN_range) if self.shN_range is not None else None
        cb = self.sh_codebook
        d["sh_codebook"] = None if cb is None else {
            "shape": list(cb.shape), "codes": base64.b64encode(cb.astype("<u2").tobytes()).decode("ascii")}
        sb = self.sh_basis
        if not self.shN_step:  # left out, so configs without the transform read as before (older readers too)
            del d["shN_step"], d["sh_basis"]
        else:
            d["sh_basis"] = None if sb is None else {
                "shape": list(sb.shape), "values": base64.b64encode(sb.astype("<i4").tobytes()).decode("ascii")}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        """Inverse of :meth:`to_dict`; unknown keys are refused (they mean a newer config)."""
        if not isinstance(d, dict):
            raise RaveError(f"quantization settings must be a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(k[:40] if isinstance(k, str) else shown(k) for k in d if k not in names)
        if unknown:
            raise RaveError(f"unknown quantization settings: {', '.join(unknown)}")
        cb = d.get("sh_codebook")
        if cb is not None:
            d = {**d, "sh_codebook": _codebook_from_dict(cb)}
        if d.get("sh_basis") is not None:
            from .transform import basis_from_dict

            d = {**d, "sh_basis": basis_from_dict(d["sh_basis"])}
        return cls(**d)  # every value is checked (RaveError) before it is converted

    def raw_bytes_per_gaussian(self, sh_degree: int) -> int:
        """Bytes one Gaussian takes in a chunk before entropy coding (see container.py)."""
        w = lambda b: 1 if b <= 8 else 2  # noqa: E731
        n = (3 * self.pos_bits + 7) // 8 + 1 + 3 * w(self.rot_bits) + 3 * w(self.scale_bits)
        n += w(self.opacity_bits) + 3 * w(self.sh0_bits)
        if self.sh_vq:
            return n + (0 if sh_degree == 0 else (1 if self.sh_vq <= 256 else 2))
        if self.shN_step:
            return n + 2 * 3 * (num_sh_bases(sh_degree) - 1)
        for band in range(1, sh_degree + 1):
            n += (2 * band + 1) * 3 * w(self.shN_bits[band - 1])
        return n


def _codebook_from_dict(cb) -> np.ndarray:
    """Inverse of the codebook part of :meth:`QuantConfig.to_dict` (RaveError for anything malformed)."""
    if not isinstance(cb, dict) or set(cb) != {"shape", "codes"}:
        raise RaveError("sh_codebook must be a mapping with 'shape' and 'codes'")
    shape, codes = cb["shape"], cb["codes"]
    if (not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   and 0 <= v <= MAX_CODEBOOK for v in shape)):
        raise RaveError(f"sh_codebook shape must be three integers, got {shown(shape)}")
    return b64_array(codes, "sh_codebook", "codes", "<u2", shape, 4 * MAX_CODEBOOK * 45 * 2)


def b64_array(text, name: str, key: str, dtype: str, shape: list[int], max_chars: int) -> np.ndarray:
    """int32 array of ``shape`` from ``text``, base64 of ``dtype`` values, as a config dict stores arrays (``name``
    and ``key`` name it in the RaveError for anything malformed; longer than ``max_chars`` is refused unread)."""
    if not isinstance(text, str) or len(text) > max_chars:
        raise RaveError(f"{name} {key} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise RaveError(f"{name} {key} are not valid base64") from None
    need = np.dtype(dtype).itemsize * math.prod(shape)
    if len(raw) != need:
        raise RaveError(f"{name} holds {len(raw)} bytes, its shape {shape} needs {need}")
    return np.frombuffer(raw, dtype=dtype).astype(np.int32).reshape(shape)


def _fit_scale_and_dc(cfg: QuantConfig, g: Gaussians, bounds: Tensor | None) -> QuantConfig:
    """``cfg`` with the log-scale range (quantile to largest, relative to the bounds' reference) and the SH DC
    range fitted to ``g`` (``fit_ranges`` cleared: the fitted values are fixed from now on)."""
    ref = scale_reference(scene_bounds(g) if bounds is None else _check_bounds(bounds))
    s = g.scales.detach().to("cpu", torch.float64).numpy().reshape(-1)
    s = s[np.isfinite(s)]
    lo, hi = cfg.scale_min, cfg.scale_max
    if s.size:
        lo = float(np.quantile(s, SCALE_FIT_QUANTILE)) - ref
        hi = float(s.max()) - ref
        lo, hi = max(lo, -MAX_RANGE / 2), min(hi, MAX_RANGE / 2)
        if not hi - lo > 1e-3:
            lo, hi = lo - 0.5, hi + 0.5
        lo, hi = float(np.float32(lo)), float(np.float32(hi))
    dc = np.abs(g.sh0.detach().to("cpu", torch.float64).numpy().reshape(-1))
    dc = dc[np.isfinite(dc)]
    r = float(np.quantile(dc, SH0_FIT_QUANTILE)) if dc.size else cfg.sh0_range
    r = float(np.float32(min(max(r, SH_FIT_MIN_RANGE), MAX_RANGE)))
    return replace(cfg, scale_min=lo, scale_max=hi, sh0_range=r, fit_ranges=False)


@dataclass
class QuantizedGaussians:
    """Integer codes of a scene (int32 tensors, any device) plus what is needed to decode them.

    Attributes:
        means: [N, 3] grid coordinates in [0, 2^pos_bits).
        rot_index: [N] index (0-3, in w, x, y, z order) of the largest quaternion component.
        rot: [N, 3] codes of the other three components, in w, x, y, z order.
        scales: [N, 3]; opacities: [N]; sh0: [N, 1, 3]; shN: [N, K, 3] unsigned codes (with a codebook: the
            codes of each Gaussian's codebook entry).
        cfg: the :class:`QuantConfig`; bounds: [2, 3] float32 position bounds (lo, hi).
        shN_index: [N] int32 codebook index of every Gaussian (None without a codebook).
    """

    means: Tensor
    rot_index: Tensor
    rot: Tensor
    scales: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor
    cfg: QuantConfig = field(default_factory=QuantConfig)
    bounds: Tensor = field(default_factory=lambda: torch.zeros(2, 3))
    shN_index: Tensor | None = None

    _FIELDS = ("means", "rot_index", "rot", "scales", "opacities", "sh0", "shN")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    def _map(self, fn) -> "QuantizedGaussians":
        idx = None if self.shN_index is None else fn(self.shN_index)
        return QuantizedGaussians(**{k: fn(getattr(self, k)) for k in self._FIELDS}, cfg=self.cfg, bounds=self.bounds,
                                  shN_index=idx)

    def cpu(self) -> "QuantizedGaussians":
        return self._map(lambda t: t.cpu())

    def prefix(self, k: int) -> "QuantizedGaussians":
        return self._map(lambda t: t[:k])

    def subset(self, index: Tensor) -> "QuantizedGaussians":
        return self._map(lambda t: t[index])

    def equal(self, other: "QuantizedGaussians") -> bool:
        a, b = self.shN_index, other.shN_index
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            return False
        return all(
            getattr(self, k).shape == getattr(other, k).shape and torch.equal(getattr(self, k), getattr(other, k))
            for k in self._FIELDS
        )


# -- helpers ---------------------------------------------------------------------------------------
def scene_bounds(g: Gaussians) -> Tensor:
    """[2, 3] float32 (min, max) of the finite Gaussian means; zeros for an empty scene."""
    m = g.means.detach().to("cpu", torch.float64)
    m = m[torch.isfinite(m).all(dim=1)]
    if len(m) == 0:
        return torch.zeros(2, 3)
    return torch.stack([m.min(dim=0).values, m.max(dim=0).values]).float()


def _check_bounds(bounds: Tensor | None, g: Gaussians | None = None) -> Tensor:
    if bounds is None:
        if g is None:
            raise RaveError("quantization bounds are required")
        return scene_bounds(g)
    b = torch.as_tensor(bounds).detach().to("cpu", torch.float32)
    if tuple(b.shape) != (2, 3) or not torch.isfinite(b).all() or (b[1] < b[0]).any():
        raise RaveError(f"quantization bounds must be a finite [2, 3] (min, max) tensor, got {tuple(b.shape)}")
    return b


def _grid(bounds: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """float64 (lo, extent) per axis; a flat axis gets extent 1 so it quantizes to 0."""
    lo = bounds[0].double().numpy()
    ext = (bounds[1].double() - bounds[0].double()).numpy()
    return lo, np.where(ext > 0, ext, 1.0)


def scale_reference(bounds: Tensor) -> float:
    """ln(2^e) with 2^e the smallest power of two >= the largest side of ``bounds`` (exact, portable)."""
    ext = float((bounds[1].double() - bounds[0].double()).max()) if bounds.numel() else 0.0
    if not ext > 0 or not math.isfinite(ext):
        return 0.0
    m, e = math.frexp(ext)  # ext = m * 2^e, 0.5 <= m < 1
    if m == 0.5:
        e -= 1
    return e * math.log(2.0)


def _sh_band_of_coeff(k: int) -> np.ndarray:
    """[k] SH band (1, 2, 3) of each higher-order coefficient."""
    return np.array([math.isqrt(j) for j in range(1, k + 1)], dtype=np.int64)


# -- quantize / dequantize --------------------------------------------------------------------------
_BLOCK = 1 << 16  # rows per block: bounds the float64 temporaries of big scenes


def _t(x, device) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)


def _sh_params(cfg: QuantConfig, k: int, device, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """([K, 1] largest level L, or [N, K, 1] per Gaussian with a faint ``drop``; [K, 1] range) of every
    higher-order SH coefficient, float64."""
    band = _sh_band_of_coeff(k) - 1
    bits = np.array(cfg.shN_bits)[band][:, None]
    r = _t(np.array(cfg.shN_range)[band][:, None], device)
    if drop is None:
        return _t(_mid_tread_levels_vec(bits), device), r
    per_band = {b: _grid_max(int(cfg.shN_bits[b]), drop, "sh", sym=True) for b in set(band.tolist())}
    return torch.stack([per_band[b] for b in band.tolist()], dim=1), r


def _sh0_levels(cfg: QuantConfig, drop: Tensor | None, device) -> Tensor:
    """Largest SH DC level: a 0-d tensor, or [N, 1, 1] per Gaussian with a faint ``drop``."""
    if drop is None:
        return _t(float(_mid_tread_levels_vec(cfg.sh0_bits)), device)
    return _grid_max(cfg.sh0_bits, drop, "sh", sym=True)[:, :, None]


_DROP_LUT: dict[tuple[int, int], Tensor] = {}


def faint_drop_table(opacity_bits: int, faint_bits: int) -> Tensor:
    """[2^opacity_bits] int64 bits dropped per opacity code q: ``min(faint_bits, floor(-log2 alpha))`` at the bin
    centre ``alpha = (2q + 1) / 2^(opacity_bits + 1)``, in exact integer arithmetic (so it is portable)."""
    t = _DROP_LUT.get((opacity_bits, faint_bits))
    if t is None:
        v = 2 * np.arange(1 << opacity_bits, dtype=np.int64) + 1  # odd: ceil(log2 v) = bit length (0 for v = 1)
        ceil_log2 = np.where(v == 1, 0, np.frexp(v.astype(np.float64))[1])
        t = torch.from_numpy(np.clip(opacity_bits + 1 - ceil_log2, 0, faint_bits).astype(np.int64))
        _DROP_LUT[(opacity_bits, faint_bits)] = t
    return t


def faint_drop(cfg: QuantConfig, opacities: Tensor) -> Tensor | None:
    """[N] int64 bits each Gaussian's grids lose (from its opacity codes [N]), or None without ``faint_bits``."""
    if not cfg.faint_bits:
        return None
    return faint_drop_table(cfg.opacity_bits, cfg.faint_bits).to(opacities.device)[opacities.reshape(-1).long()]


def _grid_max(bits: int, drop: Tensor | None, kind: str, sym: bool = False):
    """Largest code M = 2^b - 1 (or mid-tread level L = 2^(b-1) - 1 with ``sym``) of a ``bits`` grid: a float, or
    [N, 1] float64 per Gaussian with a faint ``drop`` (b = bits - :func:`kind_drop`)."""
    if drop is None:
        return float((1 << (bits - 1)) - 1) if sym else float((1 << bits) - 1)
    e = bits - kind_drop(drop, bits, kind)
    one = torch.ones_like(e)
    m = (one << (e - 1)) - 1 if sym else (one << e) - 1
    return m.to(torch.float64)[:, None]


def _clip(x: Tensor, lo: float, hi) -> Tensor:
    """``x`` clamped to [lo, hi], ``hi`` a number or a tensor broadcasting against ``x``."""
    return x.clamp(lo, hi) if not isinstance(hi, Tensor) else torch.minimum(x.clamp_min(lo), hi)


@torch.no_grad()
def quantize(g: Gaussians, cfg: QuantConfig | None = None, bounds: Tensor | None = None) -> QuantizedGaussians:
    """Integer codes (int32, on ``g``'s device) of ``g``. ``bounds`` None -> :func:`scene_bounds` of ``g``;
    an unfitted ``cfg`` (``shN_range`` None) is fitted to ``g`` (:meth:`QuantConfig.fit`); the fitted config is
    in the result's ``cfg``."""
    bounds = _check_bounds(bounds, g)
    cfg = (cfg or QuantConfig()).validate().fit(g, bounds)
    n = len(g)
    if n > _BLOCK:
        parts = [_quantize_block(_rows(g, a, min(a + _BLOCK, n)), cfg, bounds) for a in range(0, n, _BLOCK)]
        idx = None if parts[0].shN_index is None else torch.cat([p.shN_index for p in parts])
        return QuantizedGaussians(
            **{f: torch.cat([getattr(p, f) for p in parts]) for f in QuantizedGaussians._FIELDS},
            cfg=cfg, bounds=bounds, shN_index=idx,
        )  # fmt: skip
    return _quantize_block(g, cfg, bounds)


def _rows(g: Gaussians, a: int, b: int) -> Gaussians:
    return g.map(lambda t: t[a:b])


def _quantize_block(g: Gaussians, cfg: QuantConfig, bounds: Tensor) -> QuantizedGaussians:
    dev = g.means.device
    f64 = lambda t: t.detach().to(torch.float64)  # noqa: E731
    i32 = lambda t: t.to(torch.int32)  # noqa: E731
    n = len(g)

    # opacities in sigmoid space (sigmoid(+-inf) = 1 / 0 falls in the extreme bins); first: they set the grids
    mo = 1 << cfg.opacity_bits
    a = torch.sigmoid(torch.nan_to_num(f64(g.opacities), nan=0.0))
    opac = i32((a * mo).floor().clamp(0, mo - 1))
    drop = faint_drop(cfg, opac)

    # positions
    lo, ext = _grid(bounds)
    m = _grid_max(cfg.pos_bits, drop, "pos")
    x = (f64(g.means) - _t(lo, dev)) / _t(ext, dev) * m
    means = i32(_clip(torch.nan_to_num(x, nan=0.0).round(), 0, m))

    # rotations: smallest three
    q = f64(g.quats)
    q = torch.nan_to_num(q / q.norm(dim=-1, keepdim=True).clamp_min(1e-30), nan=0.0)
    idx = q.abs().argmax(dim=-1)
    q = q * torch.where(q.gather(1, idx[:, None]) < 0, -1.0, 1.0)
    keep = torch.ones(n, 4, dtype=torch.bool, device=dev)
    keep[torch.arange(n, device=dev), idx] = False
    rest = q[keep].reshape(n, 3)
    mr = _grid_max(cfg.rot_bits, drop, "rot")
    rot = i32(_clip(((rest / _INV_SQRT2 + 1) * 0.5 * mr).round(), 0, mr))

    # log-scales
    ref = scale_reference(bounds)
    s_lo, s_hi = ref + cfg.scale_min, ref + cfg.scale_max
    ms = _grid_max(cfg.scale_bits, drop, "scale")
    s = torch.nan_to_num(f64(g.scales), nan=s_lo, posinf=s_hi, neginf=s_lo)
    scales = i32(_clip(((s - s_lo) / (s_hi - s_lo) * ms).round(), 0, ms))

    # SH: symmetric mid-tread grids
    def sym(v: Tensor, L: Tensor, r: Tensor) -> Tensor:
        return i32((torch.nan_to_num(v, nan=0.0) / r * L).round().clamp(-L, L) + L)

    sh0 = sym(f64(g.sh0), _sh0_levels(cfg, drop, dev), _t(cfg.sh0_range, dev))
    k = g.shN.shape[1]
    index = None
    if cfg.sh_vq and k:
        from .vq import assign

        book = torch.from_numpy(np.array(cfg.sh_codebook))
        if book.shape[1] != k:
            raise RaveError(f"the SH codebook has {book.shape[1]} coefficients per Gaussian, the scene {k}")
        L, r = _sh_params(cfg, k, "cpu")
        index = assign(torch.nan_to_num(g.shN.detach().float(), nan=0.0), ((book.double() - L) * (r / L)).float())
        shN = book[index.cpu().long()].to(dev)
        index = index.to(device=dev, dtype=torch.int32)
    elif cfg.shN_step and k:
        from .transform import forward

        shN = forward(f64(g.shN), cfg, drop)
    elif k:
        shN = sym(f64(g.shN), *_sh_params(cfg, k, dev, drop))
    else:
        shN = torch.zeros(n, 0, 3, dtype=torch.int32, device=dev)
    return QuantizedGaussians(means, i32(idx), rot, scales, opac, sh0, shN, cfg=cfg, bounds=bounds, shN_index=index)


def _mid_tread_levels_vec(bits):
    """Largest |level| L of a symmetric mid-tread quantizer (codes 0..2L, zero at L), per bit depth."""
    return (np.left_shift(1, np.asarray(bits) - 1) - 1).astype(np.float64)


_OPACITY_LUT: dict[int, Tensor] = {}


def _opacity_table(bits: int, device) -> Tensor:
    """[2^bits] float32 logits of the bin centres (built once per bit depth on the CPU, so always identical)."""
    t = _OPACITY_LUT.get(bits)
    if t is None:
        a = (np.arange(1 << bits, dtype=np.float64) + 0.5) / (1 << bits)
        t = torch.from_numpy(np.log(a) - np.log1p(-a)).float()
        _OPACITY_LUT[bits] = t
    return t.to(device)


def dequantize(q: QuantizedGaussians) -> Gaussians:
    """Float32 Gaussians (on the codes' device) of the codes ``q``; bit-exact whatever the order or length.

    Only exactly rounded float64 operations (+, -, *, /, sqrt) and a table lookup are used, so the result does
    not depend on how the rows are batched or vectorised.
    """
    n = len(q)
    if n > _BLOCK:
        parts = [dequantize(q.subset(slice(a, min(a + _BLOCK, n)))) for a in range(0, n, _BLOCK)]
        return Gaussians.cat(parts)
    cfg, dev = q.cfg, q.means.device
    drop = faint_drop(cfg, q.opacities)
    lo, ext = _grid(q.bounds)
    m = _grid_max(cfg.pos_bits, drop, "pos")
    step = _t(ext / m, dev) if drop is None else _t(ext, dev) / m  # both exactly rounded: equal for equal m
    means = (_t(lo, dev) + q.means.double() * step).float()

    mr = _grid_max(cfg.rot_bits, drop, "rot")
    rest = (q.rot.double() * (2.0 / mr) - 1.0) * _INV_SQRT2
    big = (1.0 - (rest[:, 0] * rest[:, 0] + rest[:, 1] * rest[:, 1] + rest[:, 2] * rest[:, 2])).clamp_min(0).sqrt()
    quat = torch.empty(n, 4, dtype=torch.float64, device=dev)
    keep = torch.ones(n, 4, dtype=torch.bool, device=dev)
    keep[torch.arange(n, device=dev), q.rot_index.long()] = False
    quat[keep] = rest.reshape(-1)
    quat[~keep] = big
    sq = quat * quat
    norm = (sq[:, 0] + sq[:, 1] + sq[:, 2] + sq[:, 3]).sqrt()
    quats = (quat / norm[:, None]).float()

    ref = scale_reference(q.bounds)
    s_lo, s_hi = ref + cfg.scale_min, ref + cfg.scale_max
    ms = _grid_max(cfg.scale_bits, drop, "scale")
    scales = (s_lo + q.scales.double() * ((s_hi - s_lo) / ms)).float()

    opacities = _opacity_table(cfg.opacity_bits, dev)[q.opacities.long()]

    def sym(c: Tensor, L: Tensor, r: Tensor) -> Tensor:
        return ((c.double() - L) * (r / L)).float()

    sh0 = sym(q.sh0, _sh0_levels(cfg, drop, dev), _t(cfg.sh0_range, dev))
    k = q.shN.shape[1]
    if k and q.shN_index is not None and cfg.sh_codebook is not None and cfg.sh_codebook.shape[1] == k:
        # one dequantized codebook, gathered: the same float32 values as dequantizing every row's codes
        book = sym(torch.from_numpy(np.array(cfg.sh_codebook)).to(dev), *_sh_params(cfg, k, dev))
        shN = book[q.shN_index.long()]
    elif k and cfg.shN_step:
        from .transform import inverse

        shN = inverse(q.shN, cfg, drop)
    else:
        shN = sym(q.shN, *_sh_params(cfg, k, dev, drop)) if k else torch.zeros(n, 0, 3, device=dev)
    return Gaussians(means, quats, scales, opacities, sh0, shN)


def fake_quantize(g: Gaussians, cfg: QuantConfig | None = None, bounds: Tensor | None = None) -> Gaussians:
    """``dequantize(quantize(g))`` forward (same values), identity gradient backward (straight-through).

    Differentiable w.r.t. every tensor of ``g``; results are on ``g``'s device and dtype. ``bounds`` should be
    the fixed bounds of the full scene (:func:`scene_bounds` of the model being fine-tuned).
    """
    deq = dequantize(quantize(g, cfg, bounds))
    out = {}
    for name, x in g.items():
        d = getattr(deq, name).to(dtype=x.dtype)
        delta = x - x.detach()  # exactly 0 forward where finite, identity gradient
        if name == "opacities":
            delta = torch.where(torch.isfinite(x), delta, torch.zeros_like(delta))
        out[name] = d + delta
    return Gaussians(**out)


__all__ = [
    "QuantConfig",
    "QuantizedGaussians",
    "quantize",
    "dequantize",
    "fake_quantize",
    "scene_bounds",
    "scale_reference",
]
