"""The .ckpt file: lossless round trip, clear errors for bad files, pickles refused without being unpickled."""

from __future__ import annotations

import json
import pickle
import re

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


def make_ckpt(n=500, chunk=64, q=None) -> RaveCheckpoint:
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds

    g = Gaussians.random(n, sh_degree=2, seed=1)
    q = QuantConfig() if q is None else q.fit(g, scene_bounds(g))
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


# -- issue 12: values are type-checked where they are read ---------------------------------------------------
def _header(data: bytes) -> tuple[dict, bytes]:
    hlen = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + hlen]), data[8 + hlen:]


def _rewrite_text(path, out, edit):
    """Rewrite the RAVE metadata JSON of ``path`` as text (``edit(text) -> text``): lets a test write what
    ``json.dumps`` would not (NaN, a 5000-digit integer, 100,000 nested brackets)."""
    data = path.read_bytes()
    md = _header(data)[0]["__metadata__"]
    md["rave"] = edit(md["rave"])
    out.write_bytes(st_save(st_load(data), metadata=md))
    return out


def _write_header(out, header: dict | str | bytes, body: bytes, hlen: int | None = None):
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    out.write_bytes((len(raw) if hlen is None else hlen).to_bytes(8, "little") + raw + body)
    return out


def _load_error(p) -> str:
    with pytest.raises(RaveError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}: "), msg
    return msg


