"""The .rave anchor stream (codec/anchors.py): exact prefix sizes, byte-exact round trips, every prefix decodes,
fake quantization equals decoding bit for bit, unit types refused both ways, and fuzzing (truncations, bit
flips, CRC-consistent forgeries of the header fields) ends in a decode or one RaveError line, nothing else."""

from __future__ import annotations

import random
import struct
import warnings
import zlib

import pytest
import torch

from rave_viewer.codec import decode, read_info
from rave_viewer.codec.anchors import (
    ANCHOR_FIELDS,
    ANCHOR_HEADER_SIZE,
    AnchorEncoder,
    AnchorQuant,
    anchor_bytes_needed,
    cut_anchor_stream,
    decode_anchors,
    fake_quantize_anchors,
    read_anchor_info,
)
from rave_viewer.codec.container import RaveStreamWarning
from rave_viewer.errors import RaveError


def synthetic_anchors(n: int, F: int = 8, k: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Anchors on a voxel grid with random features, offsets and log-scalings (S = 6)."""
    g = torch.Generator().manual_seed(seed)
    return {"anchor": torch.randint(-50, 50, (n, 3), generator=g).float() * 0.02,
            "offset": torch.randn(n, k, 3, generator=g) * 0.1,
            "anchor_feat": torch.randn(n, F, generator=g),
            "scaling": torch.randn(n, 6, generator=g) * 0.3 - 4.0}


def synthetic_model(F: int = 8, k: int = 3) -> dict:
    from rave_viewer.scaffold.model import ScaffoldMLPs, ScaffoldSpec

    spec = ScaffoldSpec(feat_dim=F, n_offsets=k, voxel_size=0.02)
    torch.manual_seed(1)
    return {"spec": spec.to_dict(), "mlps": ScaffoldMLPs(spec).state_dict()}


@pytest.fixture(scope="module")
def enc():
    a = synthetic_anchors(230)
    return AnchorEncoder(a, synthetic_model(), AnchorQuant.fit(a), chunk_size=64)


def test_prefix_sizes_exact_and_round_trip(enc):
    for k in [0, 1, 5, 63, 64, 65, 128, 150, 192, 229, 230]:
        data = enc.encode(k)
        assert len(data) == enc.size_of_prefix(k), k
        res = decode_anchors(data, strict=True)
        assert res.complete and res.n_decoded == k
        want = enc.quantized_prefix(k)
        for f in ANCHOR_FIELDS:
            assert torch.equal(res.anchors[f], want[f]), (k, f)
            assert res.anchors[f].dtype == torch.float32
        assert res.spec == enc.spec
        assert res.mlps.keys() == synthetic_model()["mlps"].keys()
        for name, t in synthetic_model()["mlps"].items():
            assert torch.equal(res.mlps[name], t)
    assert enc.encode(230) == enc.encode()  # deterministic, cached chunks give the same bytes
    assert sum(enc.chunk_sizes()) + enc.overhead(192) == enc.size_of_prefix(192)
    assert enc.n_chunks(150) == 3 and len(enc) == 230


def test_stream_order_is_a_chunkwise_permutation(enc):
    order = enc.stream_order(150)
    assert sorted(order.tolist()) == list(range(150))
    assert all(64 * (i // 64) <= int(j) < 64 * (i // 64 + 64) for i, j in enumerate(order.tolist()))
    qa = enc.quantized()
    qp = enc.quantized_prefix(150)
    for f in ANCHOR_FIELDS:
        assert torch.equal(qa[f][order], qp[f])


def test_every_cut_after_a_complete_chunk_decodes(enc):
    data = enc.encode()
    info = read_anchor_info(data)
    for n_chunks in range(len(info.chunks) + 1):
        end = info.prefix_size(n_chunks) if n_chunks < len(info.chunks) else len(data)
        for cut in {info.index_end + sum(c.length for c in info.chunks[:n_chunks]), end - 1}:
            if cut < info.index_end:
                continue
            with pytest.warns(RaveStreamWarning) if cut < len(data) else warnings.catch_warnings():
                res = decode_anchors(data[:cut])
            full = sum(1 for c in info.chunks if c.offset + c.length <= cut)
            assert res.n_decoded == sum(c.count for c in info.chunks[:full])
            want = enc.quantized_prefix(res.n_decoded)
            assert all(torch.equal(res.anchors[f], want[f]) for f in ANCHOR_FIELDS)
    with pytest.raises(RaveError, match="truncated"):
        decode_anchors(data[:-1], strict=True)


def test_fake_quantize_is_bit_identical_to_decoding_with_identity_gradient():
    a = synthetic_anchors(300, F=16, k=4, seed=3)
    a["anchor_feat"][0, 0] = 50.0  # outside nothing: fit includes it; the others use the full range
    q = AnchorQuant.fit(a)
    enc = AnchorEncoder(a, synthetic_model(16, 4), q, chunk_size=100)
    dec = decode_anchors(enc.encode()).anchors
    order = enc.stream_order()
    p = {f: a[f].clone().requires_grad_(True) for f in ANCHOR_FIELDS}
    fq = fake_quantize_anchors(p, q)
    for f in ANCHOR_FIELDS:
        assert torch.equal(fq[f].detach()[order].view(torch.int32), dec[f].view(torch.int32)), f
    sum((fq[f] * 3.0).sum() for f in ANCHOR_FIELDS).backward()
    for f in ANCHOR_FIELDS:
        assert torch.equal(p[f].grad, torch.full_like(p[f], 3.0))
    # features move by at most half a step; geometry by the fp16 rounding
    step = (torch.tensor(q.feat_hi) - torch.tensor(q.feat_lo)) / 255
    assert ((fq["anchor_feat"] - a["anchor_feat"]).abs() <= step / 2 + 1e-6).all()


def test_sixteen_bit_features_and_other_codecs():
    a = synthetic_anchors(70, F=4, k=2)
    for codec in ("lzma", "zstd", "brotli"):
        enc = AnchorEncoder(a, synthetic_model(4, 2), AnchorQuant.fit(a, feature_bits=12), codec=codec, chunk_size=32)
        res = decode_anchors(enc.encode(), strict=True)
        assert res.info.codec == codec and res.quant == enc.quant
        assert torch.equal(res.anchors["anchor_feat"], enc.quantized_prefix()["anchor_feat"])
        err = (res.anchors["anchor_feat"] - a["anchor_feat"][enc.stream_order()]).abs().max()
        assert err < 1e-2  # 12 bits over ~6 units of range


def test_write_is_atomic_and_exact(tmp_path, enc):
    out = tmp_path / "a.rave"
    assert enc.write(out, 100) == enc.size_of_prefix(100) == out.stat().st_size
    assert decode_anchors(out).n_decoded == 100


def test_quant_dict_round_trip_and_validation():
    a = synthetic_anchors(20)
    q = AnchorQuant.fit(a)
    assert AnchorQuant.from_dict(q.to_dict()) == q
    import json

    assert AnchorQuant.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    bad = [None, {"feature_bits": 0, "feat_lo": [0.0], "feat_hi": [1.0]}, {"feat_lo": [1.0], "feat_hi": [0.0]},
           {"feat_lo": [0.0], "feat_hi": [1.0, 2.0]}, {"feat_lo": [], "feat_hi": []},
           {"feat_lo": ["x"], "feat_hi": [1.0]}, {"feat_lo": [0.0], "feat_hi": [1e39]},
           {"feat_lo": [0.0], "feat_hi": [1.0], "geometry": "fp32"}, {"feat_lo": [0.0], "feat_hi": [1.0], "x": 1},
           {"feature_bits": True, "feat_lo": [0.0], "feat_hi": [1.0]}]
    for d in bad:
        with pytest.raises(RaveError):
            AnchorQuant.from_dict(d)


def test_encoder_refuses_bad_input():
    a, m = synthetic_anchors(10), synthetic_model()
    q = AnchorQuant.fit(a)
    cases = [
        ({k: v for k, v in a.items() if k != "scaling"}, m, q, "lack"),
        ({**a, "offset": a["offset"][:5]}, m, q, "must be"),
        ({**a, "anchor": a["anchor"] * 1e5}, m, q, "fp16 range"),
        ({**a, "anchor_feat": a["anchor_feat"].clone().fill_(float("nan"))}, m, q, "finite"),
        (a, {"spec": {**m["spec"], "feat_dim": 9}, "mlps": m["mlps"]}, q, "feat_dim"),
        (a, {"spec": m["spec"]}, q, "model must be"),
        (a, {"spec": {"x": float("nan")}, "mlps": m["mlps"]}, q, "JSON"),
        (a, {"spec": m["spec"], "mlps": {"w": torch.full((2,), float("inf"))}}, q, "finite"),
        (synthetic_anchors(10, F=4), m, q, "feature ranges"),
    ]
    for anchors, model, quant, match in cases:
        with pytest.raises(RaveError, match=match):
            AnchorEncoder(anchors, model, quant)
    with pytest.raises(RaveError, match="chunk size"):
        AnchorEncoder(a, m, q, chunk_size=0)
    with pytest.raises(RaveError, match="unknown codec"):
        AnchorEncoder(a, m, q, codec="nope")
    with pytest.raises(RaveError, match="prefix length"):
        AnchorEncoder(a, m, q).encode(11)


def test_unit_types_refused_both_ways(tmp_path, enc):
    from rave_viewer.codec import ProgressiveEncoder
    from rave_viewer.scene.gaussians import Gaussians

    path = tmp_path / "anchors.rave"
    enc.write(path)
    for reader in (decode, read_info):
        with pytest.raises(RaveError, match=r"anchors\.rave: is an anchor \(Scaffold-GS\) \.rave stream"):
            reader(path)
    from rave_viewer.codec import bytes_needed

    with pytest.raises(RaveError, match="anchor"):
        bytes_needed(path.read_bytes()[:200])
    data = ProgressiveEncoder(Gaussians.random(40, sh_degree=1), progress=False).encode()
    for reader in (decode_anchors, read_anchor_info, anchor_bytes_needed):
        with pytest.raises(RaveError, match=r"is a Gaussian \(3DGS\) \.rave stream, not an anchor one"):
            reader(data)


def test_bytes_needed_grows_to_the_index(enc):
    data = enc.encode(150)
    got = 0
    while got < anchor_bytes_needed(data[:got]):
        got = anchor_bytes_needed(data[:got])
    info = read_anchor_info(data[:got])
    assert got == info.index_end and info.n_complete_chunks == 0 and info.n_anchors == 150


def test_budget_limits(enc):
    data = enc.encode()
    with pytest.raises(RaveError, match="max_anchors"):
        decode_anchors(data, max_anchors=100)
    assert decode_anchors(data, max_anchors=None, max_ratio=None).n_decoded == 230
    with pytest.raises(RaveError, match="max_anchors must be"):
        decode_anchors(data, max_anchors=-1)


def test_bomb_refused_before_decompressing(monkeypatch):
    import rave_viewer.codec.anchors as mod

    a = {k: torch.zeros_like(v) for k, v in synthetic_anchors(20000).items()}  # identical anchors
    enc = AnchorEncoder(a, {"spec": {}, "mlps": {}}, AnchorQuant.fit(a), chunk_size=5000)
    data = enc.encode()
    assert 20000 * 44 > 100 * len(data)
    monkeypatch.setattr(mod, "FREE_BYTES", 0)
    with pytest.raises(RaveError, match="decompression bomb"):
        decode_anchors(data)
    assert decode_anchors(data, max_ratio=None).n_decoded == 20000


# -- fuzz ----------------------------------------------------------------------------------------------
def _outcome(data: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RaveStreamWarning)
        try:
            res = decode_anchors(data)
        except RaveError as e:
            assert "\n" not in str(e)
            return "error"
    assert res.n_decoded <= res.n_declared
    for f in ANCHOR_FIELDS:
        assert torch.isfinite(res.anchors[f]).all()
    return "ok" if res.complete else "partial"


def _mlp_offset(data) -> int:
    """Where the MLP blob starts: after the header, the spec and the float32 ranges (features, and offsets and
    scalings with uniform geometry)."""
    F, k, S = struct.unpack_from("<HHH", data, 28)
    geo = 3 * k + S if data[11] & 1 else 0
    return ANCHOR_HEADER_SIZE + struct.unpack_from("<I", data, 36)[0] + 8 * (F + geo)


def _refix_crcs(data: bytearray) -> bytearray:
    """Recompute every CRC (header, model section, index, chunks) so that forged fields reach the checks
    behind them."""
    h = ANCHOR_HEADER_SIZE
    data[h - 4:h] = struct.pack("<I", zlib.crc32(data[:h - 4]))
    start = _mlp_offset(data) + struct.unpack_from("<I", data, 44)[0] + 4
    if start > len(data):
        return data
    data[start - 4:start] = struct.pack("<I", zlib.crc32(data[h:start - 4]))
    n_chunks = struct.unpack_from("<I", data, 24)[0]
    end = start + 12 * n_chunks
    if end + 4 > len(data):
        return data
    off = end + 4
    for i in range(n_chunks):
        length = struct.unpack_from("<I", data, start + 12 * i)[0]
        struct.pack_into("<I", data, start + 12 * i + 4, zlib.crc32(data[off:off + length]))
        off += length
    data[end:end + 4] = struct.pack("<I", zlib.crc32(data[start:end]))
    return data


@pytest.fixture(scope="module", params=["fp16", "uniform"])
def small_stream(request):
    a = synthetic_anchors(40, F=4, k=2, seed=5)
    m = synthetic_model(4, 2)
    m["mlps"] = {k: v[..., :2] for k, v in list(m["mlps"].items())[:2]}  # a small MLP section keeps fuzz fast
    q = AnchorQuant.fit(a, geometry=request.param, geometry_bits=6)
    return AnchorEncoder(a, m, q, chunk_size=16).encode()


def test_header_offsets_match_the_fuzz_helper(small_stream):
    info = read_anchor_info(small_stream)
    assert struct.unpack_from("<H", small_stream, 28)[0] == info.feat_dim == 4
    assert struct.unpack_from("<I", small_stream, 24)[0] == len(info.chunks) == 3
    assert bytes(_refix_crcs(bytearray(small_stream))) == small_stream


def test_fuzz_truncations(small_stream):
    seen = {_outcome(small_stream[:cut]) for cut in range(len(small_stream) + 1)}
    assert seen == {"error", "partial", "ok"}


def test_fuzz_bit_flips(small_stream):
    rng = random.Random(0)
    seen = set()
    for _ in range(1500):
        d = bytearray(small_stream)
        i = rng.randrange(len(d))
        d[i] ^= 1 << rng.randrange(8)
        seen.add(_outcome(bytes(d)))
    assert "error" in seen


def test_fuzz_crc_consistent_forgeries(small_stream):
    """Forged header fields (sizes, counts, bits, section lengths) and bytes anywhere, with every CRC fixed."""
    rng = random.Random(1)
    fields = [(6, "<H"), (8, "<B"), (9, "<B"), (10, "<B"), (11, "<B"), (12, "<Q"), (20, "<I"), (24, "<I"),
              (28, "<H"), (30, "<H"), (32, "<H"), (34, "<H"), (36, "<I"), (40, "<I"), (44, "<I")]
    values = [0, 1, 2, 3, 7, 16, 17, 255, 256, 1023, 1 << 16, (1 << 16) - 1, 1 << 20, 1 << 31, (1 << 32) - 1]
    seen = {}
    for _ in range(1200):
        d = bytearray(small_stream)
        if rng.random() < 0.6:
            off, fmt = rng.choice(fields)
            v = rng.choice(values) % (1 << (8 * struct.calcsize(fmt)))
            struct.pack_into(fmt, d, off, v)
        else:
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(ANCHOR_HEADER_SIZE, len(d))
                d[i] = rng.randrange(256)
        out = _outcome(bytes(_refix_crcs(d)))
        seen[out] = seen.get(out, 0) + 1
    assert seen.get("error", 0) > 100 and seen.get("ok", 0) > 0


def test_forged_mlp_tables_are_refused(small_stream):
    """MLP sections that decompress fine but whose table lies (counts, names, dims, data length, NaN)."""
    import numpy as np

    from rave_viewer.codec.coders import get_codec

    def with_mlp(raw: bytes) -> bytes:
        d = bytearray(small_stream)
        at, mlp_len = _mlp_offset(d), struct.unpack_from("<I", d, 44)[0]
        blob = get_codec("lzma").compress(raw)
        d[at:at + mlp_len] = blob
        struct.pack_into("<I", d, 40, len(raw))
        struct.pack_into("<I", d, 44, len(blob))
        return bytes(_refix_crcs(d))

    def table(*entries, data=b""):
        out = struct.pack("<H", len(entries))
        for name, dims in entries:
            out += struct.pack("<H", len(name)) + name + struct.pack(f"<B{len(dims)}I", len(dims), *dims)
        return out + data

    four = np.arange(4, dtype="<f4").tobytes()
    assert decode_anchors(with_mlp(table((b"w", (2, 2)), data=four))).mlps["w"].shape == (2, 2)
    bad = {
        "damaged": [table((b"w", (2, 2)))[:-3], struct.pack("<H", 300), table((b"", (4,)), data=four),
                    table((b"\xff", (4,)), data=four), table((b"w", (1, 1, 1, 1, 4)), data=four),
                    table((b"w", (2,)), (b"w", (2,)), data=four)],
        "data length": [table((b"w", (5,)), data=four), table((b"w", (1 << 31, 1 << 31)), data=four),
                        table((b"w", (65536, 65536, 65536, 65536))),  # 2^64 values, 0 in int64, no data
                        table((b"w", (3,)), data=four)],
        "NaN": [table((b"w", (4,)), data=np.array([0, np.nan, 0, 0], "<f4").tobytes())],
    }
    for match, raws in bad.items():
        for raw in raws:
            with pytest.raises(RaveError, match=match):
                decode_anchors(with_mlp(raw))


def test_coarse_fp16_positions_warn_once():
    from rave_viewer.codec.container import RaveValueWarning

    a = synthetic_anchors(50)
    far = {**a, "anchor": a["anchor"] + 300.0}  # fp16 step 0.25 at 300, voxel 0.02
    with pytest.warns(RaveValueWarning, match="more than a quarter of the voxel size"):
        AnchorEncoder(far, synthetic_model(), AnchorQuant.fit(far))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AnchorEncoder(a, synthetic_model(), AnchorQuant.fit(a))  # near the origin: silent


@pytest.mark.parametrize("bits", [8, 12])
def test_uniform_geometry_option(bits):
    """Offsets and scalings on fixed per-column grids: exact prefixes, decode == fake quantization bit for bit,
    errors within half a step, fewer bytes than fp16 at 8 bits."""
    a = synthetic_anchors(260, F=8, k=3, seed=7)
    q = AnchorQuant.fit(a, geometry="uniform", geometry_bits=bits)
    assert q.uniform_geometry and len(q.offset_lo) == 9 and len(q.scaling_lo) == 6
    assert AnchorQuant.from_dict(q.to_dict()) == q
    enc = AnchorEncoder(a, synthetic_model(8, 3), q, chunk_size=64)
    for k in [0, 1, 64, 100, 260]:
        data = enc.encode(k)
        assert len(data) == enc.size_of_prefix(k)
        res = decode_anchors(data, strict=True)
        assert res.quant == q
        want = enc.quantized_prefix(k)
        assert all(torch.equal(res.anchors[f], want[f]) for f in ANCHOR_FIELDS)
    fq = fake_quantize_anchors({f: v.clone().requires_grad_(True) for f, v in a.items()}, q)
    dec = decode_anchors(enc.encode()).anchors
    order = enc.stream_order()
    for f in ANCHOR_FIELDS:
        assert torch.equal(fq[f].detach()[order].view(torch.int32), dec[f].view(torch.int32)), f
    step = (torch.tensor(q.offset_hi) - torch.tensor(q.offset_lo)) / ((1 << bits) - 1)
    assert ((fq["offset"] - a["offset"]).reshape(260, -1).abs() <= step / 2 + 1e-6).all()
    if bits == 8:
        fp16 = AnchorEncoder(a, synthetic_model(8, 3), AnchorQuant.fit(a), chunk_size=64)
        assert enc.size_of_prefix(260) < fp16.size_of_prefix(260)


def test_uniform_geometry_validation():
    a = synthetic_anchors(20, F=8, k=3)
    q = AnchorQuant.fit(a, geometry="uniform")
    d = q.to_dict()
    bad = [{**d, "geometry_bits": 0}, {**d, "geometry_bits": 17}, {**d, "offset_lo": d["offset_lo"][:-1]},
           {**d, "scaling_hi": [x - 10 for x in d["scaling_hi"]]}, {**d, "geometry": "fp16"},
           {k: v for k, v in d.items() if k != "offset_lo"}, {**d, "offset_lo": "x"}]
    for b in bad:
        with pytest.raises(RaveError):
            AnchorQuant.from_dict(b)
    with pytest.raises(RaveError, match="offset and 6 scaling ranges"):
        AnchorEncoder(synthetic_anchors(20, F=8, k=4), synthetic_model(8, 4), q)
    with pytest.raises(RaveError, match="ranges"):
        fake_quantize_anchors(synthetic_anchors(20, F=8, k=4), q)


def test_cut_stream_is_byte_identical_to_encoding_the_prefix(enc):
    data = enc.encode()
    for k in (0, 64, 128, 192, 230):
        assert cut_anchor_stream(data, k) == enc.encode(k)
    assert cut_anchor_stream(enc.encode(192)[:-5], 128) == enc.encode(128)  # a truncated input works
    with pytest.raises(RaveError, match="not a chunk boundary"):
        cut_anchor_stream(data, 100)
    with pytest.raises(RaveError, match="truncated before anchor 192"):
        cut_anchor_stream(enc.encode(192)[:-5], 192)


def test_unit_type_is_the_version_fields_high_byte(enc):
    """Anchor streams: 0x0101; Gaussian streams keep 0 there whatever their version (v3 too), so a Gaussian
    header whose 9th byte happens to be 1 (N = 1) is never taken for anchors."""
    from rave_viewer.codec.unit_type import unit_type_of

    data = enc.encode()
    assert struct.unpack_from("<H", data, 4)[0] == 0x0101 and unit_type_of(data) == "anchors"
    for version in (1, 2, 3, 9):
        head = b"RAVE" + struct.pack("<HHQ", version, 112, 1)
        assert unit_type_of(head) == "gaussians"
    assert unit_type_of(b"RAVE" + struct.pack("<H", 0x0201)) is None
    forged = bytearray(data)
    struct.pack_into("<H", forged, 4, 0x0102)
    with pytest.raises(RaveError, match="anchor format version 2 is newer"):
        decode_anchors(bytes(_refix_crcs(forged)))
    struct.pack_into("<H", forged, 4, 0x0201)
    with pytest.raises(RaveError, match="unknown unit type 2"):
        decode_anchors(bytes(_refix_crcs(forged)))
    for reader in (decode, read_info):
        with pytest.raises(RaveError, match="unit|newer"):
            reader(bytes(_refix_crcs(forged)))
