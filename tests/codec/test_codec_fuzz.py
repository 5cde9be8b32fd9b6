"""Fuzz: thousands of truncations, byte flips and CRC-consistent forgeries of small .rave streams.

Every outcome must be a valid decode (possibly with a warning) or a RaveError: never another exception, never
a hang (each decode is tiny, so the whole test runs in seconds).
"""

from __future__ import annotations

import random
import struct
import warnings
import zlib

import pytest

from rave_viewer.codec import ProgressiveEncoder, QuantConfig, RaveStreamWarning, decode, read_info
from rave_viewer.codec.container import HEADER_SIZE, HEADER_V2_EXTRA, fixed_header_size
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians


def _outcome(data: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)
        try:
            res = decode(data)
        except RaveError as e:
            assert "\n" not in str(e)
            return "error"
    assert len(res.gaussians) <= res.n_declared
    res.gaussians.validate("fuzz", allow_empty=True)
    return "ok" if res.complete else "partial"


def _refix_crcs(data: bytearray) -> bytearray:
    """Recompute every CRC (header, v2 codebook section and codebook, index, chunks) so that mutations reach the
    decompressors, the codebook checks and the unpacker."""
    version = struct.unpack_from("<H", data, 4)[0]
    fixed = fixed_header_size(version)
    data[fixed - 4 : fixed] = struct.pack("<I", zlib.crc32(data[: fixed - 4]))
    start = fixed
    if version >= 2:
        ext = fixed + HEADER_V2_EXTRA
        data[ext - 4 : ext] = struct.pack("<I", zlib.crc32(data[: ext - 4]))
        book_len = struct.unpack_from("<I", data, fixed + 4)[0]
        start = ext + book_len + 4
        data[start - 4 : start] = struct.pack("<I", zlib.crc32(data[ext : start - 4]))
    n_chunks = struct.unpack_from("<I", data, 20 + fixed - HEADER_SIZE)[0]
    end = start + 12 * n_chunks
    off = end + 4
    for i in range(n_chunks):
        length = struct.unpack_from("<I", data, start + 12 * i)[0]
        struct.pack_into("<I", data, start + 12 * i + 4, zlib.crc32(data[off : off + length]))
        off += length
    data[end : end + 4] = struct.pack("<I", zlib.crc32(data[start:end]))
    return data


STREAMS = {  # (format version, SH degree, config)
    "v1": (1, 1, QuantConfig(shN_bits=(3, 4, 4))),
    "v2": (2, 1, QuantConfig(shN_bits=(3, 4, 4))),
    "v2-codebook": (2, 2, QuantConfig(shN_bits=(5, 6, 4), sh_vq=8, fit_ranges=True)),
    "v3-faint": (3, 1, QuantConfig(shN_bits=(5, 6, 4), faint_bits=3, opacity_bits=4)),
    "v4-transform": (4, 2, QuantConfig(shN_step=0.02, faint_bits=2, opacity_bits=4)),
}


@pytest.mark.parametrize("kind,codec", [("v1", "lzma"), ("v1", "zstd"), ("v1", "brotli"), ("v2", "zstd"),
                                        ("v2-codebook", "lzma"), ("v2-codebook", "brotli"), ("v3-faint", "lzma"),
                                        ("v4-transform", "lzma"), ("v4-transform", "zstd")])
