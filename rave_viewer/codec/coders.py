"""Entropy-coder registry for .rave chunks: name -> (id, compress, bounded decompress); LZMA is the default.

A codec is two functions: ``compress(raw: bytes) -> bytes`` (deterministic: the same input always gives the
same bytes, which the exact prefix sizes rely on) and ``decompress(data: bytes, raw_size: int) -> bytes``
which never produces (or allocates for) more than about ``raw_size`` bytes and raises :class:`CodecError` for
anything that is not a complete, valid stream of exactly ``raw_size`` bytes. Adding one is a single call::

    register_codec("mycodec", 17, my_compress, my_decompress)

Ids are stored in the .rave header (one byte); 0 is reserved. Built in: ``lzma`` (1, raw LZMA2 at preset
9 extreme, dictionary sized to the chunk, no .xz framing since chunks carry their own CRC32), ``zstd`` (2,
level 19) and ``brotli`` (3, quality 11). Any LZMA2 preset decodes with the same reader: preset 6 compresses
column data twice as fast to within +-0.2 % (measured on the benchmark scenes), but changing it changes the
bytes, so checkpoints' stored chunk tables would no longer be exact; it stays 9e.
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass
from typing import Callable


class CodecError(Exception):
    """A chunk that does not decompress to exactly the expected bytes (wrapped into RaveError by the reader)."""


@dataclass(frozen=True)
class Codec:
    name: str
    id: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]


CODECS: dict[str, Codec] = {}
DEFAULT_CODEC = "lzma"


def register_codec(
    name: str, codec_id: int, compress: Callable[[bytes], bytes], decompress: Callable[[bytes, int], bytes]
) -> Codec:
    """Add a codec under ``name`` with the header id ``codec_id`` (1-255, unique)."""
    if not 1 <= codec_id <= 255:
        raise ValueError(f"codec id must be 1..255, got {codec_id}")
    for c in CODECS.values():
        if c.id == codec_id and c.name != name:
            raise ValueError(f"codec id {codec_id} is already used by {c.name!r}")
    codec = Codec(name, codec_id, compress, decompress)
    CODECS[name] = codec
    return codec


def get_codec(name: str) -> Codec:
    """The codec called ``name``; raises ``KeyError`` listing the known names otherwise."""
    try:
        return CODECS[name]
    except KeyError:
        raise KeyError(f"unknown codec {name!r} (known: {', '.join(sorted(CODECS))})") from None


def codec_by_id(codec_id: int) -> Codec | None:
    for c in CODECS.values():
        if c.id == codec_id:
            return c
    return None


def _check_len(out: bytes, raw_size: int) -> bytes:
    if len(out) != raw_size:
        raise CodecError(f"decompressed to {len(out)} bytes, expected {raw_size}")
    return out


# -- LZMA (default, as in the paper) ---------------------------------------------------------------------
LZMA_PRESET = 9 | lzma.PRESET_EXTREME  # part of what the stored chunk tables of checkpoints were measured with
def _lzma_dict(n: int) -> int:
    d = 1 << 16
    while d < n and d < (1 << 27):
        d <<= 1
    return d


def _lzma_filters(dict_size: int, preset: int | None = None) -> list[dict]:
    f = {"id": lzma.FILTER_LZMA2, "dict_size": dict_size}
    if preset is not None:  # column-wise byte data: no multi-byte alignment contexts
        f.update(preset=preset, lc=3, lp=0, pb=0)
    return [f]


def _lzma_compress(raw: bytes) -> bytes:
    filters = _lzma_filters(_lzma_dict(len(raw)), LZMA_PRESET)
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=filters)


def _lzma_decompress(data: bytes, raw_size: int) -> bytes:
    try:
        d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma_filters(_lzma_dict(raw_size)))
        out = d.decompress(data, max_length=raw_size)
        if len(out) == raw_size and not d.eof:
            out += d.decompress(b"", max_length=1)  # consume the end marker (or find surplus data)
    except lzma.LZMAError as e:
        raise CodecError(f"LZMA: {e}") from None
    if not d.eof:
        raise CodecError("LZMA stream is incomplete or longer than expected")
    if d.unused_data:
        raise CodecError("bytes after the end of the LZMA stream")
    return _check_len(out, raw_size)


# -- zstd ------------------------------------------------------------------------------------------------
def _zstd_compress(raw: bytes) -> bytes:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=19, write_content_size=False, write_checksum=False, write_dict_id=False)
    return cctx.compress(raw)


def _zstd_decompress(data: bytes, raw_size: int) -> bytes:
    import zstandard

    try:
        size = zstandard.frame_content_size(data)
        if size > raw_size:  # -1 when unknown; a declared size is allocated up front, so check it first
            raise CodecError(f"zstd frame declares {size} bytes, expected {raw_size}")
        dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        out = _check_len(dctx.decompress(data, max_output_size=max(raw_size, 1)), raw_size)
        # decompress() reads only the first frame; find where it ends (a second pass over the same frame,
        # now known to yield exactly raw_size bytes, so it is as bounded as the first).
        obj = dctx.decompressobj()
        obj.decompress(data)
    except zstandard.ZstdError as e:
        raise CodecError(f"zstd: {e}") from None
    if obj.unused_data:
        raise CodecError("bytes after the end of the zstd frame")
    return out


# -- brotli ----------------------------------------------------------------------------------------------
def _brotli_compress(raw: bytes) -> bytes:
    import brotli

    return brotli.compress(raw, quality=11, lgwin=24)


def _brotli_decompress(data: bytes, raw_size: int) -> bytes:
    import brotli

    dec = brotli.Decompressor()
    parts: list[bytes] = []
    total, first = 0, True
    try:
        while True:  # bounded output per step: a forged stream cannot make us allocate much past raw_size
            out = dec.process(data if first else b"", output_buffer_limit=raw_size - total + 1)
            first = False
            parts.append(out)
            total += len(out)
            if total > raw_size:
                raise CodecError(f"brotli stream is longer than the expected {raw_size} bytes")
            if dec.is_finished():
                break
            if not out and dec.can_accept_more_data():
                raise CodecError("brotli stream is incomplete")
    except brotli.error as e:
        raise CodecError(f"brotli: {e}") from None
    return _check_len(b"".join(parts), raw_size)


register_codec("lzma", 1, _lzma_compress, _lzma_decompress)
register_codec("zstd", 2, _zstd_compress, _zstd_decompress)
register_codec("brotli", 3, _brotli_compress, _brotli_decompress)
