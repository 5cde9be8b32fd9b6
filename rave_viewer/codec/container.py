"""The progressive .rave file: every prefix of a ranked scene is a valid file whose exact size is known.

Layout (all integers little-endian; format version 4; versions 1-3 are the special cases noted)::

    header   HEADER_SIZE bytes   magic b"RAVE", version (high byte: unit type 0 = Gaussians, unit_type.py), header
                                 size, N, chunk size, chunk count, SH degree, codec id, bit depths, flags (bit 0:
                                 SH codebook; v3 bits 8-11: faint_bits), bounds (float32), ranges (float64), CRC32
    (v2)     HEADER_V2_EXTRA     codebook entries K (0: scalar SH rest), codebook blob length B, CRC32 of both
    (v2)     B + 4 bytes         the SH-rest codebook ([K, C, 3] codes, coefficient-major byte planes, compressed
                                 with the chunk codec), CRC32 of the blob
    index    12 * n_chunks + 4   per chunk: compressed length, CRC32 of the compressed bytes, Gaussian count;
                                 then CRC32 of the index
    chunks   chunk i holds Gaussians [i*chunk_size, min((i+1)*chunk_size, N)) of the given order,
             each compressed on its own with the codec (coders.py)

Inside a chunk the order is free: Gaussians are sorted by the Morton code of their quantized position (stable,
so ties keep the given order) and stored column-wise: Morton-code deltas as big-endian byte planes, then one
column per quantized attribute (rotation index, rotation, scales, opacity, SH DC, SH rest coefficient by
coefficient, or with a codebook (v2) one index per Gaussian), 1 byte per value up to 8 bits, else a high and a low
byte plane. With ``faint_bits`` (v3) a Gaussian's opacity code says how many bits its position, rotation and SH
grids lose (quantize.faint_drop): the chunk is sorted by that class, then by Morton code, and each class's deltas
start from zero (its positions are on its own grid); the decoder reads the opacity column first. With the SH
transform (v4, header flags bit 1, transform.py) the codebook section holds D = 3 x SH-rest coefficients in place
of K and the basis (step float64, [D + 2, D] int32) as its blob; each chunk then has D 16-bit columns of transform
codes in place of the SH-rest coefficients. The codebook is stored once in the header, so every prefix shares it and the header's size does not
depend on the prefix.

Reading from a network (byte ranges): :func:`bytes_needed` says how many leading bytes the header, codebook and
chunk index take (call it again with more bytes until it stops growing), :func:`read_info` parses them from such
a prefix, and :attr:`StreamInfo.header_size` / :meth:`StreamInfo.prefix_size` give the exact byte offsets. The decoder returns Gaussians in
this *stream order*: the first k decoded Gaussians are the encoder's first k, each chunk sorted on its own
(set-equal to ``g.prefix(k)``; :meth:`ProgressiveEncoder.stream_order` gives the exact permutation).

Consequences: the grid (bounds, bit depths) is fixed for the whole scene, so chunk i's bytes never depend on k;
the header and index depend on k only through the chunk count. Hence

* ``size_of_prefix(k) = HEADER_SIZE + 12 * ceil(k / chunk) + 4 + sum(full chunk lengths) + partial chunk``,
  where only the last partial chunk needs compressing (full chunks are compressed once, lazily, and cached);
* ``encode(k)`` writes exactly ``size_of_prefix(k)`` bytes;
* a file cut after any complete chunk decodes to that prefix (with a warning, or RaveError when strict).

``k = 0`` is a valid, empty stream (header + empty index).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import RaveError
from ..scene.gaussians import Gaussians, num_sh_bases
from .chunked import INDEX_ENTRY_SIZE, ChunkedEncoder, index_bytes, iter_index
from .coders import DEFAULT_CODEC, Codec, CodecError, codec_by_id, get_codec
from .morton import morton_encode
from .quantize import QuantConfig, QuantizedGaussians, dequantize, quantize

MAGIC = b"RAVE"
FORMAT_VERSION = 4  # the newest version this module reads
#: what the encoder writes unless told otherwise: 2, or 3-4 when the settings need it (faint_bits, shN_step)
DEFAULT_WRITE_VERSION = 2
DEFAULT_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 1 << 18  # Gaussians per chunk: bounds the memory one (forged) chunk can claim
MAX_GAUSSIANS = (1 << 32) - 1  # what the format can hold
#: decode() refuses streams of more Gaussians than this unless told otherwise (max_gaussians=): at about 0.3-1.3
#: kB of peak memory per decoded Gaussian (SH degree 0-3), 20M is a 6-26 GB decode, larger than any real scene.
DEFAULT_MAX_GAUSSIANS = 20_000_000
#: Decompression-bomb guard: decoded bytes (chunk payload, raw) per byte of the file up to the last complete
#: chunk. Measured on real encodes (lzma/zstd/brotli, chunks of 4096 and 2^18): trained scenes 2.5-5.3:1 (SH
#: degree 2, also padded to degree 3 with zero SH), every Gaussian duplicated 8 times 17-22:1, a trained scene
#: padded with 4x its size of identical "dead" Gaussians 17-18:1. Only synthetic scenes reach more: 2^18
#: identical Gaussians 700-1250:1 in chunks of 4096 and 5900 (lzma) to 74000:1 (brotli) in one chunk of 2^18,
#: which is what a bomb is (1.4 kB of all-zero brotli chunks declaring 8.4M Gaussians = 105000:1). 64 leaves
#: 3x headroom over the most redundant realistic scene while bounding what a file can cost to ~64x its size
#: (+ FREE_GAUSSIANS) of decoded data; max_ratio=None decodes a legitimately degenerate stream anyway.
DEFAULT_MAX_RATIO = 64.0
#: The first Gaussians decode whatever their compression ratio (one chunk of the largest size: at most ~340 MB
#: of peak memory at SH degree 3), so small synthetic scenes of identical Gaussians always decode.
FREE_GAUSSIANS = MAX_CHUNK_SIZE
#         magic ver hsize N  chunk nchunk deg codec bits[8] flags bounds[6] ranges[6] crc
_HEADER = struct.Struct("<4sHHQIIBB8BH6f6dI")
HEADER_SIZE = _HEADER.size


def fixed_header_size(version: int) -> int:
    """Bytes of the fixed header of a stream of this format version (before any codebook section): the same for
    versions 1-3 (the unit type is the high byte of the version field, 0 for Gaussians: unit_type.py)."""
    return HEADER_SIZE
#                       K  blob_len crc
_HEADER_V2 = struct.Struct("<III")
HEADER_V2_EXTRA = _HEADER_V2.size
FLAG_SH_VQ = 1  # header flags bit: the SH rest is coded as codebook indices
FLAG_SH_KLT = 2  # (v4) header flags bit: the SH rest is transform-coded (transform.py); the codebook section
#                  then holds D = 3 x SH-rest coefficients as "K" and the basis as its blob
FAINT_SHIFT, FAINT_MASK = 8, 0x0F00  # (v3) header flags bits 8-11: faint_bits of the quantizer
DECODE_WORKERS = min(8, os.cpu_count() or 1)  # threads decompressing chunks in parallel


class RaveStreamWarning(UserWarning):
    """A .rave stream that decoded only partly (truncated): fewer Gaussians than its header declares."""


class RaveValueWarning(UserWarning):
    """Values of a scene that the encoder had to change beyond quantization (infinite opacity logits)."""


# -- chunk payload layout ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Column layout of a chunk for one (cfg, SH degree): bit depth and largest code of every column."""

    cfg: QuantConfig
    sh_degree: int
    bits: tuple[int, ...]  # per attribute column
    max_code: tuple[int, ...]
    kinds: tuple[str, ...] = ()  # per column: the grid kind that faint Gaussians coarsen ("" = none)

    @classmethod
    def of(cls, cfg: QuantConfig, sh_degree: int) -> "_Layout":
        sym = lambda b: 2 * ((1 << (b - 1)) - 1)  # noqa: E731  mid-tread codes 0..2L
        bits, mx = [2], [3]  # rotation index
        bits += [cfg.rot_bits] * 3
        mx += [(1 << cfg.rot_bits) - 1] * 3
        bits += [cfg.scale_bits] * 3
        mx += [(1 << cfg.scale_bits) - 1] * 3
        bits.append(cfg.opacity_bits)
        mx.append((1 << cfg.opacity_bits) - 1)
        bits += [cfg.sh0_bits] * 3
        mx += [sym(cfg.sh0_bits)] * 3
        kinds = ["", "rot", "rot", "rot", "scale", "scale", "scale", "", "sh", "sh", "sh"]
        if cfg.sh_vq and sh_degree:
            k = cfg.sh_codebook.shape[0]
            bits.append(8 if k <= 256 else 16)
            mx.append(k - 1)
            return cls(cfg, sh_degree, tuple(bits), tuple(mx), tuple(kinds + [""]))
        if cfg.shN_step and sh_degree:  # transform codes: 16 bits each, 0..2 L_j (faint rows share the bound)
            from .transform import levels

            lv = levels(cfg)
            return cls(cfg, sh_degree, tuple(bits + [16] * len(lv)), tuple(mx + [int(2 * v) for v in lv]),
                       tuple(kinds + [""] * len(lv)))
        for band in range(1, sh_degree + 1):
            b = cfg.shN_bits[band - 1]
            bits += [b] * (3 * (2 * band + 1))
            mx += [sym(b)] * (3 * (2 * band + 1))
            kinds += ["sh"] * (3 * (2 * band + 1))
        return cls(cfg, sh_degree, tuple(bits), tuple(mx), tuple(kinds))

    def drop(self, cols: np.ndarray) -> np.ndarray | None:
        """[n] int64 bits each row's grids lose (from its opacity codes, column 7), None without faint_bits."""
        if not self.cfg.faint_bits:
            return None
        from .quantize import faint_drop_table

        return faint_drop_table(self.cfg.opacity_bits, self.cfg.faint_bits).numpy()[cols[:, 7]]

    def row_max(self, j: int, drop: np.ndarray) -> np.ndarray:
        """[n] largest valid code of column ``j`` on each row's (coarsened) grid."""
        from .quantize import kind_drop

        b, kind = self.bits[j], self.kinds[j]
        e = b - kind_drop(drop, b, kind)
        return 2 * ((1 << (e - 1)) - 1) if kind == "sh" else (1 << e) - 1

    def pos_limit(self, drop: np.ndarray | None) -> np.ndarray | int:
        """Morton codes are below this (per row with faint_bits: 2^(3 * its position bits))."""
        from .quantize import kind_drop

        p = self.cfg.pos_bits
        if drop is None:
            return 1 << (3 * p)
        return np.left_shift(np.uint64(1), (3 * (p - kind_drop(drop, p, "pos"))).astype(np.uint64))

    @property
    def morton_bytes(self) -> int:
        return (3 * self.cfg.pos_bits + 7) // 8

    @property
    def bytes_per_gaussian(self) -> int:
        return self.morton_bytes + sum(1 if b <= 8 else 2 for b in self.bits)

    @property
    def dtype(self):
        return np.uint8 if max(self.bits) <= 8 else np.uint16