def test_fuzz_truncations_flips_and_forgeries(codec, kind):
    rng = random.Random(1234)
    version, degree, cfg = STREAMS[kind]
    g = Gaussians.random(22 if version == 1 else 300, degree, seed=5)
    enc = ProgressiveEncoder(g, cfg, codec=codec, chunk_size=4 if version == 1 else 50, format_version=version)
    data = enc.encode()
    info = read_info(data)
    assert info.format_version == version and len(info.chunks) == 6
    if kind == "v2-codebook":
        assert info.cfg.sh_codebook.shape == (8, 8, 3) and enc.quantized.shN_index is not None
    if kind == "v4-transform":
        assert info.cfg.sh_basis.shape == (26, 24) and info.cfg.shN_step == 0.02
    seen = {"ok": 0, "partial": 0, "error": 0}
    step = 1 if len(data) < 3000 else 7
    for n in range(0, len(data) + 1, step):  # truncations
        seen[_outcome(data[:n])] += 1
    seen[_outcome(data)] += 0
    assert seen["partial"] > 0 and _outcome(data) == "ok"
    for _ in range(400):  # random byte flips anywhere
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] ^= rng.randint(1, 255)
        assert _outcome(bytes(bad)) == "error"  # CRC32 catches every flip of up to 4 bytes here
    payload = info.chunks[0].offset
    for _ in range(400):  # forgeries with consistent CRCs: garbage reaches the codec and the unpacker
        bad = bytearray(data)
        where = rng.random()
        for _ in range(rng.randint(1, 3)):
            if where < 0.6:
                i = rng.randrange(payload, len(bad))
            elif where < 0.8 and version >= 2:  # the codebook section: size, length, compressed entries
                i = rng.randrange(HEADER_SIZE, info.header_size)
            else:  # header fields (bits, counts, degree, bounds) and index entries
                i = rng.randrange(4, payload - 4)
            bad[i] = rng.randrange(256)
        if rng.random() < 0.3:
            bad = bad[: rng.randrange(len(bad) + 1)]
        if len(bad) >= payload:
            try:
                bad = _refix_crcs(bad)
            except struct.error:
                pass
        seen[_outcome(bytes(bad))] += 1
    for _ in range(200):  # insertions and deletions shift everything after them
        bad = bytearray(data)
        i = rng.randrange(len(bad))
        if rng.random() < 0.5:
            del bad[i : i + rng.randint(1, 8)]
        else:
            bad[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        seen[_outcome(bytes(bad))] += 1
    assert seen["error"] > 0 and seen["ok"] > 1


def _codebook_stream(k: int = 8) -> tuple[ProgressiveEncoder, bytes]:
    g = Gaussians.random(200, 2, seed=9)
    enc = ProgressiveEncoder(g, QuantConfig(sh_vq=k, fit_ranges=True), codec="zstd", chunk_size=64)
    return enc, enc.encode()


@pytest.mark.parametrize("forged_k", [0, 1, 7, 9, 4096, 65536, 65537, 2**32 - 1])
def test_forged_codebook_size_is_one_error_line_without_a_big_allocation(forged_k):
    """A CRC-consistent header declaring another codebook size: RaveError (never IndexError / MemoryError),
    before anything large is allocated."""
    import tracemalloc

    enc, data = _codebook_stream()
    bad = bytearray(data)
    struct.pack_into("<I", bad, HEADER_SIZE, forged_k)
    bad = _refix_crcs(bad)
    tracemalloc.start()
    try:
        with pytest.raises(RaveError) as ei:
            decode(bytes(bad))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(ei.value) and peak < 50e6


def test_codebook_index_out_of_range_is_a_rave_error():
    """Chunks whose indices point past the codebook (the codebook forged smaller, or the index column forged)."""
    enc, data = _codebook_stream(k=8)
    info = read_info(data)
    assert info.cfg.sh_codebook.shape[0] == 6  # at most one entry per 32 Gaussians
    # recompress chunk 0 with an index column holding 200 (> K - 1)
    from rave_viewer.codec.container import _pack_chunk

    cols = enc._cols[:64].copy()
    cols[5, -1] = 200
    raw, _ = _pack_chunk(enc._morton[:64], cols, enc._layout)
    blob = enc.codec.compress(raw)
    c0 = info.chunks[0]
    bad = bytearray(data[: c0.offset]) + blob + data[c0.offset + c0.length :]
    struct.pack_into("<I", bad, info.header_size, len(blob))
    bad = _refix_crcs(bad)
    with pytest.raises(RaveError, match="chunk 0 does not decode: attribute column 11 has codes out of range"):
        decode(bytes(bad))
    # the codebook's own codes out of range for their bit depth (CRC-consistent): RaveError naming it
    shN_bits_at = 8 + 4 + 4 + 8 + 4 + 1 + 1 + 5  # offset of the shN bit depths in the fixed header
    bad = bytearray(data)
    bad[shN_bits_at] = 2  # band-1 codebook entries now have to fit 2 bits
    with pytest.raises(RaveError, match="header"):
        decode(bytes(_refix_crcs(bad)))
