"""The progressive .rave stream of Scaffold-GS anchors: every prefix of ranked anchors is a valid file of known size.

Works on plain dicts of tensors (no import of the scaffold or rave layers): per anchor ``anchor`` [N, 3],
``offset`` [N, k, 3], ``anchor_feat`` [N, F], ``scaling`` [N, S] (S = 6 in Scaffold-GS), and a model
``{"spec": <JSON-safe dict>, "mlps": {name: float32 tensor}}`` whose MLP weights travel once, in the header.

Quantization (:class:`AnchorQuant`, as the authors' code stores anchors): features ``feature_bits``-bit uniform
per channel between ``feat_lo`` and ``feat_hi``, fitted once over ALL anchors and fixed afterwards (so every
prefix, the checkpoint and quantization-aware training share one grid); positions, offsets and scalings as
IEEE fp16 (or, as our option, offsets and scalings on fixed per-column uniform grids: ``geometry="uniform"``). :func:`fake_quantize_anchors` gives exactly (bit for bit) what :func:`decode_anchors` returns, with
an identity gradient.

Layout (little-endian), anchor format version 1: the version field is 0x0101 (unit type 1 = anchors in its
high byte, see unit_type.py; Gaussian streams have 0 there)::

    header   ANCHOR_HEADER_SIZE   magic b"RAVE", version field, header size, unit type 1 again, codec id,
                                  feature bits, flags (1: uniform geometry), N, chunk size, chunk count, F, k, S,
                                  geometry bits (0 for fp16), spec length, MLP raw length, MLP compressed length,
                                  CRC32 of the header
    section  spec JSON (UTF-8) | feat_lo [F] float32 | feat_hi [F] float32 | with uniform geometry: lows and
             highs [3k + S] float32 of offsets then scalings | MLP blob (codec-compressed
             table: u16 count, per tensor u16 name length, name, u8 ndim, u32 dims; then float32 data in table
             order) | CRC32 of the section
    index    12 * n_chunks + 4    per chunk: compressed length, CRC32, anchor count; CRC32 of the index
    chunks   chunk i holds anchors [i*chunk, min((i+1)*chunk, N)) of the given order, each compressed alone

Inside a chunk the anchors are sorted by the Morton code of their position on a 10-bit grid over all anchors'
bounds (stable; the decoder does not need the grid: it returns the stored order, "stream order"), and stored
column-wise: the high byte planes of the fp16 columns (3 position, and with fp16 geometry 3k offset and S
scaling values), then their low byte planes, then the uniform geometry codes (offsets, scalings) if any, then
the feature codes (codes: one byte plane per column up to 8 bits; above, all high planes then all low planes). Sizes are exact as for Gaussians:
``size_of_prefix(k) = header + 12 * ceil(k / chunk) + 4 + full chunks + partial chunk``, a file cut after
any complete chunk decodes to that prefix (a warning, or RaveError when strict).
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError
from ..jsonio import strict_loads
from .chunked import DEFAULT_WORKERS, INDEX_ENTRY_SIZE, ChunkedEncoder, index_bytes, parallel_map
from .coders import DEFAULT_CODEC, CodecError, codec_by_id, get_codec
from .container import (MAX_CHUNK_SIZE, ChunkEntry, RaveStreamWarning, RaveValueWarning, _check_limit, _load,
                        read_index)
from .morton import morton_encode
from .unit_type import MAGIC, UNIT_ANCHORS, split_version, unit_type_of, version_field, wrong_unit_message

ANCHOR_FIELDS = ("anchor", "offset", "anchor_feat", "scaling")
FP16_FIELDS = ("anchor", "offset", "scaling")  # stored as IEEE half floats, in this column order
FORMAT_VERSION = 1  # of the anchor layout (the stream's version field is version_field(UNIT_ANCHORS, 1))
#: 512 anchors of F 32, k 10 (110 raw bytes each) compress to ~38-41 KB (trained demo models: 77.5-79.3 B/anchor),
#: about one Gaussian chunk's size; 1024 saves 1.0 % of the bytes, 256 costs 1.6 % more (benchmark figures in
#: the issue-17 report), while the rate selection is exact to one chunk.
DEFAULT_ANCHOR_CHUNK = 512
MAX_FEAT_DIM, MAX_OFFSETS, MAX_SCALING = 1024, 256, 64
MAX_FEATURE_BITS = 16
MAX_SPEC_BYTES = 1 << 16
MAX_MLP_BYTES = 64 << 20  # raw MLP weights (F = 1024, k = 256 needs ~12 MB)
MAX_MLP_TENSORS, MAX_MLP_NAME, MAX_MLP_NDIM = 256, 256, 4
#: decode_anchors() refuses streams of more anchors unless told otherwise (~280 B of float32 per anchor).
DEFAULT_MAX_ANCHORS = 10_000_000
#: Decompression-bomb guard as for Gaussians (container.DEFAULT_MAX_RATIO): decoded chunk bytes per byte of the
#: file, beyond the first FREE_BYTES of decoded chunk data. Features and fp16 geometry compress ~1.5-3:1.
DEFAULT_MAX_RATIO = 64.0
FREE_BYTES = 64 << 20
FP16_MAX = 65504.0
#         magic ver hsize unit codec bits flags N chunk nchunk F k S gbits spec mlp_raw mlp_len crc
_HEAD = struct.Struct("<4sHHBBBBQIIHHHHIIII")
FLAG_UNIFORM_GEOMETRY = 1  # header flag: offsets and scalings on uniform grids (bit depth in the next u16)
ANCHOR_HEADER_SIZE = _HEAD.size
_MORTON_BITS = 10


# -- quantization ------------------------------------------------------------------------------------------
def _f32(values, what: str) -> tuple[float, ...]:
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise RaveError(f"anchor quantization '{what}' must be a list of numbers") from None
    if not np.isfinite(a).all() or (np.abs(a) > 3e38).any():
        raise RaveError(f"anchor quantization '{what}' must hold finite float32 numbers")
    return tuple(float(x) for x in a.astype(np.float32))


_RANGE_KEYS = ("feat_lo", "feat_hi", "offset_lo", "offset_hi", "scaling_lo", "scaling_hi")
GEOMETRIES = ("fp16", "uniform")


def _ranges(lo, hi, what: str, lo_name: str, hi_name: str, allow_empty: bool) -> tuple[tuple, tuple]:
    lo, hi = _f32(lo, lo_name), _f32(hi, hi_name)
    if len(lo) != len(hi) or len(lo) > MAX_FEAT_DIM * 4 or (not lo and not allow_empty):
        raise RaveError(f"anchor quantization needs as many {what} lows as highs (1..{MAX_FEAT_DIM * 4}), got "
                        f"{len(lo)} and {len(hi)}")
    if any(h < l for l, h in zip(lo, hi)):
        raise RaveError(f"anchor quantization: a {what} range has {hi_name} < {lo_name}")
    return lo, hi


def _check_bits(b, what: str, lo: int = 1) -> int:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not lo <= b <= MAX_FEATURE_BITS:
        raise RaveError(f"anchor {what} bits must be an integer {lo}..{MAX_FEATURE_BITS}, got {b!r:.40}")
    return int(b)


@dataclass(frozen=True)
class AnchorQuant:
    """How anchors are stored: ``feature_bits``-bit features on a fixed per-channel grid; positions fp16;
    offsets and scalings fp16 (``geometry`` "fp16", the authors' choice) or on fixed ``geometry_bits``-bit
    per-column grids (``geometry`` "uniform", our option: 8 bits saves ~27 % of a trained demo model's stream
    for -0.015 dB).

    ``feat_lo`` / ``feat_hi`` [F], ``offset_lo`` / ``offset_hi`` [3k] (offset j's x, y, z, row-major) and
    ``scaling_lo`` / ``scaling_hi`` [S]: each column's range (float32 values), fitted once over all anchors
    (:meth:`fit`); values outside clamp, a column with lo == hi decodes as lo. Offset and scaling ranges are
    empty (and ``geometry_bits`` 0) for fp16 geometry.
    """

    feature_bits: int = 8
    feat_lo: tuple[float, ...] = ()
    feat_hi: tuple[float, ...] = ()
    geometry: str = "fp16"
    geometry_bits: int = 0
    offset_lo: tuple[float, ...] = ()
    offset_hi: tuple[float, ...] = ()
    scaling_lo: tuple[float, ...] = ()
    scaling_hi: tuple[float, ...] = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("feature_bits", _check_bits(self.feature_bits, "feature"))
        if self.geometry not in GEOMETRIES:
            raise RaveError(f"anchor geometry must be 'fp16' or 'uniform', got {self.geometry!r:.40}")
        lo, hi = _ranges(self.feat_lo, self.feat_hi, "feature", "feat_lo", "feat_hi", False)
        if len(lo) > MAX_FEAT_DIM:
            raise RaveError(f"anchor quantization has {len(lo)} feature ranges, at most {MAX_FEAT_DIM}")
        set_("feat_lo", lo)
        set_("feat_hi", hi)
        uniform = self.geometry == "uniform"
        set_("geometry_bits", _check_bits(self.geometry_bits, "geometry", 1) if uniform else
             _check_bits(self.geometry_bits, "geometry (0 with fp16 geometry)", 0))
        if not uniform and self.geometry_bits:
            raise RaveError("anchor geometry bits must be 0 with fp16 geometry")
        for what in ("offset", "scaling"):
            lo, hi = _ranges(getattr(self, f"{what}_lo"), getattr(self, f"{what}_hi"), what, f"{what}_lo",
                             f"{what}_hi", not uniform)
            if lo and not uniform:
                raise RaveError(f"anchor quantization has {what} ranges but fp16 geometry")
            set_(f"{what}_lo", lo)
            set_(f"{what}_hi", hi)

    @property
    def feat_dim(self) -> int:
        return len(self.feat_lo)

    @property
    def max_code(self) -> int:
        return (1 << self.feature_bits) - 1

    @property
    def uniform_geometry(self) -> bool:
        return self.geometry == "uniform"

    @classmethod
    def fit(cls, anchors: dict[str, Tensor], feature_bits: int = 8, *, geometry: str = "fp16",
            geometry_bits: int = 8) -> "AnchorQuant":
        """The ranges of all ``anchors`` (fit once, before ranking and prefixes): features [N, F], and with
        ``geometry`` "uniform" offsets [N, k, 3] and scalings [N, S] on ``geometry_bits`` bits."""
        def span(name: str, x: Tensor) -> tuple[tuple, tuple]:
            x = x.detach().to("cpu", torch.float32)
            if x.ndim < 2 or x.shape[-1] < 1:
                raise RaveError(f"anchor field '{name}' must be [N, ...], got shape {list(x.shape)}")
            x = x.reshape(x.shape[0], -1)
            if not torch.isfinite(x).all():
                raise RaveError(f"anchor field '{name}' holds NaN or infinite values")
            if x.shape[0] == 0:
                return (0.0,) * x.shape[1], (0.0,) * x.shape[1]
            return tuple(x.amin(0).tolist()), tuple(x.amax(0).tolist())

        lo, hi = span("anchor_feat", anchors["anchor_feat"])
        if geometry != "uniform":
            return cls(feature_bits, lo, hi, geometry)
        (olo, ohi), (slo, shi) = span("offset", anchors["offset"]), span("scaling", anchors["scaling"])
        return cls(feature_bits, lo, hi, geometry, geometry_bits, olo, ohi, slo, shi)

    def to_dict(self) -> dict:
        d = {"feature_bits": self.feature_bits, "feat_lo": list(self.feat_lo), "feat_hi": list(self.feat_hi),
             "geometry": self.geometry}
        if self.uniform_geometry:
            d.update(geometry_bits=self.geometry_bits, offset_lo=list(self.offset_lo),
                     offset_hi=list(self.offset_hi), scaling_lo=list(self.scaling_lo),
                     scaling_hi=list(self.scaling_hi))
        return d

    @classmethod
    def from_dict(cls, d: object) -> "AnchorQuant":
        """The inverse of :meth:`to_dict`; RaveError for anything else (unknown keys, wrong types, bad ranges)."""
        if not isinstance(d, dict):
            raise RaveError("anchor quantization settings must be a mapping")
        unknown = sorted(str(k) for k in d if k not in (*_RANGE_KEYS, "feature_bits", "geometry", "geometry_bits"))
        if unknown:
            raise RaveError(f"unknown anchor quantization settings: {', '.join(unknown)[:80]}")
        for key in _RANGE_KEYS:
            v = d.get(key, [])
            if key in ("feat_lo", "feat_hi") and key not in d or not isinstance(v, list) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise RaveError(f"anchor quantization '{key}' must be a list of numbers")
        return cls(d.get("feature_bits", 8), tuple(d["feat_lo"]), tuple(d["feat_hi"]), d.get("geometry", "fp16"),
                   d.get("geometry_bits", 0), *(tuple(d.get(k, [])) for k in _RANGE_KEYS[2:]))

    def geometry_ranges(self) -> tuple[tuple, tuple]:
        """(lo, hi) of the uniform geometry columns: offsets [3k] then scalings [S] (empty for fp16)."""
        return self.offset_lo + self.scaling_lo, self.offset_hi + self.scaling_hi


def grid_codes(x: Tensor, lo, hi, bits: int) -> Tensor:
    """[N, C] int64 codes 0..2^bits-1 of values [N, C] on the per-column grids [lo, hi] (float64 arithmetic:
    the same on every device)."""
    lo_t = torch.tensor(lo, dtype=torch.float64, device=x.device)
    step = (torch.tensor(hi, dtype=torch.float64, device=x.device) - lo_t) / ((1 << bits) - 1)
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.round((x.detach().double() - lo_t) / safe).clamp_(0, (1 << bits) - 1)
    return torch.where(step > 0, codes, torch.zeros_like(codes)).long()


def grid_values(codes: Tensor, lo, hi, bits: int) -> Tensor:
    """[N, C] float32 values of codes: ``float32(lo + code * step)`` in float64 (exactly rounded ops)."""
    lo_t = torch.tensor(lo, dtype=torch.float64, device=codes.device)
    step = (torch.tensor(hi, dtype=torch.float64, device=codes.device) - lo_t) / ((1 << bits) - 1)
    return (lo_t + codes.double() * step).float()


def feature_codes(feat: Tensor, quant: AnchorQuant) -> Tensor:
    """[N, F] int64 codes of features [N, F] on ``quant``'s grid."""
    return grid_codes(feat, quant.feat_lo, quant.feat_hi, quant.feature_bits)


def feature_values(codes: Tensor, quant: AnchorQuant) -> Tensor:
    """[N, F] float32 features of codes."""
    return grid_values(codes, quant.feat_lo, quant.feat_hi, quant.feature_bits)


class _StraightThrough(torch.autograd.Function):
    """Forward: ``q`` exactly (bit for bit); backward: the gradient w.r.t. ``x`` unchanged."""

    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor) -> Tensor:  # noqa: D102
        return q.to(x.dtype).clone()

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        return g, None


def fake_quantize_anchors(params: dict[str, Tensor], quant: AnchorQuant) -> dict[str, Tensor]:
    """The anchors as :func:`decode_anchors` returns them (features and, with uniform geometry, offsets and
    scalings on ``quant``'s grids; the rest through fp16), bit-identical in the forward pass, with the identity
    gradient (straight-through). Other keys of ``params`` pass unchanged."""
    out = dict(params)
    feat = params["anchor_feat"]
    if feat.shape[-1] != quant.feat_dim:
        raise RaveError(f"anchor features have {feat.shape[-1]} channels, the quantization {quant.feat_dim}")
    out["anchor_feat"] = _StraightThrough.apply(feat, feature_values(feature_codes(feat, quant), quant))
    fp16 = FP16_FIELDS
    if quant.uniform_geometry:
        fp16 = ("anchor",)
        for f, lo, hi in (("offset", quant.offset_lo, quant.offset_hi),
                          ("scaling", quant.scaling_lo, quant.scaling_hi)):
            x = params[f]
            width = math.prod(x.shape[1:])
            if width != len(lo):
                raise RaveError(f"anchor field '{f}' has {width} values per anchor, the quantization {len(lo)} "
                                "ranges")
            q = grid_values(grid_codes(x.reshape(x.shape[0], -1), lo, hi, quant.geometry_bits), lo, hi,
                            quant.geometry_bits)
            out[f] = _StraightThrough.apply(x, q.reshape(x.shape))
    for f in fp16:
        out[f] = _StraightThrough.apply(params[f], params[f].detach().half().float())
    return out


# -- encoder -----------------------------------------------------------------------------------------------
def _field_shapes(anchors: dict[str, Tensor], name) -> tuple[int, int, int, int]:
    """(N, F, k, S) of a valid anchor dict; RaveError naming the problem otherwise."""
    missing = [f for f in ANCHOR_FIELDS if f not in anchors]
    if missing:
        raise RaveError(f"anchors lack the field(s) {', '.join(missing)}", name)
    a, o, f, s = (anchors[x] for x in ANCHOR_FIELDS)
    n = a.shape[0] if a.ndim == 2 else -1
    ok = (a.ndim == 2 and a.shape[1] == 3 and o.ndim == 3 and o.shape[2] == 3 and f.ndim == 2 and s.ndim == 2
          and o.shape[0] == f.shape[0] == s.shape[0] == n)
    if not ok:
        raise RaveError("anchor fields must be anchor [N, 3], offset [N, k, 3], anchor_feat [N, F], scaling [N, S]; "
                        f"got {', '.join(f'{x} {list(anchors[x].shape)}' for x in ANCHOR_FIELDS)}", name)
    F, k, S = f.shape[1], o.shape[1], s.shape[1]
    if not (1 <= F <= MAX_FEAT_DIM and 1 <= k <= MAX_OFFSETS and 1 <= S <= MAX_SCALING):
        raise RaveError(f"anchor sizes out of range (F {F}, k {k}, S {S}; at most {MAX_FEAT_DIM}, {MAX_OFFSETS}, "
                        f"{MAX_SCALING})", name)
    for x in ANCHOR_FIELDS:
        if not anchors[x].is_floating_point() or not bool(torch.isfinite(anchors[x]).all()):
            raise RaveError(f"anchor field '{x}' must hold finite floating-point values", name)
    return int(n), int(F), int(k), int(S)


@dataclass(frozen=True)
class _Layout:
    """Columns of a chunk: ``c16`` fp16 columns (position, and offsets + scalings with fp16 geometry), ``g``
    uniform geometry codes (offsets + scalings, 0 with fp16 geometry), ``F`` feature codes."""

    k: int
    S: int
    F: int
    feature_bits: int
    geometry_bits: int  # 0: fp16 geometry

    @classmethod
    def of(cls, quant: AnchorQuant, k: int, S: int) -> "_Layout":
        return cls(k, S, quant.feat_dim, quant.feature_bits, quant.geometry_bits)

    @property
    def c16(self) -> int:
        return 3 if self.geometry_bits else 3 + 3 * self.k + self.S

    @property
    def g(self) -> int:
        return 3 * self.k + self.S if self.geometry_bits else 0

    @property
    def raw_per_anchor(self) -> int:
        width = lambda b: 1 if b <= 8 else 2  # noqa: E731
        return 2 * self.c16 + self.g * width(self.geometry_bits) + self.F * width(self.feature_bits)


def _code_dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16


def _fp16_columns(anchors: dict[str, Tensor], n: int, fields: tuple[str, ...], name) -> np.ndarray:
    """[N, C] uint16: the fp16 bit patterns of ``fields`` (position, then offsets and scaling when fp16)."""
    cols = []
    for f in fields:
        h = anchors[f].detach().to("cpu", torch.float32).reshape(n, -1).half()
        if not bool(torch.isfinite(h).all()):
            raise RaveError(f"anchor field '{f}' has values beyond the fp16 range (|x| > {FP16_MAX:g})", name)
        cols.append(h.numpy().view(np.uint16))
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


def _spec_bytes(spec: object, F: int, k: int, name) -> bytes:
    import json

    if not isinstance(spec, dict):
        raise RaveError("the model spec must be a mapping", name)
    _check_spec_sizes(spec, F, k, name)
    try:
        b = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise RaveError(f"the model spec is not JSON-safe: {e}", name) from None
    if len(b) > MAX_SPEC_BYTES:
        raise RaveError(f"the model spec is too large ({len(b)} bytes, at most {MAX_SPEC_BYTES})", name)
    return b


def _check_spec_sizes(spec: dict, F: int, k: int, name) -> None:
    for key, want in (("feat_dim", F), ("n_offsets", k)):
        if key in spec and spec[key] != want:
            raise RaveError(f"the model spec says {key} {spec[key]!r:.20} but the anchors have {want}", name)


def _mlp_raw(mlps: object, name) -> bytes:
    """The MLP table (names sorted) and float32 data; RaveError for anything the decoder would refuse."""
    if not isinstance(mlps, dict) or len(mlps) > MAX_MLP_TENSORS:
        raise RaveError(f"the MLP weights must be a mapping of at most {MAX_MLP_TENSORS} tensors", name)
    table, data = [struct.pack("<H", len(mlps))], []
    for key in sorted(mlps):
        t = mlps[key]
        kb = key.encode("utf-8") if isinstance(key, str) else b""
        if not kb or len(kb) > MAX_MLP_NAME or not isinstance(t, Tensor) or t.ndim > MAX_MLP_NDIM:
            raise RaveError(f"MLP weight {key!r:.60}: names are 1..{MAX_MLP_NAME} bytes, tensors at most "
                            f"{MAX_MLP_NDIM}-D", name)
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise RaveError(f"MLP weight '{key}' must hold finite floating-point values", name)
        table.append(struct.pack("<H", len(kb)) + kb + struct.pack(f"<B{t.ndim}I", t.ndim, *t.shape))
        data.append(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    raw = b"".join(table + data)
    if len(raw) > MAX_MLP_BYTES:
        raise RaveError(f"the MLP weights are too large ({len(raw)} bytes, at most {MAX_MLP_BYTES})", name)
    return raw


class AnchorEncoder(ChunkedEncoder):
    """Encodes any prefix of ranked anchors into a .rave anchor stream, with exact sizes for every prefix.

    ``anchors``: the four fields (:data:`ANCHOR_FIELDS`) in ranked order; ``model``: {"spec", "mlps"};
    ``quant``: the fixed grid (:meth:`AnchorQuant.fit` over all anchors). Construction quantizes once; chunks
    are compressed lazily and cached (:class:`~rave_viewer.codec.chunked.ChunkedEncoder`).
    """

    format_version = FORMAT_VERSION
    unit_label = "anchors"

    def __init__(self, anchors: dict[str, Tensor], model: dict, quant: AnchorQuant, *, codec: str = DEFAULT_CODEC,
                 chunk_size: int = DEFAULT_ANCHOR_CHUNK, progress: bool = False, workers: int | None = None,
                 name: str | os.PathLike | None = None):
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or not (
                1 <= chunk_size <= MAX_CHUNK_SIZE):
            raise RaveError(f"chunk size must be 1..{MAX_CHUNK_SIZE}, got {chunk_size!r}")
        try:
            self.codec = get_codec(codec)
        except KeyError as e:
            raise RaveError(str(e.args[0])) from None
        if not isinstance(quant, AnchorQuant):
            raise RaveError("quant must be an AnchorQuant (AnchorQuant.fit(anchors))")
        if not isinstance(model, dict) or "spec" not in model or "mlps" not in model:
            raise RaveError("model must be {'spec': <dict>, 'mlps': <state dict>}", name)
        self.n, self.feat_dim, self.n_offsets, self.scaling_dim = _field_shapes(anchors, name)
        if quant.feat_dim != self.feat_dim:
            raise RaveError(f"the quantization has {quant.feat_dim} feature ranges, the anchors {self.feat_dim} "
                            "channels", name)
        if quant.uniform_geometry and (len(quant.offset_lo), len(quant.scaling_lo)) != (3 * self.n_offsets,
                                                                                        self.scaling_dim):
            raise RaveError(f"the quantization has {len(quant.offset_lo)} offset and {len(quant.scaling_lo)} "
                            f"scaling ranges, the anchors {3 * self.n_offsets} and {self.scaling_dim} values", name)
        if self.n >= 1 << 32:
            raise RaveError(f"too many anchors for one stream ({self.n})", name)
        self.quant = quant
        self.chunk_size = int(chunk_size)
        self.progress = progress
        self.workers = workers or DEFAULT_WORKERS
        self.spec = dict(model["spec"])
        self._spec = _spec_bytes(self.spec, self.feat_dim, self.n_offsets, name)
        self._mlp_raw = _mlp_raw(model["mlps"], name)
        self._mlp_blob = self.codec.compress(self._mlp_raw)
        self._layout = _Layout.of(quant, self.n_offsets, self.scaling_dim)
        uniform = quant.uniform_geometry
        self._f16 = _fp16_columns(anchors, self.n, ("anchor",) if uniform else FP16_FIELDS, name)
        _warn_coarse_positions(anchors["anchor"], self._f16[:, :3], self.spec, name)
        geo = torch.zeros(self.n, 0, dtype=torch.long)
        if uniform:
            lo, hi = quant.geometry_ranges()
            x = torch.cat([anchors[f].detach().to("cpu", torch.float32).reshape(self.n, -1)
                           for f in ("offset", "scaling")], dim=1)
            geo = grid_codes(x, lo, hi, quant.geometry_bits)
        self._gcodes = geo.numpy().astype(_code_dtype(quant.geometry_bits))
        codes = feature_codes(anchors["anchor_feat"].detach().cpu(), quant).numpy()
        self._codes = codes.astype(_code_dtype(quant.feature_bits))
        self._morton = _morton_of(self._f16[:, :3])
        self.header_size = len(self._header(0))
        self._init_cache()

    @property
    def mlp_bytes(self) -> int:
        """Compressed bytes of the MLP weights (in every prefix's header)."""
        return len(self._mlp_blob)

    def _header(self, k: int) -> bytes:
        q = self.quant
        flags = FLAG_UNIFORM_GEOMETRY if q.uniform_geometry else 0
        head = _HEAD.pack(MAGIC, version_field(UNIT_ANCHORS, FORMAT_VERSION), ANCHOR_HEADER_SIZE, UNIT_ANCHORS, self.codec.id, q.feature_bits,
                          flags, k, self.chunk_size, -(-k // self.chunk_size), self.feat_dim, self.n_offsets,
                          self.scaling_dim, q.geometry_bits, len(self._spec), len(self._mlp_raw),
                          len(self._mlp_blob), 0)
        head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
        glo, ghi = q.geometry_ranges()
        section = b"".join([self._spec, *(np.asarray(v, "<f4").tobytes() for v in (q.feat_lo, q.feat_hi, glo, ghi)),
                            self._mlp_blob])
        return head + section + struct.pack("<I", zlib.crc32(section))

    def _compress_range(self, a: int, b: int) -> tuple[bytes, int]:
        perm = np.argsort(self._morton[a:b], kind="stable")
        data = self.codec.compress(_pack(self._f16[a:b][perm], self._gcodes[a:b][perm], self._codes[a:b][perm]))
        return data, zlib.crc32(data)

    def stream_order(self, k: int | None = None) -> Tensor:
        """[k] int64 indices into the given anchors: the order in which decoding returns the first ``k``."""
        k = self._check_k(k)
        parts = [a + np.argsort(self._morton[a:min(a + self.chunk_size, k)], kind="stable")
                 for a in range(0, k, self.chunk_size)]
        return torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.long)

    def quantized_prefix(self, k: int | None = None) -> dict[str, Tensor]:
        """The first ``k`` anchors as decoding returns them, in stream order (bit for bit)."""
        idx = self.stream_order(k).numpy()
        return _anchors_from(self._f16[idx], self._gcodes[idx], self._codes[idx], self.quant, self.n_offsets)

    def quantized(self) -> dict[str, Tensor]:
        """All anchors quantized, in the given (ranked) order: ``fake_quantize_anchors`` of them, detached."""
        return _anchors_from(self._f16, self._gcodes, self._codes, self.quant, self.n_offsets)


def _warn_coarse_positions(pos: Tensor, pos16: np.ndarray, spec: dict, name) -> None:
    """One :class:`RaveValueWarning` when fp16 moves anchors by more than a quarter of the spec's voxel size
    (scene coordinates far from the origin: fp16 has 11 significant bits, a step of 1/32 at |x| = 64)."""
    voxel = spec.get("voxel_size")
    if not isinstance(voxel, (int, float)) or isinstance(voxel, bool) or not voxel > 0 or not len(pos16):
        return
    err = float((pos.detach().to("cpu", torch.float32) - torch.from_numpy(pos16.view(np.float16).astype(np.float32)))
                .abs().max())
    if err > voxel / 4:
        msg = (f"fp16 anchor positions move anchors by up to {err:.3g}, more than a quarter of the voxel size "
               f"{voxel:.3g} (coordinates up to {float(pos.abs().max()):.3g}): recentre or rescale the scene")
        warnings.warn(f"{name}: {msg}" if name is not None else msg, RaveValueWarning, stacklevel=3)


def _morton_of(pos16: np.ndarray) -> np.ndarray:
    """[N] Morton codes of fp16 positions on a 2^10 grid over their bounds (the in-chunk sort key)."""
    p = pos16.view(np.float16).astype(np.float64)
    if not len(p):
        return np.zeros(0, dtype=np.uint64)
    lo, hi = p.min(0), p.max(0)
    scale = ((1 << _MORTON_BITS) - 1) / np.where(hi > lo, hi - lo, 1.0)
    return morton_encode(np.rint((p - lo) * scale).astype(np.int64))


def _byte_planes(cols: np.ndarray) -> bytes:
    """[n, C] uint16 as the high byte plane of every column, then the low byte plane of every column."""
    c = np.ascontiguousarray(cols.T)
    return (c >> 8).astype(np.uint8).tobytes() + (c & 0xFF).astype(np.uint8).tobytes()


def _from_byte_planes(buf: np.ndarray, n: int, c: int) -> np.ndarray:
    """Inverse of :func:`_byte_planes`: [c, n] uint16 (transposed) from 2 * c * n bytes."""
    p = buf[: 2 * c * n].reshape(2, c, n)
    return (p[0].astype(np.uint16) << 8) | p[1]


def _code_planes(codes: np.ndarray) -> bytes:
    """[n, C] codes: one byte plane per column (uint8), or all high then all low planes (uint16)."""
    return np.ascontiguousarray(codes.T).tobytes() if codes.dtype == np.uint8 else _byte_planes(codes)


def _pack(f16: np.ndarray, gcodes: np.ndarray, codes: np.ndarray) -> bytes:
    """Raw chunk bytes: the fp16 columns' high byte planes, their low byte planes (the noisy mantissa ends,
    kept apart: 1.5 % fewer bytes than interleaving them on the demo models), the uniform geometry code planes
    (if any), then the feature code planes."""
    return _byte_planes(f16) + _code_planes(gcodes) + _code_planes(codes)


def _unpack(raw: bytes, n: int, layout: _Layout, f16_out: np.ndarray, g_out: np.ndarray,
            codes_out: np.ndarray) -> None:
    """Inverse of :func:`_pack` into the given rows; CodecError for non-finite halves or codes out of range."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    f16 = _from_byte_planes(buf, n, layout.c16)
    if n and not np.isfinite(f16.view(np.float16)).all():
        raise CodecError("non-finite fp16 anchor values")
    f16_out[:] = f16.T
    pos = 2 * layout.c16 * n
    for out, c, bits, what in ((g_out, layout.g, layout.geometry_bits, "geometry"),
                               (codes_out, layout.F, layout.feature_bits, "feature")):
        if not c:
            continue
        size = c * n * (1 if bits <= 8 else 2)
        part = buf[pos:pos + size]
        codes = part.reshape(c, n) if bits <= 8 else _from_byte_planes(part, n, c)
        if n and int(codes.max()) > (1 << bits) - 1:
            raise CodecError(f"{what} codes out of range")
        out[:] = codes.T
        pos += size


def _anchors_from(f16: np.ndarray, gcodes: np.ndarray, codes: np.ndarray, quant: AnchorQuant,
                  k: int) -> dict[str, Tensor]:
    """The anchor dict (float32) of fp16 columns, uniform geometry codes [n, 3k + S] (or none) and feature
    codes [n, F]."""
    n = len(f16)
    v = torch.from_numpy(np.ascontiguousarray(f16).view(np.float16).astype(np.float32))
    geo = v[:, 3:]
    if quant.uniform_geometry:
        lo, hi = quant.geometry_ranges()
        geo = grid_values(torch.from_numpy(gcodes.astype(np.int64)), lo, hi, quant.geometry_bits)
    return {"anchor": v[:, :3].contiguous(), "offset": geo[:, :3 * k].reshape(n, k, 3).contiguous(),
            "anchor_feat": feature_values(torch.from_numpy(codes.astype(np.int64)), quant),
            "scaling": geo[:, 3 * k:].contiguous()}


# -- reading -----------------------------------------------------------------------------------------------
@dataclass
class AnchorStreamInfo:
    """What the header, its section and the chunk index of an anchor stream say (chunks not decompressed)."""

    format_version: int
    n_anchors: int
    codec: str
    chunk_size: int
    feat_dim: int
    n_offsets: int
    scaling_dim: int
    quant: AnchorQuant
    spec: dict
    mlps: dict[str, Tensor]
    mlp_bytes: int  # compressed
    mlp_raw_bytes: int
    chunks: list[ChunkEntry]
    file_size: int
    expected_size: int
    header_size: int
    unit_type: str = "anchors"

    @property
    def n_complete_chunks(self) -> int:
        return sum(1 for c in self.chunks if c.offset + c.length <= self.file_size)

    @property
    def index_end(self) -> int:
        return self.header_size + INDEX_ENTRY_SIZE * len(self.chunks) + 4

    @property
    def raw_per_anchor(self) -> int:
        return _Layout.of(self.quant, self.n_offsets, self.scaling_dim).raw_per_anchor

    def prefix_size(self, n_chunks: int) -> int:
        """Exact bytes of the stream cut to its first ``n_chunks`` chunks."""
        return self.header_size + INDEX_ENTRY_SIZE * n_chunks + 4 + sum(c.length for c in self.chunks[:n_chunks])


@dataclass
class DecodedAnchors:
    """Result of :func:`decode_anchors`: anchors in stream order and the model that decodes them."""

    anchors: dict[str, Tensor]
    spec: dict
    mlps: dict[str, Tensor]
    quant: AnchorQuant
    info: AnchorStreamInfo
    n_declared: int
    complete: bool
    message: str | None = None

    @property
    def n_decoded(self) -> int:
        return int(self.anchors["anchor"].shape[0])


def _check_preamble(data: bytes, err) -> int:
    """The anchor format version of a stream's first bytes; RaveError for anything else."""
    if not MAGIC.startswith(bytes(data[:4])):
        raise err("not a .rave file (bad magic)")
    if len(data) < 9:
        raise err(f"truncated .rave file ({len(data)} bytes)")
    unit, version = split_version(struct.unpack_from("<H", data, 4)[0])
    kind = unit_type_of(data)
    if kind == "gaussians":
        raise err(wrong_unit_message("gaussians", "anchors"))
    if kind is None:
        raise err(f"unknown unit type {unit} in .rave header (this reader knows Gaussians and anchors; upgrade?)")
    if version > FORMAT_VERSION:
        raise err(f".rave anchor format version {version} is newer than this reader supports ({FORMAT_VERSION}); "
                  "upgrade")
    if version < 1:
        raise err(f"unsupported .rave anchor format version {version}")
    if data[8] != UNIT_ANCHORS:
        raise err(f"inconsistent unit type {data[8]} in .rave anchor header")
    return version


def anchor_bytes_needed(prefix: bytes) -> int:
    """How many leading bytes :func:`read_anchor_info` needs, judged from ``prefix``; call again with more bytes
    until ``len(prefix) >= anchor_bytes_needed(prefix)`` (header, then its section, then the index)."""
    if len(prefix) < 9:
        return ANCHOR_HEADER_SIZE
    _check_preamble(prefix, RaveError)
    if len(prefix) < ANCHOR_HEADER_SIZE:
        return ANCHOR_HEADER_SIZE
    f = _HEAD.unpack_from(prefix, 0)
    flags, n_chunks, F, k, S, spec_len, mlp_len = f[6], f[9], f[10], f[11], f[12], f[14], f[16]
    geo = 3 * k + S if flags & FLAG_UNIFORM_GEOMETRY else 0
    return ANCHOR_HEADER_SIZE + spec_len + 8 * (F + geo) + mlp_len + 4 + INDEX_ENTRY_SIZE * n_chunks + 4


def _parse_mlps(raw: bytes, err) -> dict[str, Tensor]:
    pos, n = 2, struct.unpack_from("<H", raw, 0)[0] if len(raw) >= 2 else -1
    if not 0 <= n <= MAX_MLP_TENSORS:
        raise err("the MLP weight table is damaged")
    table = []
    try:
        for _ in range(n):
            (ln,) = struct.unpack_from("<H", raw, pos)
            name = raw[pos + 2:pos + 2 + ln].decode("utf-8")
            pos += 2 + ln
            (nd,) = struct.unpack_from("<B", raw, pos)
            if not ln or len(name.encode()) != ln or nd > MAX_MLP_NDIM or name in dict(table):
                raise ValueError
            dims = struct.unpack_from(f"<{nd}I", raw, pos + 1)
            pos += 1 + 4 * nd
            table.append((name, dims))
    except (struct.error, UnicodeDecodeError, ValueError):
        raise err("the MLP weight table is damaged") from None
    sizes = [math.prod(d) for _, d in table]  # Python ints: forged dims cannot wrap around
    if pos + 4 * sum(sizes) != len(raw):
        raise err("the MLP weight table does not match its data length")
    data = np.frombuffer(raw, dtype="<f4", offset=pos).astype(np.float32)
    if not np.isfinite(data).all():
        raise err("the MLP weights hold NaN or infinite values")
    out, at = {}, 0
    for (name, dims), size in zip(table, sizes):
        out[name] = torch.from_numpy(data[at:at + size].copy()).reshape(dims)
        at += size
    return out


def _parse(data: bytes, name: str | None) -> AnchorStreamInfo:
    err = lambda msg: RaveError(msg, name)  # noqa: E731
    version = _check_preamble(data, err)
    if len(data) < ANCHOR_HEADER_SIZE:
        raise err(f"truncated .rave file: {len(data)} bytes, the header alone needs {ANCHOR_HEADER_SIZE}")
    (_, _, hsize, _, codec_id, bits, flags, n, chunk_size, n_chunks, F, k, S, gbits, spec_len, mlp_raw, mlp_len,
     crc) = _HEAD.unpack_from(data, 0)
    if zlib.crc32(data[:ANCHOR_HEADER_SIZE - 4]) != crc or hsize != ANCHOR_HEADER_SIZE:
        raise err("corrupt .rave header (CRC mismatch)")
    codec = codec_by_id(codec_id)
    if codec is None:
        raise err(f"unknown codec id {codec_id} in .rave header")
    if flags & ~FLAG_UNIFORM_GEOMETRY:
        raise err(f"unknown flags {flags:#x} in .rave anchor header")
    uniform = bool(flags & FLAG_UNIFORM_GEOMETRY)
    if not 1 <= bits <= MAX_FEATURE_BITS or not (1 <= gbits <= MAX_FEATURE_BITS if uniform else gbits == 0):
        raise err(f"invalid bit depths in .rave header (features {bits}, geometry {gbits})")
    if not (1 <= F <= MAX_FEAT_DIM and 1 <= k <= MAX_OFFSETS and 1 <= S <= MAX_SCALING):
        raise err(f"invalid anchor sizes in .rave header (F {F}, k {k}, S {S})")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise err(f"invalid chunk size {chunk_size} in .rave header")
    if n_chunks != -(-n // chunk_size):
        raise err(f"inconsistent header: {n} anchors in {n_chunks} chunks of {chunk_size}")
    if spec_len > MAX_SPEC_BYTES or mlp_raw > MAX_MLP_BYTES or mlp_raw > (1 << 20) + 64 * mlp_len or (
            mlp_len > 2 * mlp_raw + 1024):
        raise err(f"implausible section sizes in .rave header (spec {spec_len}, MLPs {mlp_len} -> {mlp_raw} bytes)")
    G = 3 * k + S if uniform else 0
    ranges = 8 * (F + G)  # lows and highs, float32
    header_size = ANCHOR_HEADER_SIZE + spec_len + ranges + mlp_len + 4
    index_end = header_size + INDEX_ENTRY_SIZE * n_chunks + 4
    if index_end > len(data):  # checked before decompressing or allocating anything
        raise err(f"truncated .rave file: {len(data)} bytes, the header, model and chunk index need {index_end}")
    section = data[ANCHOR_HEADER_SIZE:header_size - 4]
    if zlib.crc32(section) != struct.unpack_from("<I", data, header_size - 4)[0]:
        raise err("corrupt .rave model section (CRC mismatch)")
    try:
        text = section[:spec_len].decode("utf-8")
    except UnicodeDecodeError:
        raise err("unreadable model spec in .rave header (not UTF-8)") from None
    spec = strict_loads(text, "unreadable model spec in .rave header", name)
    if not isinstance(spec, dict):
        raise err("the model spec in the .rave header is not a mapping")
    _check_spec_sizes(spec, F, k, name)
    lo = np.frombuffer(section, "<f4", F, spec_len).tolist()
    hi = np.frombuffer(section, "<f4", F, spec_len + 4 * F).tolist()
    glo = np.frombuffer(section, "<f4", G, spec_len + 8 * F).tolist()
    ghi = np.frombuffer(section, "<f4", G, spec_len + 8 * F + 4 * G).tolist()
    try:
        quant = AnchorQuant(bits, tuple(lo), tuple(hi), "uniform" if uniform else "fp16", gbits,
                            tuple(glo[:3 * k]), tuple(ghi[:3 * k]), tuple(glo[3 * k:]), tuple(ghi[3 * k:]))
    except RaveError as e:
        raise err(f"invalid quantization ranges in .rave header: {e}") from None
    try:
        mlp = codec.decompress(bytes(section[spec_len + ranges:]), mlp_raw)
    except CodecError as e:
        raise err(f"the MLP weights do not decode: {e}") from None
    mlps = _parse_mlps(mlp, err)
    raw_per = _Layout.of(quant, k, S).raw_per_anchor
    chunks, offset = read_index(data, header_size, index_end, n, chunk_size, raw_per, "anchors", err)
    return AnchorStreamInfo(
        format_version=version, n_anchors=n, codec=codec.name, chunk_size=chunk_size, feat_dim=F, n_offsets=k,
        scaling_dim=S, quant=quant, spec=spec, mlps=mlps, mlp_bytes=mlp_len, mlp_raw_bytes=mlp_raw, chunks=chunks,
        file_size=len(data), expected_size=offset, header_size=header_size,
    )  # fmt: skip


def read_anchor_info(data_or_path, *, name: str | None = None) -> AnchorStreamInfo:
    """Parse and check an anchor stream's header, model section and chunk index (RaveError naming the file).
    A prefix of at least :func:`anchor_bytes_needed` bytes is enough."""
    data, name = _load(data_or_path, name)
    return _parse(data, name)


def cut_anchor_stream(data_or_path, k: int, *, name: str | None = None) -> bytes:
    """The anchor stream of the first ``k`` anchors of a stream, without recompressing anything: ``k`` a chunk
    boundary or N, its chunks present. Byte-identical to ``AnchorEncoder.encode(k)`` for the same anchors."""
    import numbers

    data, name = _load(data_or_path, name)
    info = _parse(data, name)
    n = info.n_anchors
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= n:
        raise RaveError(f"prefix length must be an integer 0..{n}, got {k!r}", name)
    if k % info.chunk_size and k != n:
        raise RaveError(f"{k} anchors is not a chunk boundary (chunks of {info.chunk_size})", name)
    chunks = info.chunks[: -(-k // info.chunk_size)]
    if chunks and chunks[-1].offset + chunks[-1].length > len(data):
        raise RaveError(f"the stream is truncated before anchor {k}", name)
    head = bytearray(data[:ANCHOR_HEADER_SIZE])
    struct.pack_into("<QII", head, 12, k, info.chunk_size, len(chunks))
    struct.pack_into("<I", head, ANCHOR_HEADER_SIZE - 4, zlib.crc32(head[:ANCHOR_HEADER_SIZE - 4]))
    index = index_bytes([(c.length, c.crc, c.count) for c in chunks])
    return b"".join([bytes(head), data[ANCHOR_HEADER_SIZE:info.header_size], index,
                     *(data[c.offset:c.offset + c.length] for c in chunks)])


def _check_budget(info: AnchorStreamInfo, n_chunks: int, name, max_anchors: int | None,
                  max_ratio: float | None) -> None:
    """Refuse, before decompressing any chunk, more anchors than allowed or a likely decompression bomb."""
    n = sum(c.count for c in info.chunks[:n_chunks])
    if max_anchors is not None and n > max_anchors:
        raise RaveError(f"the stream holds {n} anchors, more than the limit of {max_anchors} (max_anchors); raise "
                        "the limit to decode it", name)
    raw = n * info.raw_per_anchor
    if max_ratio is None or raw <= FREE_BYTES:
        return
    used = info.chunks[n_chunks - 1].offset + info.chunks[n_chunks - 1].length
    if raw > FREE_BYTES + max_ratio * used:
        raise RaveError(f"refusing a likely decompression bomb: {n} anchors ({raw} bytes uncompressed) from {used} "
                        f"bytes is a {raw / used:.0f}:1 ratio, above the limit of {max_ratio:g}:1 (max_ratio)", name)


def decode_anchors(data_or_path, *, strict: bool = False, name: str | None = None,
                   max_anchors: int | None = DEFAULT_MAX_ANCHORS,
                   max_ratio: float | None = DEFAULT_MAX_RATIO) -> DecodedAnchors:
    """Decode an anchor stream (bytes or a path): anchors in stream order, the spec, the MLP weights.

    A stream cut short decodes its complete chunks (a :class:`~rave_viewer.codec.container.RaveStreamWarning`,
    or RaveError when ``strict``); anything else wrong is one RaveError naming the file. The work is bounded
    by the input (``max_anchors``; ``max_ratio`` decoded bytes per file byte beyond :data:`FREE_BYTES`).
    """
    _check_limit(max_anchors, "max_anchors", (int, np.integer))
    _check_limit(max_ratio, "max_ratio", (int, float, np.integer, np.floating))
    data, name = _load(data_or_path, name)
    info = _parse(data, name)
    codec = get_codec(info.codec)
    n_chunks_ok = sum(1 for c in info.chunks if c.offset + c.length <= len(data))
    _check_budget(info, n_chunks_ok, name, max_anchors, max_ratio)
    counts = [c.count for c in info.chunks[:n_chunks_ok]]
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(int)
    n_ok = int(starts[-1])
    k, q = info.n_offsets, info.quant
    layout = _Layout.of(q, k, info.scaling_dim)
    f16 = np.empty((n_ok, layout.c16), dtype=np.uint16)
    gcodes = np.empty((n_ok, layout.g), dtype=_code_dtype(q.geometry_bits))
    codes = np.empty((n_ok, layout.F), dtype=_code_dtype(q.feature_bits))
    view = memoryview(data)

    def job(i: int) -> str | None:
        c, a = info.chunks[i], int(starts[i])
        blob = view[c.offset:c.offset + c.length]
        if zlib.crc32(blob) != c.crc:
            return f"chunk {i} is corrupt (CRC mismatch)"
        try:
            raw = codec.decompress(bytes(blob), c.count * layout.raw_per_anchor)
            _unpack(raw, c.count, layout, f16[a:a + c.count], gcodes[a:a + c.count], codes[a:a + c.count])
        except CodecError as e:
            return f"chunk {i} does not decode: {e}"
        return None

    first = next((e for e in parallel_map(job, n_chunks_ok, DEFAULT_WORKERS) if e is not None), None)
    if first is not None:
        raise RaveError(first, name)
    message = None
    if n_chunks_ok < len(info.chunks):
        message = (f"truncated .rave stream: recovered {n_ok} of {info.n_anchors} anchors ({n_chunks_ok} of "
                   f"{len(info.chunks)} chunks; {len(data)} of {info.expected_size} bytes)")
    elif len(data) > info.expected_size:
        message = f"{len(data) - info.expected_size} unexpected bytes after the last chunk (ignored)"
    if message is not None:
        if strict:
            raise RaveError(message, name)
        warnings.warn(f"{name}: {message}" if name else message, RaveStreamWarning, stacklevel=2)
    return DecodedAnchors(anchors=_anchors_from(f16, gcodes, codes, q, k), spec=info.spec, mlps=info.mlps, quant=q,
                          info=info, n_declared=info.n_anchors, complete=n_chunks_ok == len(info.chunks),
                          message=message)


__all__ = [
    "ANCHOR_FIELDS",
    "ANCHOR_HEADER_SIZE",
    "AnchorEncoder",
    "AnchorQuant",
    "AnchorStreamInfo",
    "DEFAULT_ANCHOR_CHUNK",
    "DecodedAnchors",
    "FORMAT_VERSION",
    "anchor_bytes_needed",
    "cut_anchor_stream",
    "decode_anchors",
    "fake_quantize_anchors",
    "feature_codes",
    "feature_values",
    "read_anchor_info",
]