def _columns(q: QuantizedGaussians, layout: _Layout) -> np.ndarray:
    """[N, C] attribute codes in layout order (uint8 or uint16), filled part by part (no big temporaries)."""
    n = len(q)
    sh = q.shN_index if layout.cfg.sh_vq and layout.sh_degree else q.shN  # shN: coefficient-major, then channel
    parts = [q.rot_index, q.rot, q.scales, q.opacities, q.sh0, sh]
    cols = np.empty((n, len(layout.bits)), dtype=layout.dtype)
    j = 0
    for t in parts:
        a = t.reshape(n, -1).cpu().numpy()
        cols[:, j : j + a.shape[1]] = a
        j += a.shape[1]
    assert j == cols.shape[1]
    return cols


def _chunk_perm(morton: np.ndarray, cols: np.ndarray, layout: _Layout) -> np.ndarray:
    """In-chunk order: stable Morton sort; with faint_bits by (bits dropped, Morton code), since each class of
    Gaussians has its positions on its own grid."""
    drop = layout.drop(cols)
    if drop is None:
        return np.argsort(morton, kind="stable")
    return np.lexsort((morton, drop))


def _pack_chunk(morton: np.ndarray, cols: np.ndarray, layout: _Layout) -> tuple[bytes, np.ndarray]:
    """Raw (uncompressed) bytes of one chunk and the in-chunk permutation (:func:`_chunk_perm`).

    Positions are Morton-code deltas (the first of each faint class: its code itself)."""
    perm = _chunk_perm(morton, cols, layout)
    m = morton[perm]
    deltas = np.diff(m, prepend=np.uint64(0))
    drop = layout.drop(cols)
    if drop is not None and len(m):
        d = drop[perm]
        start = np.flatnonzero(np.diff(d, prepend=-1))
        deltas[start] = m[start]
    deltas = deltas.astype(">u8")
    planes = deltas.view(np.uint8).reshape(-1, 8)[:, 8 - layout.morton_bytes :].T
    out = [np.ascontiguousarray(planes).tobytes()]
    c = np.ascontiguousarray(cols[perm].T)  # [C, n]
    if layout.dtype == np.uint8:
        out.append(c.tobytes())
    else:
        for j, b in enumerate(layout.bits):
            if b <= 8:
                out.append(c[j].astype(np.uint8).tobytes())
            else:
                out.append((c[j] >> 8).astype(np.uint8).tobytes())
                out.append((c[j] & 0xFF).astype(np.uint8).tobytes())
    raw = b"".join(out)
    assert len(raw) == len(morton) * layout.bytes_per_gaussian
    return raw, perm


