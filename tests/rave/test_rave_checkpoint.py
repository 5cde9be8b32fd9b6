"""The .ckpt file: lossless round trip, clear errors for bad files, pickles refused without being unpickled."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rave_viewer.errors import RaveError
from rave_viewer.rave.checkpoint import (
    FORMAT_VERSION,
    RaveCheckpoint,
    chunk_rate_table,
    encode_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
from rave_viewer.scene.gaussians import Gaussians


def make_ckpt(n=500, chunk=64) -> RaveCheckpoint:
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds

    g = Gaussians.random(n, sh_degree=2, seed=1)
    q = QuantConfig()
    bounds = scene_bounds(g)
    enc = ProgressiveEncoder(g, q, chunk_size=chunk, bounds=bounds, progress=False)
    sizes = [n // 10, n * 24 // 100, n // 2, n]
    counts = list(range(50, n + 1, 6)) + ([n] if (n - 50) % 6 else [])
    rd = {"count": counts, "bytes": [enc.size_of_prefix(k) for k in counts],
          "psnr": [20 + 5 * k / n for k in counts], "ssim": [0.5 + 0.4 * k / n for k in counts]}
    vm = torch.stack([look_at(torch.tensor([3.0, 0, 1]), torch.zeros(3)),
                      look_at(torch.tensor([0, 3.0, 1]), torch.zeros(3))])
    K = intrinsics(24, 16, 1.0)[None].repeat(2, 1, 1)
    imgs = torch.rand(2, 16, 24, 3, generator=torch.Generator().manual_seed(0))
    cams = Cameras(vm, K, 24, 16, imgs, ["a.png", "b.png"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    ck = RaveCheckpoint(g, order, sizes, [enc.size_of_prefix(s) for s in sizes], q, bounds, "lzma", chunk, rd, cams,
                        {"ranking": "context", "config": {"steps": 10}})
    ck._encoder = enc
    ck.chunk_rates = chunk_rate_table(enc, n, chunk)
    return ck


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ck = make_ckpt()
    path = tmp_path_factory.mktemp("ckpt") / "scene.ckpt"
    save_checkpoint(ck, path)
    return ck, path


def test_round_trip(saved):
    ck, path = saved
    back = load_checkpoint(path)
    assert back.gaussians.equal(ck.gaussians)
    assert torch.equal(back.order, ck.order)
    assert back.level_sizes == ck.level_sizes and back.level_rates == ck.level_rates
    assert back.chunk_rates == ck.chunk_rates
    assert back.quant == ck.quant and back.codec == "lzma" and back.chunk_size == 64
    assert torch.equal(back.bounds, ck.bounds)
    assert back.rd["count"] == ck.rd["count"] and back.rd["bytes"] == ck.rd["bytes"]
    assert back.rd["psnr"] == pytest.approx(ck.rd["psnr"], abs=0)
    assert back.test_cameras.names == ["a.png", "b.png"]
    assert torch.equal(back.test_cameras.viewmats, ck.test_cameras.viewmats)
    # images are stored as uint8
    assert (back.test_cameras.images - ck.test_cameras.images).abs().max() <= 0.5 / 255 + 1e-6
    assert back.meta["ranking"] == "context" and back.meta["format_version"] == FORMAT_VERSION
    # sizes from the loaded checkpoint equal what is written, and come from its chunk table plus one partial
    # chunk: asking for them compresses no full chunk (a 1M-Gaussian scene would otherwise be re-encoded)
    fresh = load_checkpoint(path)
    ks = (1, 50, 64, 100, 128, 499, 500)
    sizes = [fresh.prefix_bytes(k) for k in ks]
    assert all(c is None for c in fresh.encoder()._full)
    assert sizes == [len(back.encoder().encode(k)) for k in ks]


def test_encode_checkpoint(saved, tmp_path):
    from rave_viewer.codec import decode

    _, path = saved
    out = tmp_path / "out.rave"
    info = encode_checkpoint(path, out, rate="0.004MB")
    assert info["target_bytes"] == 4000
    assert out.stat().st_size == info["bytes"]
    assert abs(info["bytes"] - 4000) <= 64 * 80  # within one chunk
    dec = decode(out)
    assert len(dec.gaussians) == info["count"]
    info = encode_checkpoint(path, out, count=123)
    assert info["count"] == 123 and info["level"] == 2
    info = encode_checkpoint(path, out, psnr=22.5)
    assert info["count"] == 250
    with pytest.raises(RaveError, match="valid range"):
        encode_checkpoint(path, out, rate="1KB")


def _rewrite(path, out, *, drop=None, doc_change=None, tensor_change=None):
    data = path.read_bytes()
    t = st_load(data)
    hlen = int.from_bytes(data[:8], "little")
    md = json.loads(data[8:8 + hlen])["__metadata__"]
    doc = json.loads(md["rave"])
    if drop:
        t.pop(drop)
    if doc_change:
        doc_change(doc)
    if tensor_change:
        tensor_change(t)
    md["rave"] = json.dumps(doc)
    out.write_bytes(st_save(t, metadata=md))
    return out


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(doc_change=lambda d: d.update(format_version=FORMAT_VERSION + 1)), "newer"),
        (dict(doc_change=lambda d: d.update(format_version=0)), "unsupported checkpoint format version 0"),
        (dict(drop="order"), "lacks the tensor.*order"),
        (dict(drop="gaussians.means"), "lacks the tensor.*gaussians.means"),
        (dict(drop="chunk_rates"), "chunk_rates"),
        (dict(tensor_change=lambda t: t.update(order=t["order"][:-1])), "order"),
        (dict(tensor_change=lambda t: t.update({"gaussians.sh0": t["gaussians.sh0"][:-3]})), "shape"),
        (dict(tensor_change=lambda t: t.update(order=torch.zeros_like(t["order"]))), "not a permutation"),
        (dict(doc_change=lambda d: d.update(level_rates=d["level_rates"][:-1])), "level rates"),
        (dict(doc_change=lambda d: d.update(level_sizes=[50, 120, 250, 499])), "level sizes"),
        (dict(doc_change=lambda d: d["rd"].update(psnr=d["rd"]["psnr"][:-1])), "different lengths"),
        (dict(doc_change=lambda d: d.update(n=7)), "7 Gaussians"),
        (dict(doc_change=lambda d: d["test"].update(names=["x"])), "names"),
        (dict(tensor_change=lambda t: t.update({"test.images": t["test.images"][:, :4].contiguous()})), "test.images"),
        (dict(doc_change=lambda d: d.update(codec="zip")), "unknown codec"),
        (dict(doc_change=lambda d: d["quant"].update(pos_bits=99)), "pos_bits"),
        (dict(doc_change=lambda d: d.pop("rd")), "lacks 'rd'"),
    ],
)
def test_bad_checkpoints_give_one_line_errors(saved, tmp_path, kw, match):
    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.ckpt", **kw)
    with pytest.raises(RaveError, match=match) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_not_a_checkpoint(tmp_path):
    for name, data in [("empty.ckpt", b""), ("text.ckpt", b"hello world, not a checkpoint"),
                       ("trunc.ckpt", None)]:
        p = tmp_path / name
        if data is None:
            ck = make_ckpt(n=200)
            save_checkpoint(ck, p)
            data = p.read_bytes()[:-100]
        p.write_bytes(data)
        with pytest.raises(RaveError) as e:
            load_checkpoint(p)
        assert "\n" not in str(e.value)
    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(st_save({"x": torch.zeros(3)}))
    with pytest.raises(RaveError, match="not a RAVE checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(RaveError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.ckpt")


class _Boom:
    """Unpickling this would create a marker file: proves the loader never unpickles."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["torch_zip", "pickle_p5", "pickle_p2", "pickle_p0"])
def test_pickles_are_refused_never_unpickled(tmp_path, kind):
    marker = tmp_path / "UNPICKLED"
    p = tmp_path / "evil.ckpt"
    payload = {"gaussians": _Boom(marker)}
    if kind == "torch_zip":
        torch.save(payload, p)
    else:
        p.write_bytes(pickle.dumps(payload, protocol={"pickle_p5": 5, "pickle_p2": 2, "pickle_p0": 0}[kind]))
    assert not marker.exists()
    with pytest.raises(RaveError, match="is a pickle, refusing to load: .ckpt files are safetensors"):
        load_checkpoint(p)
    assert not marker.exists()