@pytest.mark.parametrize("bits", [14.5, "14", True, None, 22, [14]])
def test_non_integer_bit_depths_are_refused_at_load_and_by_rave_encode(saved, tmp_path, capsys, bits):
    """pos_bits 14.5 or "14" used to load, then crash `rave encode` / `rave-view` with a TypeError."""
    from rave_viewer.cli import main

    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.ckpt", doc_change=lambda d: d["quant"].update(pos_bits=bits))
    assert "pos_bits must be an integer 1..21" in _load_error(bad)
    assert main(["encode", str(bad), "-o", str(tmp_path / "out.rave"), "--count", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pos_bits" in err and str(bad) in err
    assert not (tmp_path / "out.rave").exists()


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested too deeply"]),
        (lambda s: s[:-1] + ', "x": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}", ["nested deeper than 64"]),
        (lambda s: '{"a": ' * 100_000 + "1" + "}" * 100_000, ["nested too deeply"]),
        (lambda s: s.replace('"n": 500', '"n": ' + "9" * 5000), ["an integer of 5000 digits"]),
        (lambda s: s.replace('"meta": {', '"meta": {"big": -' + "1" * 5000 + ", "), ["an integer of 5000 digits"]),
        (lambda s: s.replace('"psnr": [', '"psnr": [NaN, '), ["NaN is not a finite number"]),
        (lambda s: s.replace('"ssim": [', '"ssim": [-Infinity, '), ["-Infinity is not a finite number"]),
        (lambda s: s.replace('"bytes": [', '"bytes": [Infinity, '), ["Infinity is not a finite number"]),
        (lambda s: s.replace('"psnr": [', '"psnr": [1e400, '), ["does not fit a float"]),
        (lambda s: s.replace('"a.png"', '"\\ud800"'), ["lone surrogate"]),
        (lambda s: s[:-1], ["not JSON"]),
        (lambda s: "[1, 2]", ["unreadable RAVE metadata"]),
    ],
)
def test_hostile_json_metadata_is_one_error_line(saved, tmp_path, edit, words):
    _, path = saved
    msg = _load_error(_rewrite_text(path, tmp_path / "bad.ckpt", edit))
    assert all(w in msg for w in words), msg


def _set(key, value):
    def change(d):
        *parents, last = key.split(".")
        for k in parents:
            d = d[k]
        d[last] = value
    return dict(doc_change=change)


@pytest.mark.parametrize(
    "kw, match",
    [
        (_set("n", "500"), "'n' has the wrong type"),
        (_set("n", -1), "says -1 Gaussians"),
        (_set("n", 10**30), "Gaussians but holds 500"),
        (_set("sh_degree", 3), "SH degree 3"),
        (_set("sh_degree", 2.0), "'sh_degree' has the wrong type"),
        (_set("level_sizes", [-5, 120, 250, 500]), "level sizes"),
        (_set("level_sizes", [0, 120, 250, 500]), "level sizes"),
        (_set("level_sizes", [50, 120, 250, 10**30]), "level sizes"),
        (_set("level_sizes", "50,120"), "'level_sizes' has the wrong type"),
        (_set("level_sizes", []), "non-empty list of integers"),
        (_set("level_sizes", [50, 120.0, 250, 500]), "non-empty list of integers"),
        (_set("level_rates", [-1, 2, 3, 4]), "level rates must be positive"),
        (_set("level_rates", [1, 2, 3, None]), "non-empty list of integers"),
        (_set("chunk_size", 0), "chunk size must be 1..262144"),
        (_set("chunk_size", -64), "chunk size"),
        (_set("chunk_size", 10**30), "chunk size"),
        (_set("chunk_size", "64"), "'chunk_size' has the wrong type"),
        (_set("chunk_size", 32), "chunk_rates"),  # counts inconsistent with the tensor's shape
        (_set("interpolate", "no"), "'interpolate' must be true or false"),
        (_set("codec", 5), "'codec' has the wrong type"),
        (_set("quant", [14]), "'quant' has the wrong type"),
        (_set("quant.bogus", 1), "unknown quantization settings: bogus"),
        (_set("quant.shN_range", [1.0, 1.0]), "shN_range"),
        (_set("rd", "none"), "'rd' has the wrong type"),
        (_set("rd.count", None), "'count' list"),
        (_set("rd.count", [1.5] * 76), "integer 'count' list"),
        (_set("rd.psnr", ["20"] * 76), "numeric 'psnr' list"),
        (_set("rd.ssim", [True] * 76), "numeric 'ssim' list"),
        (_set("rd.count", [*range(50, 126)][::-1]), "counts must increase"),
        (_set("rd.count", [*range(0, 76)]), "counts must increase within 1..500"),
        (_set("rd.count", [*range(500, 576)]), "counts must increase within 1..500"),
        (_set("rd.bytes", [*range(76, 0, -1)]), "bytes must increase"),  # RD not monotone in rate
        (_set("rd.bytes", [10**20] * 76), "bytes must increase"),
        (_set("rd.bytes", [0] * 76), "bytes must increase"),
        (_set("rd.psnr", [1e300] * 76), "PSNR outside"),
        (_set("rd.ssim", [5.0] * 76), "SSIM outside"),
        (_set("rd.count", [50]), "different lengths"),
        (_set("test", [24, 16]), "'test' has the wrong type"),
        (_set("test.width", 0), "test camera size"),
        (_set("test.width", True), "test camera size"),
        (_set("test.width", "24"), "test camera size"),
        (_set("test.height", 10**9), "test camera size"),
        (_set("test.names", [1, 2]), "names must be a list of strings"),
        (_set("test.names", "a.png"), "names must be a list of strings"),
        (dict(tensor_change=lambda t: t.update({"gaussians.means": t["gaussians.means"].long()})), "dtype"),
        (dict(tensor_change=lambda t: t["gaussians.means"].__setitem__((0, 0), float("nan"))), "NaN/inf"),
        (dict(tensor_change=lambda t: t.update(order=t["order"].int())), "'order' has shape"),
        (dict(tensor_change=lambda t: t.update(bounds=torch.full((2, 3), float("nan")))), "'bounds' has NaN"),
        (dict(tensor_change=lambda t: t.update(bounds=t["bounds"].flip(0).contiguous())), "min <= max"),
        (dict(tensor_change=lambda t: t.update(bounds=t["bounds"][:, :2].contiguous())), "'bounds' has shape"),
        (dict(tensor_change=lambda t: t.update(chunk_rates=t["chunk_rates"].int())), "chunk_rates"),
        (dict(tensor_change=lambda t: t.update(chunk_rates=t["chunk_rates"].flip(0).contiguous())), "increase"),
        (dict(tensor_change=lambda t: t.update({"test.Ks": t["test.Ks"][:1].contiguous()})), "'test.Ks' has shape"),
        (dict(tensor_change=lambda t: t["test.viewmats"].__setitem__((0, 0, 0), float("inf"))), "test.viewmats"),
        (dict(tensor_change=lambda t: t.update({"test.viewmats": t["test.viewmats"][:0].contiguous(),
                                                "test.Ks": t["test.Ks"][:0].contiguous(),
                                                "test.images": t["test.images"][:0].contiguous()})),
         "no test views"),
        (dict(tensor_change=lambda t: t.update({"test.images": t["test.images"].float()})), "test.images"),
    ],
)
def test_wrong_types_and_inconsistent_counts_are_refused(saved, tmp_path, kw, match):
    _, path = saved
    msg = _load_error(_rewrite(path, tmp_path / "bad.ckpt", **kw))
    assert re.search(match, msg), msg


def _header_cases(header: dict, body: bytes) -> dict:
    """Malformed safetensors layouts built from a real header: name -> (header, body, hlen override)."""
    def tensor_edit(name, **change):
        h = json.loads(json.dumps(header))
        h[name].update(change)
        return h

    off = header["order"]["data_offsets"]
    return {
        "header length beyond the file": (header, body, 10**9),
        "header length 2^63": (header, body, 1 << 63),
        "header length too short": (header, body, 40),
        "header not JSON": (json.dumps(header)[:-3] + "}}}", body, None),
        "header not UTF-8": (b"{\xff\xfe" + json.dumps(header).encode()[3:], body, None),
        "header a list": (b"[" + json.dumps(header).encode()[1:-1] + b"]", body, None),
        "header nested deeply": ('{"__metadata__": ' + json.dumps(header["__metadata__"]) + ', "x": '
                                 + "[" * 50_000 + "]" * 50_000 + "}", body, None),
        "header with a 5000-digit offset": (json.dumps(header).replace(f"[{off[0]}, {off[1]}]",
                                                                       f"[{off[0]}, {'9' * 5000}]"), body, None),
        "unknown dtype": (tensor_edit("order", dtype="Q99"), body, None),
        "dtype of another width": (tensor_edit("order", dtype="I32"), body, None),
        "shape inconsistent with offsets": (tensor_edit("order", shape=[7]), body, None),
        "negative shape": (tensor_edit("order", shape=[-500]), body, None),
        "huge shape": (tensor_edit("order", shape=[2**62, 2**62]), body, None),
        "offsets reversed": (tensor_edit("order", data_offsets=[off[1], off[0]]), body, None),
        "offsets overlapping": (tensor_edit("order", data_offsets=[max(off[0] - 8, 0), off[1] - 8]), body, None),
        "offsets beyond the file": (tensor_edit("order", data_offsets=[len(body) - 8, len(body) - 8 + off[1]
                                                                       - off[0]]), body, None),
        "offsets as floats": (tensor_edit("order", data_offsets=[float(off[0]), float(off[1])]), body, None),
        "body truncated": (header, body[:-1], None),
        "body with trailing bytes": (header, body + b"\0" * 8, None),
        "metadata not strings": ({**header, "__metadata__": {"format": "rave-ckpt", "rave": 5}}, body, None),
    }


def test_malformed_safetensors_headers_are_one_error_line(saved, tmp_path):
    """safetensors checks the layout itself (dtype, shape against offsets, overlaps, coverage, header length);
    its errors, and what the loader reads before it, are one RaveError line naming the file."""
    _, path = saved
    header, body = _header(path.read_bytes())
    for name, (h, b, hlen) in _header_cases(header, body).items():
        p = _write_header(tmp_path / "bad.ckpt", h, b, hlen)
        msg = _load_error(p)
        assert len(msg) < 400, (name, msg)


ODD_META = {
    "stages a string": ("stages", "fast"),
    "stages of numbers": ("stages", {"levels": 1.5}),
    "stage seconds a string": ("stages", {"levels": {"seconds": "1.5", "renders": 3}}),
    "stage renders missing": ("stages", {"levels": {"seconds": 1.5}}),
    "stages a list": ("stages", [1, 2]),
    "total_seconds a string": ("total_seconds", "1.5"),
    "total_seconds null": ("total_seconds", None),
    "total_seconds huge": ("total_seconds", 1e300),
    "total_seconds a list": ("total_seconds", [1.5]),
    "config a string": ("config", "steps=10"),
    "config a list of non-numbers": ("config", ["a", None, {}]),
    "config background a string": ("config", {"steps": 10, "background": "black"}),
    "config nested dicts": ("config", {"steps": {"a": {"b": [1, {"c": None}]}}, "num_levels": [[[8]]]}),
    "config null": ("config", None),
    "sources a string": ("sources", "scene.ply"),
    "sources nested dicts": ("sources", {"ply": {"path": {"x": 1}}}),
    "rd_views a string": ("rd_views", "test"),
    "rd_views count a string": ("rd_views", {"count": "three", "split": "test"}),
    "rd_views huge width": ("rd_views", {"count": 3, "width": 10**30, "height": 5}),
    "ranking a number": ("ranking", 7),
    "finetune a string": ("finetune", "yes"),
    "meta a string": (None, "not a record"),
    "meta a list": (None, [1, 2, 3]),
    "meta a number": (None, 5),
}
READABLE_ODD_META = {"config nested dicts"}  # odd but well-formed: printed as it is
FULL_META = {"ranking": "context", "finetune": True, "config": {"steps": 10, "num_levels": 4, "background": [0, 0, 0]},
             "rd_views": {"split": "test", "count": 2, "width": 24, "height": 16},
             "stages": {"levels": {"seconds": 1.5, "renders": 10}}, "total_seconds": 1.5, "sources": {"ply": "a.ply"}}


@pytest.fixture(scope="module")
def full_meta_ckpt(tmp_path_factory):
    ck = make_ckpt()
    ck.meta = json.loads(json.dumps(FULL_META))
    path = tmp_path_factory.mktemp("meta") / "scene.ckpt"
    save_checkpoint(ck, path)
    return path


@pytest.mark.parametrize("case", list(ODD_META))
def test_info_survives_odd_build_records(full_meta_ckpt, tmp_path, capsys, case):
    """`rave info` used to crash on odd ``meta`` shapes: the field now reads "unreadable" (exit 0, one warning
    line), the rest of the summary is printed, and the model still loads and encodes."""
    from rave_viewer.cli import main
    from rave_viewer.commands.info import SHOWN_META

    key, value = ODD_META[case]
    change = (lambda d: d.update(meta=value)) if key is None else (lambda d: d["meta"].update({key: value}))
    p = _rewrite(full_meta_ckpt, tmp_path / "odd.ckpt", doc_change=change)
    ck = load_checkpoint(p)
    bad = set() if case in READABLE_ODD_META else {key or "meta"}
    assert set(ck.unreadable_meta) == bad
    assert main(["info", str(p)]) == 0
    out, err = capsys.readouterr()
    assert "levels (MB = 10^6 bytes)" in out and "valid target rates" in out
    assert ("unreadable" in out) == bool(bad) and "Traceback" not in err
    if bad:
        assert err.count("\n") == 1 and err.startswith("warning: ") and str(p) in err
    else:
        assert err == "" and 'config: num_levels=[[[8]]], steps={"a": {"b": [1, {"c": null}]}}' in out
    assert main(["info", str(p), "--json"]) == 0
    out, err = capsys.readouterr()
    s = json.loads(out)
    assert bad <= set(s["unreadable"]) and all(s[k] is None for k in bad if k in SHOWN_META)
    assert err.count("\n") == (1 if bad else 0)
    assert encode_checkpoint(ck, tmp_path / "o.rave", count=100)["count"] == 100


def test_info_on_a_full_record_prints_it_without_warning(full_meta_ckpt, capsys):
    from rave_viewer.cli import main

    assert main(["info", str(full_meta_ckpt)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "unreadable" not in out
    assert "build: 1.5 s total; levels 1.5 s / 10 renders" in out and "sources: ply=a.ply" in out
    assert "config: num_levels=4, steps=10" in out and "on 2 test views 24x16" in out


def test_rave_info_process_never_prints_a_traceback(full_meta_ckpt, saved, tmp_path):
    """The real `rave info` process: an odd build record exits 0, a hostile file exits 2, stderr one line."""
    import subprocess
    import sys

    odd = _rewrite(full_meta_ckpt, tmp_path / "odd.ckpt", doc_change=lambda d: d["meta"].update(stages="x"))
    hostile = _rewrite_text(saved[1], tmp_path / "hostile.ckpt", lambda s: s.replace('"n": 500', '"n": ' + "9" * 5000))
    for p, rc in ((odd, 0), (hostile, 2)):
        r = subprocess.run([sys.executable, "-m", "rave_viewer", "info", str(p)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == rc and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_v2_checkpoint_with_a_codebook_keeps_exact_rates(tmp_path):
    """A checkpoint whose quantization has an SH codebook (format v2 presets): the codebook is saved with it,
    the reloaded encoder reproduces the stored chunk table byte for byte, and its streams are version 2."""
    from rave_viewer.codec import decode, preset

    ck = make_ckpt(q=preset("medium"))
    assert ck.quant.sh_codebook is not None
    path = tmp_path / "vq.ckpt"
    save_checkpoint(ck, path)
    back = load_checkpoint(path)
    assert back.quant == ck.quant and back.chunk_rates == ck.chunk_rates
    enc = back.encoder()
    assert chunk_rate_table(enc, len(back), back.chunk_size) == ck.chunk_rates
    for k in (1, 64, 200, 500):
        data = enc.encode(k)
        assert len(data) == back.prefix_bytes(k)
        res = decode(data)
        assert res.info.format_version == 3 and res.info.cfg == ck.quant
        assert res.gaussians.equal(back.decoded_gaussians().subset(enc.stream_order(k)))
