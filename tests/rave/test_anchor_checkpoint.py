"""The anchor checkpoint (rave/anchor_checkpoint.py): lossless save/load through the one .ckpt loader, the shared
selection API within one chunk of a rate target, `encode_checkpoint` writing anchor streams that decode to the
prefix, and one clear line for missing MLP weights, a wrong feature size, forged fields or a pickle."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from rave_viewer.codec.anchors import ANCHOR_FIELDS, AnchorEncoder, AnchorQuant, decode_anchors
from rave_viewer.errors import RaveError
from rave_viewer.rave.anchor_checkpoint import AnchorCheckpoint
from rave_viewer.rave.checkpoint import (
    RankedCheckpoint,
    RaveCheckpoint,
    chunk_rate_table,
    checkpoint_encoder,
    encode_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
from tests.rave.test_rave_checkpoint import _rewrite, make_ckpt

N, CHUNK, F, K = 600, 50, 8, 3


def make_anchor_ckpt(n: int = N, chunk: int = CHUNK, geometry: str = "fp16") -> AnchorCheckpoint:
    from rave_viewer.scaffold.model import ScaffoldMLPs, ScaffoldSpec

    g = torch.Generator().manual_seed(0)
    anchors = {"anchor": torch.randint(-40, 40, (n, 3), generator=g).float() * 0.025,
               "offset": torch.randn(n, K, 3, generator=g) * 0.1,
               "anchor_feat": torch.randn(n, F, generator=g),
               "scaling": torch.randn(n, 6, generator=g) * 0.3 - 4.0}
    spec = ScaffoldSpec(feat_dim=F, n_offsets=K, voxel_size=0.025)
    torch.manual_seed(3)
    mlps = ScaffoldMLPs(spec).state_dict()
    quant = AnchorQuant.fit(anchors, geometry=geometry)
    enc = AnchorEncoder(anchors, {"spec": spec.to_dict(), "mlps": mlps}, quant, chunk_size=chunk)
    sizes = [n // 8, n // 4, n // 2, n]
    counts = list(range(n // 8, n + 1, n // 24))
    rd = {"count": counts, "bytes": [enc.size_of_prefix(k) for k in counts],
          "psnr": [20 + 5 * k / n for k in counts], "ssim": [0.5 + 0.4 * k / n for k in counts]}
    vm = torch.stack([look_at(torch.tensor([3.0, 0, 1]), torch.zeros(3)),
                      look_at(torch.tensor([0, 3.0, 1]), torch.zeros(3))])
    cams = Cameras(vm, intrinsics(24, 16, 1.0)[None].repeat(2, 1, 1), 24, 16,
                   torch.rand(2, 16, 24, 3, generator=g), ["a.png", "b.png"])
    ck = AnchorCheckpoint(anchors=anchors, spec=spec.to_dict(), mlps=mlps, quant=quant,
                          order=torch.randperm(n, generator=g), level_sizes=sizes,
                          level_rates=[enc.size_of_prefix(s) for s in sizes],
                          chunk_rates=chunk_rate_table(enc, n, chunk), rd=rd, test_cameras=cams,
                          meta={"ranking": "context"}, codec="lzma", chunk_size=chunk)
    ck._encoder = enc
    return ck


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ck = make_anchor_ckpt()
    path = tmp_path_factory.mktemp("ackpt") / "scene.ckpt"
    save_checkpoint(ck, path)
    return ck, path


def test_round_trip(saved):
    ck, path = saved
    back = load_checkpoint(path)
    assert isinstance(back, AnchorCheckpoint) and isinstance(back, RankedCheckpoint)
    assert back.unit_type == "anchors" and len(back) == N
    for f in ANCHOR_FIELDS:
        assert torch.equal(back.anchors[f], ck.anchors[f])
    assert back.mlps.keys() == ck.mlps.keys() and all(torch.equal(back.mlps[k], ck.mlps[k]) for k in ck.mlps)
    assert back.spec == ck.spec and back.quant == ck.quant
    assert torch.equal(back.order, ck.order)
    assert (back.level_sizes, back.level_rates, back.chunk_rates) == (ck.level_sizes, ck.level_rates, ck.chunk_rates)
    assert back.rd == ck.rd and back.meta["ranking"] == "context" and back.meta["format_version"] == 2
    assert torch.equal(back.test_cameras.viewmats, ck.test_cameras.viewmats)
    # a fresh encoder from the loaded file gives the same bytes as the build's
    assert back.encoder().encode(333) == ck.encoder().encode(333)
    save_checkpoint(back, path.with_name("again.ckpt"))
    again = load_checkpoint(path.with_name("again.ckpt"))
    assert all(torch.equal(again.anchors[f], ck.anchors[f]) for f in ANCHOR_FIELDS) and again.quant == ck.quant


def test_selection_is_the_shared_api_within_one_chunk(saved):
    ck, _ = saved
    enc = ck.encoder()
    one_chunk = max(enc.chunk_sizes()) + 12
    lo, hi = ck.rate_range()
    for i in range(25):
        r = lo + (hi - lo) * i / 24
        k = ck.select(rate=r)
        assert abs(ck.prefix_bytes(k) - r) <= one_chunk
        assert ck.prefix_bytes(k) == enc.size_of_prefix(k)
        kc = ck.select(rate=r, cap=True)
        assert enc.size_of_prefix(kc) <= r and (kc == N or enc.size_of_prefix(kc + 1) > r)
    assert ck.select(count=123) == 123
    assert ck.level_of(N // 4) == 2 and ck.num_levels == 4
    assert ck.rd["count"][0] <= ck.select(psnr=22.0) <= N
    with pytest.raises(RaveError, match="valid range"):
        ck.select(rate=lo / 2)


def test_decoded_anchors_match_the_stream(saved, tmp_path):
    ck, path = saved
    out = tmp_path / "p.rave"
    info = encode_checkpoint(path, out, rate=(ck.rate_range()[0] + ck.rate_range()[1]) / 2)
    assert info["cap"] and info["bytes"] <= info["target_bytes"] and out.stat().st_size == info["bytes"]
    res = decode_anchors(out, strict=True)
    k = info["count"]
    assert res.n_decoded == k
    dec = ck.decoded_anchors()
    order = ck.encoder().stream_order(k)
    for f in ANCHOR_FIELDS:
        assert torch.equal(res.anchors[f], dec[f][order]), f
    enc, kk = checkpoint_encoder(ck, count=77)
    assert kk == 77 and len(enc.encode(kk)) == ck.prefix_bytes(77)
    m = ck.model()
    assert len(m) == N and m.spec.feat_dim == F


def test_gaussian_checkpoints_still_load_as_such(tmp_path):
    p = tmp_path / "g.ckpt"
    save_checkpoint(make_ckpt(n=200), p)
    back = load_checkpoint(p)
    assert type(back) is RaveCheckpoint and back.unit_type == "gaussians" and back.meta["format_version"] == 1
    doc = _doc_of(p.read_bytes())
    assert "unit_type" not in doc  # Gaussian files are unchanged (older readers read them)


def _doc_of(data: bytes) -> dict:
    hlen = int.from_bytes(data[:8], "little")
    return json.loads(json.loads(data[8:8 + hlen])["__metadata__"]["rave"])


@pytest.mark.parametrize("kw,match", [
    (dict(drop="mlp.mlp_color.2.weight"), "lacks MLP weights: mlp_color.2.weight"),
    (dict(tensor_change=lambda t: t.update({"anchors.anchor_feat": t["anchors.anchor_feat"][:, :5].contiguous()})),
     "anchor features have 5 values per anchor, but the model spec and its MLPs take feat_dim 8"),
    (dict(doc_change=lambda d: d["spec"].update(feat_dim=6)), "anchor features have 8 values.*take feat_dim 6"),
    (dict(drop="anchors.scaling"), "lacks the tensor.*anchors.scaling"),
    (dict(tensor_change=lambda t: t.update({"anchors.offset": t["anchors.offset"][:-1].contiguous()})), "offset"),
    (dict(doc_change=lambda d: d.update(n=7)), "says 7 anchors"),
    (dict(doc_change=lambda d: d["quant"].update(feat_lo=d["quant"]["feat_lo"][:-1],
                                                 feat_hi=d["quant"]["feat_hi"][:-1])), "7 feature ranges"),
    (dict(doc_change=lambda d: d["quant"].update(feature_bits=40)), "feature bits"),
    (dict(doc_change=lambda d: d.pop("spec")), "lacks 'spec'"),
    (dict(doc_change=lambda d: d.update(format_version=1)), "unsupported checkpoint format version 1"),
    (dict(doc_change=lambda d: d.update(format_version=3)), "newer"),
    (dict(doc_change=lambda d: d.update(unit_type="voxels")), "unknown type 'voxels'"),
    (dict(tensor_change=lambda t: t.update(order=torch.zeros_like(t["order"]))), "not a permutation of the anchors"),
    (dict(tensor_change=lambda t: t.update({"anchors.anchor": t["anchors.anchor"].long()})), "'anchor' is int64, expected float32"),
    (dict(tensor_change=lambda t: t.update({"mlp.mlp_cov.0.bias": t["mlp.mlp_cov.0.bias"].int()})), "int32"),
    (dict(doc_change=lambda d: d.update(level_sizes=[10, 20, 30, 40])), "level sizes"),
])
def test_bad_anchor_checkpoints_give_one_line_errors(saved, tmp_path, kw, match):
    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.ckpt", **kw)
    with pytest.raises(RaveError, match=match) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{bad}: ")


def test_pickled_anchor_checkpoint_refused(tmp_path, saved):
    ck, _ = saved
    p = tmp_path / "evil.ckpt"
    p.write_bytes(pickle.dumps({"anchors": {f: v.numpy() for f, v in ck.anchors.items()}}))
    with pytest.raises(RaveError, match="is a pickle, refusing to load"):
        load_checkpoint(p)
    torch.save({"anchors": ck.anchors}, p)
    with pytest.raises(RaveError, match="is a pickle, refusing to load"):
        load_checkpoint(p)


def test_rave_encode_cli_cuts_an_anchor_checkpoint(saved, tmp_path, capsys):
    from rave_viewer.cli import main

    ck, path = saved
    out = tmp_path / "cap.rave"
    assert main(["encode", str(path), "-o", str(out), "--rate", "15KB"]) == 0
    assert "format v1" in capsys.readouterr().err
    res = decode_anchors(out, strict=True)
    k = res.n_decoded
    assert out.stat().st_size == ck.prefix_bytes(k) <= 15000 < ck.prefix_bytes(k + 1)


# -- fuzz: the structured mutations of test_checkpoint_fuzz, on an anchor checkpoint ----------------------
def _fuzz_outcome(path, tmp_path) -> str:
    """"error" (one line naming the file) or "ok" after using the checkpoint as the commands do."""
    from rave_viewer.commands.info import format_summary, summary

    try:
        ck = load_checkpoint(path)
    except RaveError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(f"{path}: "), msg
        return "error"
    assert isinstance(ck, AnchorCheckpoint)
    k = ck.level_sizes[0]
    out = tmp_path / "fuzz.rave"
    assert encode_checkpoint(ck, out, count=k)["count"] == k
    assert decode_anchors(out).n_decoded == k
    r0, r1 = ck.rate_range()
    for target in ({"rate": (r0 + r1) // 2}, {"psnr": 22.0}):
        try:
            assert 0 <= ck.select(**target) <= len(ck)
        except RaveError:  # a target outside the (mutated) table's range
            pass
    assert len(ck.model()) == len(ck)
    assert format_summary(str(path), summary(ck)) and json.dumps(summary(ck))
    return "ok"


@pytest.mark.timeout(300)  # a hang guard, not a speed target
def test_fuzz_metadata_and_header_of_an_anchor_checkpoint(tmp_path):
    import random

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from tests.rave.test_checkpoint_fuzz import RAW, _mutate_doc, _mutate_header, _split

    ck = make_anchor_ckpt(n=160, chunk=16)
    real = tmp_path / "real.ckpt"
    save_checkpoint(ck, real)
    data = real.read_bytes()
    header, body = _split(data)
    md = header["__metadata__"]
    doc, tensors = json.loads(md["rave"]), st_load(data)
    assert _fuzz_outcome(real, tmp_path) == "ok"
    rng = random.Random(17)
    seen = {"ok": 0, "error": 0}
    for i in range(150):
        new, raws = _mutate_doc(doc, rng)
        text = json.dumps(new)
        for tok in raws:
            text = text.replace(json.dumps(RAW), tok, 1)
        p = tmp_path / f"m{i % 4}.ckpt"
        p.write_bytes(st_save(tensors, metadata={**md, "rave": text}))
        seen[_fuzz_outcome(p, tmp_path)] += 1
    for i in range(150):
        raw, b, hlen = _mutate_header(header, body, rng)
        p = tmp_path / f"h{i % 4}.ckpt"
        p.write_bytes((len(raw) if hlen is None else hlen).to_bytes(8, "little") + raw + b)
        seen[_fuzz_outcome(p, tmp_path)] += 1
    assert seen["error"] >= 150 and seen["ok"] >= 10, seen


def test_uniform_geometry_checkpoint(tmp_path):
    ck = make_anchor_ckpt(n=200, chunk=25, geometry="uniform")
    p = tmp_path / "u.ckpt"
    save_checkpoint(ck, p)
    back = load_checkpoint(p)
    assert back.quant == ck.quant and back.quant.uniform_geometry
    res = decode_anchors(back.encoder().encode(100))
    order = back.encoder().stream_order(100)
    assert all(torch.equal(res.anchors[f], back.decoded_anchors()[f][order]) for f in ANCHOR_FIELDS)
    bad = _rewrite(p, tmp_path / "bad.ckpt", doc_change=lambda d: d["quant"].update(
        offset_lo=d["quant"]["offset_lo"][:-3], offset_hi=d["quant"]["offset_hi"][:-3]))
    with pytest.raises(RaveError, match="6 offset and 6 scaling ranges but the anchors have 9 and 6"):
        load_checkpoint(bad)
