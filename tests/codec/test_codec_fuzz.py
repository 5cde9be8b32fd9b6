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
from rave_viewer.codec.container import HEADER_SIZE
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
    """Recompute the header, index and chunk CRCs so that mutations reach the decompressors and unpacker."""
    data[HEADER_SIZE - 4 : HEADER_SIZE] = struct.pack("<I", zlib.crc32(data[: HEADER_SIZE - 4]))
    n_chunks = struct.unpack_from("<I", data, 20)[0]
    end = HEADER_SIZE + 12 * n_chunks
    off = end + 4
    for i in range(n_chunks):
        length = struct.unpack_from("<I", data, HEADER_SIZE + 12 * i)[0]
        struct.pack_into("<I", data, HEADER_SIZE + 12 * i + 4, zlib.crc32(data[off : off + length]))
        off += length
    data[end : end + 4] = struct.pack("<I", zlib.crc32(data[HEADER_SIZE:end]))
    return data


@pytest.mark.parametrize("codec", ["lzma", "zstd", "brotli"])
def test_fuzz_truncations_flips_and_forgeries(codec):
    rng = random.Random(1234)
    g = Gaussians.random(22, 1, seed=5)
    cfg = QuantConfig(shN_bits=(3, 4, 4))
    data = ProgressiveEncoder(g, cfg, codec=codec, chunk_size=4).encode()
    info = read_info(data)
    assert len(info.chunks) == 6
    seen = {"ok": 0, "partial": 0, "error": 0}
    for n in range(len(data) + 1):  # every truncation
        seen[_outcome(data[:n])] += 1
    assert seen["partial"] > 0 and seen["ok"] == 1
    for _ in range(1200):  # random byte flips anywhere
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] ^= rng.randint(1, 255)
        assert _outcome(bytes(bad)) == "error"  # CRC32 catches every flip of up to 4 bytes here
    payload = info.chunks[0].offset
    for _ in range(800):  # forgeries with consistent CRCs: garbage reaches the codec and the unpacker
        bad = bytearray(data)
        where = rng.random()
        for _ in range(rng.randint(1, 3)):
            if where < 0.7:
                i = rng.randrange(payload, len(bad))
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
    for _ in range(300):  # insertions and deletions shift everything after them
        bad = bytearray(data)
        i = rng.randrange(len(bad))
        if rng.random() < 0.5:
            del bad[i : i + rng.randint(1, 8)]
        else:
            bad[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        seen[_outcome(bytes(bad))] += 1
    assert seen["error"] > 0 and seen["ok"] > 1
