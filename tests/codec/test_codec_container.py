"""The .rave container: exact round trips, exact prefix sizes, truncation, corruption and forged headers."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch

from rave_viewer.codec import (
    CODECS,
    FORMAT_VERSION,
    ProgressiveEncoder,
    QuantConfig,
    RaveStreamWarning,
    cut_stream,
    decode,
    dequantize,
    encode,
    quantize,
    read_info,
    register_codec,
    scene_bounds,
)
from rave_viewer.codec.container import _HEADER, HEADER_SIZE, HEADER_V2_EXTRA, INDEX_ENTRY_SIZE, MAX_CHUNK_SIZE
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians


def _decode_quiet(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)
        return decode(data, **kw)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_equals_quantized_scene_exactly(degree):
    g = Gaussians.random(300, degree, seed=degree)
    enc = ProgressiveEncoder(g, chunk_size=64)
    res = decode(enc.encode())
    assert res.complete and res.message is None and res.n_declared == 300
    expect = dequantize(quantize(g, enc.cfg, scene_bounds(g))).subset(enc.stream_order())
    assert res.gaussians.equal(expect)
    assert res.gaussians.equal(enc.quantized_prefix())
    assert res.info.sh_degree == degree and res.info.cfg == enc.cfg
    assert torch.equal(res.info.bounds, enc.bounds)


@pytest.mark.parametrize(
    "n,chunk,k",
    [(1, 64, 1), (256, 64, 256), (256, 64, 128), (300, 64, 150), (300, 64, 1), (300, 64, 299), (5, 1, 3)],
)
def test_prefixes_round_trip(n, chunk, k):
    g = Gaussians.random(n, 3, seed=n)
    enc = ProgressiveEncoder(g, chunk_size=chunk)
    data = enc.encode(k)
    assert len(data) == enc.size_of_prefix(k)
    res = decode(data)
    assert res.complete and len(res.gaussians) == k
    order = enc.stream_order(k)
    assert sorted(order.tolist()) == list(range(k))  # set-equal to the encoder's first k
    for a in range(0, k, chunk):  # and each chunk only permuted within itself
        assert sorted(order[a : a + chunk].tolist()) == list(range(a, min(a + chunk, k)))
    assert res.gaussians.equal(dequantize(quantize(g.prefix(k), enc.cfg, enc.bounds)).subset(order))


def test_stream_order_is_morton_sorted_and_stable_for_ties():
    g = Gaussians.random(40, 0, seed=2)
    g.means[:] = g.means[0]  # all in the same grid cell: ties keep the given order
    enc = ProgressiveEncoder(g, chunk_size=16)
    assert enc.stream_order().tolist() == list(range(40))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_size_of_prefix_is_exact_for_many_k(codec):
    g = Gaussians.random(700, 3, seed=1)
    enc = ProgressiveEncoder(g, codec=codec, chunk_size=100)
    rand = np.random.default_rng(0).integers(0, 701, 25).tolist()
    ks = sorted({0, 1, 2, 99, 100, 101, 199, 200, 350, 699, 700, *rand})
    for k in ks:
        data = enc.encode(k)
        assert enc.size_of_prefix(k) == len(data), k
        assert len(_decode_quiet(data).gaussians) == k
    # full chunks are independent of k: the k-file is a prefix of the full file after the header/index
    full = enc.encode()
    d300 = enc.encode(300)
    assert d300[enc.overhead(300) :] == full[enc.overhead() :][: len(d300) - enc.overhead(300)]
    assert enc.size_of_prefix(300) == enc.overhead(300) + sum(enc.chunk_sizes()[:3])


def test_empty_prefix_is_a_valid_stream():
    enc = ProgressiveEncoder(Gaussians.random(10, 1), chunk_size=4)
    data = enc.encode(0)
    assert len(data) == enc.size_of_prefix(0) == enc.header_size + 4
    assert enc.header_size == HEADER_SIZE + HEADER_V2_EXTRA + len(enc._book) + 4  # v2: codebook section (empty)
    res = decode(data)
    assert res.complete and len(res.gaussians) == 0 and res.gaussians.sh_degree == 1
    with pytest.raises(RaveError):
        enc.size_of_prefix(11)
    with pytest.raises(RaveError):
        enc.encode(-1)


def test_bad_encoder_options():
    g = Gaussians.random(10, 0)
    with pytest.raises(RaveError, match="unknown codec"):
        ProgressiveEncoder(g, codec="gzip9")
    for cs in (0, MAX_CHUNK_SIZE + 1):
        with pytest.raises(RaveError, match="chunk size"):
            ProgressiveEncoder(g, chunk_size=cs)


def test_custom_bit_depths_round_trip_including_wide_fields():
    g = Gaussians.random(200, 3, seed=9)
    cfg = QuantConfig(pos_bits=21, rot_bits=12, scale_bits=10, opacity_bits=16, sh0_bits=9, shN_bits=(9, 2, 16))
    enc = ProgressiveEncoder(g, cfg, chunk_size=50)
    res = decode(enc.encode(123))
    assert res.info.cfg == cfg.fit(g) == enc.cfg  # SH ranges fitted to the whole scene, stored in the header
    assert res.gaussians.equal(enc.quantized_prefix(123))


def test_truncation_after_complete_chunks_decodes_that_prefix(tmp_path):
    g = Gaussians.random(250, 2, seed=4)
    enc = ProgressiveEncoder(g, chunk_size=50)
    full = enc.encode()
    for c in range(0, 5):  # cut after c complete chunks (5 = the whole file)
        cut = full[: enc.overhead() + sum(enc.chunk_sizes()[:c])]
        with pytest.warns(RaveStreamWarning, match=f"recovered {50 * c} of 250"):
            res = decode(cut)
        assert not res.complete and len(res.gaussians) == 50 * c
        assert res.gaussians.equal(enc.quantized_prefix(50 * c))
        with pytest.raises(RaveError, match="truncated"):
            decode(cut, strict=True)
    # cut mid-chunk: the complete chunks before it
    cut = full[: enc.overhead() + sum(enc.chunk_sizes()[:2]) + 7]
    res = _decode_quiet(cut)
    assert len(res.gaussians) == 100 and res.gaussians.equal(enc.quantized_prefix(100))
    # a file path is named in the messages
    p = tmp_path / "cut.rave"
    p.write_bytes(cut)
    with pytest.raises(RaveError, match="cut.rave: truncated"):
        decode(p, strict=True)
    # cut inside the header or index: nothing to recover -> RaveError
    for n in (0, 3, 10, HEADER_SIZE - 1, HEADER_SIZE + 5, enc.overhead() - 1):
        with pytest.raises(RaveError):
            decode(full[:n])


def test_trailing_bytes_warn_or_fail_when_strict():
    enc = ProgressiveEncoder(Gaussians.random(20, 0), chunk_size=8)
    data = enc.encode() + b"xx"
    with pytest.warns(RaveStreamWarning, match="2 unexpected bytes"):
        assert len(decode(data).gaussians) == 20
    with pytest.raises(RaveError):
        decode(data, strict=True)


def test_wrong_magic_newer_version_and_flipped_bytes(tmp_path):
    enc = ProgressiveEncoder(Gaussians.random(200, 1, seed=1), chunk_size=50)
    data = bytearray(enc.encode())
    p = tmp_path / "x.rave"
    p.write_bytes(b"PLY\n" + bytes(data[4:]))
    with pytest.raises(RaveError, match=r"x\.rave: not a \.rave file"):
        decode(p)
    newer = bytearray(data)
    newer[4:6] = struct.pack("<H", FORMAT_VERSION + 1)
    with pytest.raises(RaveError, match=f"version {FORMAT_VERSION + 1} is newer"):
        decode(bytes(newer))
    hdr = bytearray(data)
    hdr[30] ^= 0x10
    with pytest.raises(RaveError, match="header"):
        decode(bytes(hdr))
    idx = bytearray(data)
    idx[enc.header_size + 2] ^= 1
    with pytest.raises(RaveError, match="index"):
        decode(bytes(idx))
    sizes = enc.chunk_sizes()
    for c in range(4):
        bad = bytearray(data)
        bad[enc.overhead() + sum(sizes[:c]) + sizes[c] // 2] ^= 0x40
        with pytest.raises(RaveError, match=f"chunk {c} is corrupt"):
            decode(bytes(bad))
    with pytest.raises(RaveError, match="cannot read"):
        decode(tmp_path / "missing.rave")


def _forge(n, chunk_size, n_chunks, entries=(), payload=b"", sh=0, codec_id=1, bits=(16, 8, 8, 8, 8, 5, 4, 4)):
    head = _HEADER.pack(b"RAVE", 1, HEADER_SIZE, n, chunk_size, n_chunks, sh, codec_id, *bits, 0,
                        0, 0, 0, 1, 1, 1, -16.0, 1.0, 3.0, 1.0, 1.0, 1.0, 0)  # fmt: skip
    head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
    body = b"".join(struct.pack("<III", *e) for e in entries)
    return head + body + struct.pack("<I", zlib.crc32(body)) + payload


def test_forged_headers_fail_fast_without_allocating():
    cases = [
        _forge(2**62, 4096, 2**32 - 1, entries=[(10, 0, 4096)]),  # absurd N, inconsistent chunk count
        _forge(2**40, 2**18, 2**22, entries=[(10, 0, 2**18)]),  # absurd N: the index cannot fit the file
        _forge(10, 4096, 999, entries=[(10, 0, 10)]),  # inconsistent chunk count
        _forge(10, 0, 1),  # zero chunk size
        _forge(10, 2**31, 1, entries=[(10, 0, 10)]),  # absurd chunk size
        _forge(10, 10, 1, entries=[(2**32 - 1, 0, 10)]),  # absurd chunk length
        _forge(10, 10, 1, entries=[(10, 0, 7)]),  # wrong count
        _forge(10, 10, 1, entries=[(10, 0, 10)], sh=9),  # bad SH degree
        _forge(10, 10, 1, entries=[(10, 0, 10)], codec_id=200),  # unknown codec
        _forge(10, 10, 1, entries=[(10, 0, 10)], bits=(40, 8, 8, 8, 8, 5, 4, 4)),  # bad bit depth
    ]
    for data in cases:
        with pytest.raises(RaveError):
            decode(data)
    # valid-CRC chunks that are decompression bombs (5 MB of zeros where 20 Gaussians need 1240 bytes)
    import lzma

    import zstandard

    zeros = bytes(5_000_000)
    bombs = [
        (1, lzma.compress(zeros, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])),
        (2, zstandard.ZstdCompressor(level=19, write_content_size=False).compress(zeros)),
        (2, zstandard.ZstdCompressor(level=19).compress(zeros)),  # declares its 5 MB content size
        (3, __import__("brotli").compress(zeros)),
    ]
    for codec_id, bomb in bombs:
        data = _forge(20, 20, 1, entries=[(len(bomb), zlib.crc32(bomb), 20)], payload=bomb, sh=3,
                      codec_id=codec_id)  # fmt: skip
        with pytest.raises(RaveError, match="chunk 0 does not decode"):
            decode(data)
    # a valid-CRC chunk of the right size whose codes are out of range
    from rave_viewer.codec.container import _Layout

    raw_len = 10 * _Layout.of(QuantConfig(), 0).bytes_per_gaussian
    for codec_id, comp in [(1, CODECS["lzma"].compress), (2, CODECS["zstd"].compress), (3, CODECS["brotli"].compress)]:
        blob = comp(b"\xff" * raw_len)
        data = _forge(10, 10, 1, entries=[(len(blob), zlib.crc32(blob), 10)], payload=blob, codec_id=codec_id)
        with pytest.raises(RaveError, match="chunk 0 does not decode"):
            decode(data)
        short = comp(b"\x00" * (raw_len - 1))
        data = _forge(10, 10, 1, entries=[(len(short), zlib.crc32(short), 10)], payload=short, codec_id=codec_id)
        with pytest.raises(RaveError, match="chunk 0 does not decode"):
            decode(data)


def test_read_info_reports_header_and_chunks():
    enc = ProgressiveEncoder(Gaussians.random(130, 3), codec="zstd", chunk_size=50)
    info = read_info(enc.encode())
    assert (info.n_gaussians, info.codec, info.chunk_size, info.sh_degree) == (130, "zstd", 50, 3)
    assert [c.count for c in info.chunks] == [50, 50, 30]
    assert info.expected_size == enc.size_of_prefix(130)
    assert info.chunks[0].offset == enc.header_size + 3 * INDEX_ENTRY_SIZE + 4 == info.index_end
    assert info.format_version == 2 and info.header_size == enc.header_size
    assert [info.prefix_size(j) for j in range(4)] == [enc.size_of_prefix(k) for k in (0, 50, 100, 130)]


def test_write_is_atomic_and_matches_encode(tmp_path):
    g = Gaussians.random(90, 1, seed=3)
    enc = ProgressiveEncoder(g, chunk_size=32)
    p = tmp_path / "s.rave"
    assert enc.write(p, 70) == enc.size_of_prefix(70)
    assert p.read_bytes() == enc.encode(70)
    assert encode(g, tmp_path / "t.rave", chunk_size=32) == (tmp_path / "t.rave").read_bytes()

    def boom(raw):
        raise RuntimeError("compressor failed")

    register_codec("test-failing", 250, boom, lambda d, n: d)
    try:
        before = p.read_bytes()
        with pytest.raises(RuntimeError):
            ProgressiveEncoder(g, codec="test-failing", chunk_size=32).write(p)
        assert p.read_bytes() == before
        assert sorted(x.name for x in tmp_path.iterdir()) == ["s.rave", "t.rave"]  # no temp file left
    finally:
        CODECS.pop("test-failing")


def test_registering_a_codec_is_one_call():
    register_codec("test-zlib", 251, lambda b: zlib.compress(b, 9), lambda d, n: zlib.decompress(d, bufsize=n))
    try:
        g = Gaussians.random(60, 2)
        enc = ProgressiveEncoder(g, codec="test-zlib", chunk_size=25)
        res = decode(enc.encode())
        assert res.info.codec == "test-zlib" and res.gaussians.equal(enc.quantized_prefix())
        with pytest.raises(ValueError):
            register_codec("other", 251, zlib.compress, zlib.decompress)
    finally:
        CODECS.pop("test-zlib")


def test_cut_stream_at_chunk_boundaries_equals_encoding_the_prefix():
    enc = ProgressiveEncoder(Gaussians.random(230, 2, seed=6), chunk_size=50)
    full = enc.encode()
    for k in (0, 50, 100, 200, 230):
        assert cut_stream(full, k) == enc.encode(k)
    truncated = full[: enc.overhead() + sum(enc.chunk_sizes()[:2])]
    assert cut_stream(truncated, 100) == enc.encode(100)
    with pytest.raises(RaveError, match="truncated"):
        cut_stream(truncated, 150)
    with pytest.raises(RaveError, match="chunk boundary"):
        cut_stream(full, 120)
    with pytest.raises(RaveError):
        cut_stream(full, 231)


def test_infinite_opacities_are_encoded_with_one_warning_naming_the_scene():
    from rave_viewer.codec.container import RaveValueWarning

    g = Gaussians.random(40, 1, seed=11)
    g.opacities[[3, 9, 20]] = float("inf")
    g.opacities[[5, 6]] = -float("inf")
    with pytest.warns(RaveValueWarning) as rec:
        enc = ProgressiveEncoder(g, QuantConfig(opacity_bits=6), name="scene.ply", progress=False)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert msg == (
        "scene.ply: 5 Gaussians had an infinite opacity logit (exactly opaque or transparent): 3 +inf stored as "
        "opacity 0.9922, 2 -inf as 0.007812, the nearest of the 64 levels"
    )
    alpha = torch.sigmoid(decode(enc.encode()).gaussians.opacities.double())
    order = enc.stream_order()
    assert torch.allclose(alpha[torch.isposinf(g.opacities[order])], torch.tensor(1 - 1 / 128, dtype=torch.float64))
    assert torch.allclose(alpha[torch.isneginf(g.opacities[order])], torch.tensor(1 / 128, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ProgressiveEncoder(Gaussians.random(40, 1, seed=11), progress=False)  # finite: no warning