def _unpack_chunk(
    raw: bytes, n: int, layout: _Layout, codes_out: np.ndarray | None = None, cols_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_pack_chunk`: ([n] uint64 Morton codes, [n, C] int32 codes); CodecError if invalid.

    ``codes_out`` / ``cols_out`` (slices of the whole stream's arrays) receive the result in place, so decoding
    never holds a second copy of the scene's codes.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    mb = layout.morton_bytes
    cols = np.empty((n, len(layout.bits)), dtype=np.int32) if cols_out is None else cols_out
    pos = mb * n
    wide = [j for j, b in enumerate(layout.bits) if b > 8]
    if not wide:  # one [C, n] view of all columns: a single transpose-copy
        v = buf[pos : pos + n * len(layout.bits)].reshape(len(layout.bits), n)
        if n and (v.max(axis=1) > np.asarray(layout.max_code)).any():
            j = int(np.argmax(v.max(axis=1) > np.asarray(layout.max_code)))
            raise CodecError(f"attribute column {j} has codes out of range")
        cols[:] = v.T
    else:
        for j, b in enumerate(layout.bits):
            if b <= 8:
                v = buf[pos : pos + n]
                pos += n
            else:
                v = (buf[pos : pos + n].astype(np.int32) << 8) | buf[pos + n : pos + 2 * n]
                pos += 2 * n
            if int(v.max(initial=0)) > layout.max_code[j]:
                raise CodecError(f"attribute column {j} has codes out of range")
            cols[:, j] = v
    planes = np.zeros((n, 8), dtype=np.uint8)
    planes[:, 8 - mb :] = buf[: mb * n].reshape(mb, n).T
    deltas = planes.view(">u8").reshape(n).astype(np.uint64)
    drop = layout.drop(cols)
    if drop is None:
        codes = np.cumsum(deltas, dtype=np.uint64, out=codes_out)
        same = slice(None)
    else:  # classes in increasing order, each one's deltas summed from its own start
        if (np.diff(drop) < 0).any():
            raise CodecError("faint classes out of order")
        for j, kind in enumerate(layout.kinds):
            if kind and (cols[:, j] > layout.row_max(j, drop)).any():
                raise CodecError(f"attribute column {j} has codes out of range for their faint class")
        total = np.cumsum(deltas, dtype=np.uint64)  # wraps modulo 2^64 like the differences below
        first = np.diff(drop, prepend=-1) != 0
        seg = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # start row of each row's class
        base = np.where(seg > 0, total[np.maximum(seg - 1, 0)], np.uint64(0))
        codes = np.subtract(total, base, out=codes_out)
        same = ~first[1:]
    if not n:
        return codes, cols
    if drop is None:
        bad = int(codes[-1]) >= layout.pos_limit(None) or (codes[1:] < codes[:-1]).any()
    else:
        bad = (codes >= layout.pos_limit(drop)).any() or (codes[1:] < codes[:-1])[same].any()
    if bad:  # a decrease means overflow
        raise CodecError("position codes out of range")
    return codes, cols


def _quantized_from(codes: np.ndarray, cols: np.ndarray, cfg: QuantConfig, bounds: Tensor, sh_degree: int):
    from .morton import morton_decode

    n = len(codes)
    k = num_sh_bases(sh_degree) - 1
    c = torch.from_numpy(cols.astype(np.int32, copy=False))
    index = None
    if cfg.sh_vq and k:
        index = c[:, 11].clone()
        shN = torch.from_numpy(np.array(cfg.sh_codebook))[index.long()]  # indices were checked against K
    else:
        shN = c[:, 11 : 11 + 3 * k].reshape(n, k, 3).clone()
    return QuantizedGaussians(
        means=torch.from_numpy(morton_decode(codes).astype(np.int32)),
        rot_index=c[:, 0].clone(),
        rot=c[:, 1:4].clone(),
        scales=c[:, 4:7].clone(),
        opacities=c[:, 7].clone(),
        sh0=c[:, 8:11].reshape(n, 1, 3).clone(),
        shN=shN,
        cfg=cfg,
        bounds=bounds,
        shN_index=index,
    )


# -- header ------------------------------------------------------------------------------------------------
def _book_planes(book: np.ndarray, shN_bits) -> bytes:
    """Raw bytes of a [K, C, 3] codebook: one byte plane per coefficient (two when its band has > 8 bits)."""
    from .quantize import _sh_band_of_coeff

    out = []
    wide = np.array(shN_bits)[_sh_band_of_coeff(book.shape[1]) - 1] > 8
    for j in range(book.shape[1]):
        for ch in range(3):
            v = book[:, j, ch]
            if wide[j]:
                out.append((v >> 8).astype(np.uint8).tobytes())
            out.append((v & 0xFF).astype(np.uint8).tobytes())
    return b"".join(out)


def _book_from_planes(raw: bytes, k: int, c: int, shN_bits) -> np.ndarray:
    from .quantize import _sh_band_of_coeff

    buf = np.frombuffer(raw, dtype=np.uint8)
    book = np.empty((k, c, 3), dtype=np.int32)
    wide = np.array(shN_bits)[_sh_band_of_coeff(c) - 1] > 8
    pos = 0
    for j in range(c):
        for ch in range(3):
            if wide[j]:
                book[:, j, ch] = (buf[pos : pos + k].astype(np.int32) << 8) | buf[pos + k : pos + 2 * k]
                pos += 2 * k
            else:
                book[:, j, ch] = buf[pos : pos + k]
                pos += k
    return book


def _book_raw_size(k: int, c: int, shN_bits) -> int:
    from .quantize import _sh_band_of_coeff

    return sum(3 * k * (2 if shN_bits[b - 1] > 8 else 1) for b in _sh_band_of_coeff(c))


def _book_blob(cfg: QuantConfig, codec: Codec) -> bytes:
    """The compressed codebook (or SH transform, v4) of ``cfg`` (b"" without one)."""
    if cfg.shN_step and cfg.sh_basis is not None:
        from .transform import to_bytes

        return codec.compress(to_bytes(cfg))
    if not cfg.sh_vq or cfg.sh_codebook is None:
        return b""
    return codec.compress(_book_planes(np.asarray(cfg.sh_codebook), cfg.shN_bits))


def _header_bytes(n: int, chunk_size: int, sh_degree: int, codec: Codec, cfg: QuantConfig, bounds: Tensor,
                  version: int = FORMAT_VERSION, book: bytes = b"") -> bytes:
    """Header (v1) or header + codebook section (v2) of a stream of ``n`` Gaussians; ``book``: the compressed
    codebook (:func:`_book_blob`)."""
    n_chunks = -(-n // chunk_size)
    bits = (cfg.pos_bits, cfg.rot_bits, cfg.scale_bits, cfg.opacity_bits, cfg.sh0_bits, *cfg.shN_bits)
    ranges = (cfg.scale_min, cfg.scale_max, cfg.sh0_range, *cfg.shN_range)
    b = bounds.to(torch.float32).reshape(-1).tolist()
    flags = (FLAG_SH_VQ if cfg.sh_vq else 0) | (FLAG_SH_KLT if cfg.shN_step else 0) | (cfg.faint_bits << FAINT_SHIFT)
    fixed = fixed_header_size(version)
    head = _HEADER.pack(
        MAGIC, version, fixed, n, chunk_size, n_chunks, sh_degree, codec.id, *bits, flags, *b, *ranges, 0
    )[:-4]
    head = head + struct.pack("<I", zlib.crc32(head))
    if version == 1:
        return head
    k = cfg.sh_codebook.shape[0] if cfg.sh_vq else cfg.sh_basis.shape[1] if cfg.shN_step else 0
    ext = _HEADER_V2.pack(k, len(book), 0)[:-4]
    ext += struct.pack("<I", zlib.crc32(head + ext))
    return head + ext + book + struct.pack("<I", zlib.crc32(book))




# -- encoder -----------------------------------------------------------------------------------------------
def _warn_infinite_opacities(g: Gaussians, cfg: QuantConfig, name) -> None:
    """One :class:`RaveValueWarning` counting the +-inf opacity logits (legal in PLYs: opacity exactly 1 / 0),
    which the quantizer stores as its extreme bins, so they decode as slightly less than opaque / more than 0."""
    pos, neg = int(torch.isposinf(g.opacities).sum()), int(torch.isneginf(g.opacities).sum())
    if not pos + neg:
        return
    lo = 0.5 / (1 << cfg.opacity_bits)
    what = [f"{pos} +inf stored as opacity {1 - lo:.4g}" if pos else "", f"{neg} -inf as {lo:.4g}" if neg else ""]
    msg = (f"{pos + neg} Gaussian{'s' * (pos + neg != 1)} had an infinite opacity logit (exactly opaque or "
           f"transparent): {', '.join(w for w in what if w)}, the nearest of the {1 << cfg.opacity_bits} levels")
    warnings.warn(f"{name}: {msg}" if name is not None else msg, RaveValueWarning, stacklevel=3)


def _full_grid_morton(q: QuantizedGaussians) -> np.ndarray:
    """[N] uint64 Morton codes of the positions on the full ``pos_bits`` grid (faint classes scaled up to it)."""
    from .quantize import faint_drop, kind_drop

    m = q.means.long()
    drop = faint_drop(q.cfg, q.opacities)
    if drop is not None:
        m = m << kind_drop(drop, q.cfg.pos_bits, "pos")[:, None]
    return morton_encode(m.numpy())


class ProgressiveEncoder(ChunkedEncoder):
    """Encodes any prefix of an ordered scene ``g`` into a .rave stream, with exact sizes for every prefix.

    Construction quantizes ``g`` once (cheap); chunks are compressed lazily when a size or the bytes are first
    needed, then cached. ``bounds`` None -> :func:`~rave_viewer.codec.quantize.scene_bounds` of ``g``.
    ``spatial_order`` (for scenes whose order means nothing, e.g. a PLY): stream the Gaussians sorted by the
    Morton code of their position, so each chunk is a compact region (smaller deltas, similar neighbours).
    ``format_version`` None: 2, or 3 when the settings need it.
    """

    def __init__(
        self,
        g: Gaussians,
        cfg: QuantConfig | None = None,
        codec: str = DEFAULT_CODEC,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        bounds: Tensor | None = None,
        *,
        progress: bool = True,
        workers: int | None = None,
        name: str | os.PathLike | None = None,
        format_version: int | None = None,
        spatial_order: bool = False,
    ):
        g.validate(str(name) if name is not None else "scene to encode", allow_empty=True)
        if not isinstance(chunk_size, (int, np.integer)) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise RaveError(f"chunk size must be 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
        if len(g) > MAX_GAUSSIANS:
            raise RaveError(f"too many Gaussians for one .rave stream ({len(g)})")
        try:
            self.codec = get_codec(codec)
        except KeyError as e:
            raise RaveError(str(e.args[0])) from None
        self.cfg = (cfg or QuantConfig()).validate()
        if format_version is None:
            format_version = max(DEFAULT_WRITE_VERSION, self.cfg.format_version)
        if format_version not in (1, 2, 3, 4) or format_version < self.cfg.format_version:
            raise RaveError(f"cannot write .rave format version {format_version} with these settings "
                            f"(needs {self.cfg.format_version}..{FORMAT_VERSION})")
        self.format_version = int(format_version)
        _warn_infinite_opacities(g, self.cfg, name)
        self.chunk_size = int(chunk_size)
        self.progress = progress
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.quantized = quantize(g, self.cfg, bounds).cpu()
        self.cfg = self.quantized.cfg  # SH ranges fitted to the whole scene (when cfg left them None)
        self._given: Tensor | None = None  # with spatial_order: stream position -> index into g
        if spatial_order and len(g) > 1:
            self._given = torch.from_numpy(np.argsort(_full_grid_morton(self.quantized), kind="stable"))
            self.quantized = self.quantized.subset(self._given)
        self.bounds = self.quantized.bounds
        self.sh_degree = g.sh_degree
        self.n = len(g)
        self._layout = _Layout.of(self.cfg, self.sh_degree)
        self._book = _book_blob(self.cfg, self.codec) if self.format_version >= 2 else b""
        self.header_size = len(self._header(0))
        self._morton = morton_encode(self.quantized.means.numpy())
        self._cols = _columns(self.quantized, self._layout)
        self._init_cache()

    # -- chunk compression -----------------------------------------------------------------------------
    def _compress_range(self, a: int, b: int) -> tuple[bytes, int]:
        raw, _ = _pack_chunk(self._morton[a:b], self._cols[a:b], self._layout)
        data = self.codec.compress(raw)
        return data, zlib.crc32(data)

    def _header(self, k: int) -> bytes:
        return _header_bytes(k, self.chunk_size, self.sh_degree, self.codec, self.cfg, self.bounds,
                             self.format_version, self._book)

    def _local_order(self, k: int) -> Tensor:
        """[k] int64 indices into ``self.quantized`` in the order the decoder returns them."""
        parts = []
        for a in range(0, k, self.chunk_size):
            b = min(a + self.chunk_size, k)
            parts.append(a + _chunk_perm(self._morton[a:b], self._cols[a:b], self._layout))
        return torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.long)

    def stream_order(self, k: int | None = None) -> Tensor:
        """[k] int64 indices into ``g``: the order in which :func:`decode` returns the first ``k`` Gaussians
        (with ``spatial_order``, the prefixes are those of the scene sorted by Morton code, not of ``g``)."""
        order = self._local_order(self._check_k(k))
        return order if self._given is None else self._given[order]

    def quantized_prefix(self, k: int | None = None) -> Gaussians:
        """``dequantize(quantize(g))`` of the first ``k`` Gaussians in stream order: exactly what decoding the
        prefix returns."""
        return dequantize(self.quantized.subset(self._local_order(self._check_k(k))))


def encode(
    g: Gaussians,
    path: str | os.PathLike | None = None,
    *,
    k: int | None = None,
    cfg: QuantConfig | None = None,
    codec: str = DEFAULT_CODEC,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    bounds: Tensor | None = None,
) -> bytes:
    """One-shot: the .rave bytes of the first ``k`` Gaussians of ``g`` (also written to ``path`` if given)."""
    enc = ProgressiveEncoder(g, cfg, codec, chunk_size, bounds)
    data = enc.encode(k)
    if path is not None:
        from ..fileio import atomic_write_bytes

        atomic_write_bytes(path, data)
    return data


# -- decoder -----------------------------------------------------------------------------------------------
@dataclass
class ChunkEntry:
    length: int
    crc: int
    count: int
    offset: int  # byte offset of the chunk in the file


def read_index(data: bytes, header_size: int, index_end: int, n: int, chunk_size: int, raw_per_unit: int,
               units: str, err) -> tuple[list[ChunkEntry], int]:
    """The CRC-checked chunk index at ``data[header_size:index_end]`` of a stream of ``n`` units, and the byte
    offset where its chunks end; ``err(message)`` makes the error raised for a corrupt or implausible entry."""
    index = data[header_size : index_end - 4]
    if zlib.crc32(index) != struct.unpack_from("<I", data, index_end - 4)[0]:
        raise err("corrupt .rave chunk index (CRC mismatch)")
    chunks, offset = [], index_end
    for i, (length, crc, count) in enumerate(iter_index(index)):
        want = min(chunk_size, n - i * chunk_size)
        if count != want:
            raise err(f"chunk {i} declares {count} {units}, expected {want}")
        if length == 0 or length > 2 * raw_per_unit * count + 1024:
            raise err(f"chunk {i} declares an implausible length of {length} bytes")
        chunks.append(ChunkEntry(length, crc, count, offset))
        offset += length
    return chunks, offset


@dataclass
class StreamInfo:
    """What the header and chunk index of a .rave stream say (nothing decompressed)."""

    format_version: int
    n_gaussians: int
    sh_degree: int
    codec: str
    chunk_size: int
    cfg: QuantConfig
    bounds: Tensor
    chunks: list[ChunkEntry]
    file_size: int  # bytes available
    expected_size: int  # bytes the complete stream needs
    header_size: int = HEADER_SIZE  # bytes before the chunk index (header, and in v2 the codebook section)

    @property
    def n_complete_chunks(self) -> int:
        return sum(1 for c in self.chunks if c.offset + c.length <= self.file_size)

    @property
    def index_end(self) -> int:
        """Offset of the first chunk: the bytes a reader needs before any Gaussian (header, codebook, index)."""
        return self.header_size + INDEX_ENTRY_SIZE * len(self.chunks) + 4

    def prefix_size(self, n_chunks: int) -> int:
        """Exact bytes of the stream cut to its first ``n_chunks`` chunks (:func:`cut_stream`'s output)."""
        return self.header_size + INDEX_ENTRY_SIZE * n_chunks + 4 + sum(c.length for c in self.chunks[:n_chunks])


@dataclass
class DecodedStream:
    """Result of :func:`decode`: the Gaussians in stream order, and what the stream declared."""

    gaussians: Gaussians
    quantized: QuantizedGaussians
    info: StreamInfo
    n_declared: int
    complete: bool
    message: str | None = None  # the warning text when incomplete

    @property
    def n_decoded(self) -> int:
        return len(self.gaussians)


def _load(data_or_path, name) -> tuple[bytes, str | None]:
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path), name
    path = os.fspath(data_or_path)
    try:
        with open(path, "rb") as f:
            return f.read(), name or path
    except OSError as e:
        raise RaveError(f"cannot read: {e.strerror or e}", path) from None


def read_info(data_or_path, *, name: str | None = None) -> StreamInfo:
    """Parse and check the header, codebook and chunk index (RaveError naming the file when they are invalid).

    Bytes need not hold the whole stream: a prefix of at least :func:`bytes_needed` bytes is enough (the chunks
    are then reported, ``file_size`` says how many bytes were given).
    """
    data, name = _load(data_or_path, name)
    return _parse(data, name)


def bytes_needed(prefix: bytes) -> int:
    """How many leading bytes of a stream :func:`read_info` needs, judged from ``prefix`` (any length).

    The answer grows as the prefix does (the fixed header tells the codebook section's size, which tells where
    the index starts, whose size the header gives): fetch that many bytes and call again until
    ``len(prefix) >= bytes_needed(prefix)``. Never more than the header, codebook and index; raises RaveError
    for bytes that are not a .rave header.
    """
    prefix = bytes(prefix[: fixed_header_size(FORMAT_VERSION) + HEADER_V2_EXTRA])
    if len(prefix) < 8:
        return HEADER_SIZE
    if not MAGIC.startswith(prefix[:4]):
        raise RaveError("not a .rave file (bad magic)")
    version = struct.unpack_from("<H", prefix, 4)[0]
    _refuse_other_units(prefix, RaveError)
    fixed = fixed_header_size(version)
    if len(prefix) < fixed:
        return fixed + (HEADER_V2_EXTRA if version >= 2 else 0)
    n_chunks = struct.unpack_from("<I", prefix, 20 + fixed - HEADER_SIZE)[0]
    index = INDEX_ENTRY_SIZE * n_chunks + 4
    if version < 2:
        return fixed + index
    if len(prefix) < fixed + HEADER_V2_EXTRA:
        return fixed + HEADER_V2_EXTRA
    book_len = struct.unpack_from("<I", prefix, fixed + 4)[0]
    return fixed + HEADER_V2_EXTRA + book_len + 4 + index


def _refuse_other_units(data: bytes, err) -> None:
    """One clear line for a stream of other units (anchors: unit_type.py), before any version message."""
    from .unit_type import unit_type_of, wrong_unit_message

    unit = unit_type_of(data)
    if unit is not None and unit != "gaussians":
        raise err(wrong_unit_message(unit, "gaussians"))


def _parse(data: bytes, name: str | None) -> StreamInfo:
    err = lambda msg: RaveError(msg, name)  # noqa: E731
    if not MAGIC.startswith(data[:4]):
        raise err("not a .rave file (bad magic)")
    if len(data) < 8:
        raise err(f"truncated .rave file ({len(data)} bytes)")
    version, hsize = struct.unpack_from("<HH", data, 4)
    _refuse_other_units(data, err)
    if version > FORMAT_VERSION:
        raise err(f".rave format version {version} is newer than this reader supports ({FORMAT_VERSION}); upgrade")
    if version < 1:
        raise err(f"unsupported .rave format version {version}")
    fixed = fixed_header_size(version)
    if len(data) < fixed:
        raise err(f"truncated .rave file: {len(data)} bytes, the header alone needs {fixed}")
    fields = _HEADER.unpack(data[:8] + data[fixed - HEADER_SIZE + 8 : fixed])  # without the unit bytes
    if zlib.crc32(data[: fixed - 4]) != fields[-1] or hsize != fixed:
        raise err("corrupt .rave header (CRC mismatch)")
    _, _, _, n, chunk_size, n_chunks, sh_degree, codec_id = fields[:8]
    bits = fields[8:16]
    flags = fields[16]
    known = (0, 0, FLAG_SH_VQ, FLAG_SH_VQ | FAINT_MASK, FLAG_SH_VQ | FAINT_MASK | FLAG_SH_KLT)[version]
    if flags & ~known:
        raise err(f"unknown flags {flags:#x} in .rave header")
    bounds = torch.tensor(fields[17:23], dtype=torch.float32).reshape(2, 3)
    ranges = fields[23:29]
    codec = codec_by_id(codec_id)
    if codec is None:
        raise err(f"unknown codec id {codec_id} in .rave header")
    if sh_degree > 3:
        raise err(f"invalid SH degree {sh_degree} in .rave header")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise err(f"invalid chunk size {chunk_size} in .rave header")
    if n_chunks != -(-n // chunk_size):
        raise err(f"inconsistent header: {n} Gaussians in {n_chunks} chunks of {chunk_size}")
    header_size, book_k, book_blob, klt = fixed, 0, b"", False
    if version >= 2:
        if len(data) < fixed + HEADER_V2_EXTRA:
            raise err(f"truncated .rave file: {len(data)} bytes, the header needs {fixed + HEADER_V2_EXTRA}")
        book_k, book_len, ext_crc = _HEADER_V2.unpack_from(data, fixed)
        if zlib.crc32(data[: fixed + HEADER_V2_EXTRA - 4]) != ext_crc:
            raise err("corrupt .rave header (CRC mismatch in the codebook section)")
        from .quantize import MAX_CODEBOOK
        from .transform import raw_size as transform_size

        coeffs = num_sh_bases(min(sh_degree, 3)) - 1
        klt = bool(flags & FLAG_SH_KLT)
        if klt:
            if flags & FLAG_SH_VQ or book_k != 3 * coeffs:
                raise err(f"invalid SH transform size {book_k} in .rave header (SH degree {sh_degree})")
            raw_book = transform_size(book_k)
        else:
            if bool(flags & FLAG_SH_VQ) != (book_k > 0) or not 0 <= book_k <= MAX_CODEBOOK:
                raise err(f"invalid SH codebook size {book_k} in .rave header")
            raw_book = _book_raw_size(book_k, coeffs, bits[5:8]) if book_k else 0
        if book_len > 2 * raw_book + 1024 or (not klt and book_k == 0 and book_len):
            raise err(f"implausible SH codebook length of {book_len} bytes in .rave header")
        header_size = fixed + HEADER_V2_EXTRA + book_len + 4
        if header_size > len(data):
            raise err(f"truncated .rave file: {len(data)} bytes, the header and codebook need {header_size}")
        book_blob = data[fixed + HEADER_V2_EXTRA : header_size - 4]
        if zlib.crc32(book_blob) != struct.unpack_from("<I", data, header_size - 4)[0]:
            raise err("corrupt .rave codebook (CRC mismatch)")
    index_end = header_size + INDEX_ENTRY_SIZE * n_chunks + 4
    if index_end > len(data):  # checked before touching (or allocating for) the index
        raise err(f"truncated .rave file: {len(data)} bytes, the chunk index needs {index_end}")
    if not torch.isfinite(bounds).all() or (bounds[1] < bounds[0]).any():
        raise err("invalid bounds in .rave header")
    try:
        book, step, basis = None, 0.0, None
        if klt:
            from .transform import from_bytes

            try:
                raw = codec.decompress(book_blob, raw_book)
            except CodecError as e:
                raise RaveError(f"the SH transform does not decode: {e}") from None
            step, basis = from_bytes(raw, book_k)
        elif book_k:
            coeffs = num_sh_bases(sh_degree) - 1
            try:
                raw = codec.decompress(book_blob, _book_raw_size(book_k, coeffs, bits[5:8]))
            except CodecError as e:
                raise RaveError(f"the SH codebook does not decode: {e}") from None
            book = _book_from_planes(raw, book_k, coeffs, bits[5:8])
        cfg = QuantConfig(
            pos_bits=bits[0], rot_bits=bits[1], scale_bits=bits[2], opacity_bits=bits[3], sh0_bits=bits[4],
            shN_bits=tuple(bits[5:8]), scale_min=ranges[0], scale_max=ranges[1], sh0_range=ranges[2],
            shN_range=tuple(ranges[3:6]), sh_vq=0 if klt else book_k, sh_codebook=book,
            faint_bits=(flags & FAINT_MASK) >> FAINT_SHIFT, shN_step=step, sh_basis=basis,
        )  # fmt: skip
    except RaveError as e:
        raise err(f"invalid quantization settings in .rave header: {e}") from None
    raw_per = _Layout.of(cfg, sh_degree).bytes_per_gaussian
    chunks, offset = read_index(data, header_size, index_end, n, chunk_size, raw_per, "Gaussians", err)
    return StreamInfo(
        format_version=version, n_gaussians=n, sh_degree=sh_degree, codec=codec.name, chunk_size=chunk_size,
        cfg=cfg, bounds=bounds, chunks=chunks, file_size=len(data), expected_size=offset, header_size=header_size,
    )  # fmt: skip


def cut_stream(data_or_path, k: int, *, name: str | None = None) -> bytes:
    """The .rave stream of the first ``k`` Gaussians of a stream, without recompressing anything.

    ``k`` must be a chunk boundary (a multiple of the chunk size) or the stream's N; the chunks it needs must be
    present (a truncated input works as long as they are). The result is byte-identical to what
    ``ProgressiveEncoder.encode(k)`` writes for the same scene and settings.
    """
    data, name = _load(data_or_path, name)
    info = _parse(data, name)
    n = info.n_gaussians
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise RaveError(f"prefix length must be an integer 0..{n}, got {k!r}", name)
    if k % info.chunk_size and k != n:
        raise RaveError(f"{k} Gaussians is not a chunk boundary (chunks of {info.chunk_size})", name)
    chunks = info.chunks[: -(-k // info.chunk_size)]
    if chunks and chunks[-1].offset + chunks[-1].length > len(data):
        raise RaveError(f"the stream is truncated before Gaussian {k}", name)
    codec = get_codec(info.codec)
    fixed = fixed_header_size(info.format_version)
    book = data[fixed + HEADER_V2_EXTRA : info.header_size - 4] if info.format_version >= 2 else b""
    head = _header_bytes(k, info.chunk_size, info.sh_degree, codec, info.cfg, info.bounds, info.format_version, book)
    index = index_bytes([(c.length, c.crc, c.count) for c in chunks])
    return b"".join([head, index, *(data[c.offset : c.offset + c.length] for c in chunks)])


def _check_budget(
    info: StreamInfo, n_chunks: int, raw_per: int, name: str | None, max_gaussians: int | None,
    max_ratio: float | None,
) -> None:
    """Refuse (before decompressing anything) to decode more than the limits allow from the first chunks.

    ``n_chunks`` complete chunks hold ``n`` Gaussians, i.e. ``n * raw_per`` decompressed bytes, read from the
    ``used`` bytes of the file up to their end (header and index included).
    """
    n = sum(c.count for c in info.chunks[:n_chunks])
    if max_gaussians is not None and n > max_gaussians:
        of = f" (of {info.n_gaussians} declared)" if n != info.n_gaussians else ""
        raise RaveError(
            f"the stream holds {n} Gaussians{of}, more than the limit of {max_gaussians} (max_gaussians); "
            f"raise the limit to decode it",
            name,
        )
    if max_ratio is None or n <= FREE_GAUSSIANS:
        return
    last = info.chunks[n_chunks - 1]
    used = last.offset + last.length
    raw = n * raw_per
    if raw > FREE_GAUSSIANS * raw_per + max_ratio * used:
        raise RaveError(
            f"refusing a likely decompression bomb: {n} Gaussians ({raw} bytes uncompressed) from {used} bytes "
            f"is a {raw / used:.0f}:1 compression ratio, above the limit of {max_ratio:g}:1 (max_ratio) that "
            f"real scenes stay far below",
            name,
        )


def _check_limit(value, what: str, kind: type | tuple[type, ...]) -> None:
    """RaveError unless ``value`` is None or a number >= 0 of the given type(s)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= 0:
        raise RaveError(f"{what} must be a number >= 0 or None, got {value!r}")


def decode(
    data_or_path,
    strict: bool = False,
    *,
    name: str | None = None,
    max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
) -> DecodedStream:
    """Decode a .rave stream (bytes or a path) into Gaussians in stream order.

    A stream cut short decodes its complete chunks: a :class:`RaveStreamWarning` says how many Gaussians were
    recovered (``strict=True`` raises :class:`RaveError` instead). Anything else wrong (bad magic, newer
    version, CRC mismatch naming the chunk, inconsistent counts) raises :class:`RaveError` naming the file.

    The work is bounded by the input: more than ``max_gaussians`` Gaussians in the complete chunks, or (beyond
    the first :data:`FREE_GAUSSIANS`) more than ``max_ratio`` decompressed bytes per byte of the file, is
    refused with a RaveError before anything is decompressed (None lifts a limit).
    """
    _check_limit(max_gaussians, "max_gaussians", (int, np.integer))
    _check_limit(max_ratio, "max_ratio", (int, float, np.integer, np.floating))
    data, name = _load(data_or_path, name)
    info = _parse(data, name)
    layout = _Layout.of(info.cfg, info.sh_degree)
    codec = get_codec(info.codec)
    # chunks are contiguous, so the complete ones are a prefix
    n_chunks_ok = sum(1 for c in info.chunks if c.offset + c.length <= len(data))
    _check_budget(info, n_chunks_ok, layout.bytes_per_gaussian, name, max_gaussians, max_ratio)
    n_ok = sum(c.count for c in info.chunks[:n_chunks_ok])
    codes = np.empty(n_ok, dtype=np.uint64)
    cols = np.empty((n_ok, len(layout.bits)), dtype=np.int32)
    view = memoryview(data)
    starts = np.concatenate([[0], np.cumsum([c.count for c in info.chunks[:n_chunks_ok]])]).astype(int)

    def job(i: int, codes: np.ndarray = codes, cols: np.ndarray = cols) -> str | None:
        """Check, decompress and unpack chunk i into its rows (the codecs release the GIL); an error text."""
        c, a = info.chunks[i], int(starts[i])
        blob = view[c.offset : c.offset + c.length]
        if zlib.crc32(blob) != c.crc:
            return f"chunk {i} is corrupt (CRC mismatch)"
        try:
            raw = codec.decompress(bytes(blob), c.count * layout.bytes_per_gaussian)
            _unpack_chunk(raw, c.count, layout, codes[a : a + c.count], cols[a : a + c.count])
        except CodecError as e:
            return f"chunk {i} does not decode: {e}"
        return None

    workers = min(n_chunks_ok, DECODE_WORKERS)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            errors = list(pool.map(job, range(n_chunks_ok)))
    else:
        errors = [job(i) for i in range(n_chunks_ok)]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise RaveError(first, name)
    message = None
    if n_chunks_ok < len(info.chunks):
        message = (
            f"truncated .rave stream: recovered {n_ok} of {info.n_gaussians} Gaussians "
            f"({n_chunks_ok} of {len(info.chunks)} chunks; {len(data)} of {info.expected_size} bytes)"
        )
    elif len(data) > info.expected_size:
        message = f"{len(data) - info.expected_size} unexpected bytes after the last chunk (ignored)"
    if message is not None:
        if strict:
            raise RaveError(message, name)
        warnings.warn(f"{name}: {message}" if name else message, RaveStreamWarning, stacklevel=2)
    q = _quantized_from(codes, cols, info.cfg, info.bounds, info.sh_degree)
    del codes, cols  # q holds copies: free the stream-wide arrays before dequantizing
    gaussians = dequantize(q).validate(name, allow_empty=True)  # cannot fail for what the encoder wrote
    return DecodedStream(
        gaussians=gaussians, quantized=q, info=info, n_declared=info.n_gaussians,
        complete=n_chunks_ok == len(info.chunks), message=message,
    )  # fmt: skip


__all__ = [
    "ProgressiveEncoder",
    "encode",
    "decode",
    "read_info",
    "cut_stream",
    "DecodedStream",
    "StreamInfo",
    "RaveStreamWarning",
    "RaveValueWarning",
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "HEADER_V2_EXTRA",
    "bytes_needed",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_GAUSSIANS",
    "DEFAULT_MAX_RATIO",
    "FREE_GAUSSIANS",
]
