"""Format version 4: the SH rest transform-coded in a per-scene basis (codec/transform.py)."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.codec import ProgressiveEncoder, QuantConfig, decode, read_info
from rave_viewer.codec.container import HEADER_SIZE, HEADER_V2_EXTRA
from rave_viewer.codec.presets import preset
from rave_viewer.codec.quantize import dequantize, fake_quantize, quantize
from rave_viewer.codec.rdopt import _lower
from rave_viewer.codec.transform import UNIT, fit_basis, levels, to_bytes
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import read_ply, write_ply
from tests.codec.test_codec_fuzz import _refix_crcs

DEMO = "trained_scenes/demo_objects.ply"


def _correlated(n: int, degree: int, seed: int = 0) -> Gaussians:
    """Random Gaussians whose SH rest has the structure of fitted SH: the colour channels share most of it."""
    g = Gaussians.random(n, degree, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    k = g.shN.shape[1]
    common = 0.08 * torch.randn(n, k, 1, generator=gen)
    sh = common * torch.tensor([1.0, 0.9, 0.8]) + 0.01 * torch.randn(n, k, 3, generator=gen)
    return Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh0, sh)


@pytest.mark.parametrize("degree,faint", [(1, 0), (2, 3), (3, 0), (3, 6), (0, 2)])
def test_transform_round_trips_bit_exact_for_every_prefix(degree, faint):
    g = _correlated(700, degree, seed=degree)
    enc = ProgressiveEncoder(g, QuantConfig(shN_step=0.004, faint_bits=faint), chunk_size=128, progress=False)
    assert enc.format_version == 4
    for k in (0, 128, 256, 512, 700):
        data = enc.encode(k)
        assert len(data) == enc.size_of_prefix(k)
        res = decode(data)
        assert res.info.format_version == 4 and res.info.cfg == enc.cfg
        assert res.gaussians.equal(enc.quantized_prefix(k))
    # the decoder's arithmetic does not depend on the batch: row i of a subset is row i of the whole
    q = enc.quantized
    whole = dequantize(q).shN
    idx = torch.tensor([5, 3, 699, 0])
    assert torch.equal(dequantize(q.subset(idx)).shN, whole[idx])


def test_transform_error_is_the_grid_error_and_faint_rows_are_coarser():
    """An orthonormal basis: the SH-rest RMS error is that of a uniform grid of the step (step / sqrt 12)."""
    g = _correlated(4000, 3, seed=1)
    for step in (0.002, 0.01):
        cfg = QuantConfig(shN_step=step).fit(g)
        err = dequantize(quantize(g, cfg)).shN - g.shN
        rms = float(err.pow(2).mean().sqrt())
        assert step / np.sqrt(12) * 0.9 < rms < step / np.sqrt(12) * 1.1
    alpha = torch.where(torch.arange(len(g)) % 2 == 0, 0.02, 0.7)
    g = Gaussians(g.means, g.quats, g.scales, torch.logit(alpha), g.sh0, g.shN)
    cfg = QuantConfig(shN_step=0.002, faint_bits=4, opacity_bits=6).fit(g)
    q = quantize(g, cfg)
    err = (dequantize(q).shN - g.shN).pow(2).mean((1, 2)).sqrt()
    faint = torch.sigmoid(g.opacities) < 1 / 16
    assert faint.sum() == 2000 and float(err[faint].mean()) > 4 * float(err[~faint].mean())


def test_transform_beats_the_scalar_grids_on_a_trained_scene():
    """demo_objects (trained, SH2): v4 with every grid as fine as v3's finest SH step has a smaller SH-rest error
    and fewer bytes than the v3 stream of the same preset."""
    g = read_ply(DEMO)
    v3 = ProgressiveEncoder(g, preset("very-high", shN_step=0.0), progress=False, spatial_order=True)
    r = np.array(v3.cfg.shN_range[:2])
    finest = float((r / ((1 << (np.array(v3.cfg.shN_bits[:2]) - 1)) - 1)).min())
    v4 = ProgressiveEncoder(g, preset("very-high", shN_step=finest), progress=False, spatial_order=True)
    assert v3.format_version == 3 and v4.format_version == 4
    d3, d4 = v3.encode(), v4.encode()
    e3 = float((decode(d3).gaussians.shN - g.subset(v3.stream_order()).shN).pow(2).mean())
    e4 = float((decode(d4).gaussians.shN - g.subset(v4.stream_order()).shN).pow(2).mean())
    assert e4 <= e3 and len(d4) < 0.97 * len(d3)


def test_basis_is_orthonormal_and_ranges_cover_the_scene():
    g = _correlated(3000, 2, seed=2)
    b = fit_basis(g)
    d = b.shape[1]
    v = b[:d] * UNIT
    assert b.shape == (26, 24) and np.abs(v @ v.T - np.eye(d)).max() < 1e-3
    y = (g.shN.double().reshape(len(g), -1).numpy() - b[d] * UNIT) @ v.T
    assert (np.abs(y) <= b[d + 1] * UNIT).all()
    # one basis vector per coefficient carries its shared colour: the first 8 hold nearly all the variance
    var = y.var(0)
    assert var[:8].sum() > 0.95 * var.sum()  # (variances weighted by opacity: their order is only nearly so)


def test_fake_quantize_and_config_round_trip_through_a_dict():
    g = _correlated(500, 2, seed=3)
    cfg = QuantConfig(shN_step=0.005, fit_ranges=True).fit(g)
    back = QuantConfig.from_dict(cfg.to_dict())
    assert back == cfg and back.sh_basis is not cfg.sh_basis
    sh = g.shN.clone().requires_grad_(True)
    g2 = Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh0, sh)
    out = fake_quantize(g2, cfg)
    assert torch.equal(out.shN.detach(), dequantize(quantize(g, cfg)).shN)
    out.shN.sum().backward()
    assert torch.equal(sh.grad, torch.ones_like(sh))  # straight through
    with pytest.raises(RaveError, match="not both"):
        QuantConfig(shN_step=0.01, sh_vq=16)
    with pytest.raises(RaveError, match="shN_step"):
        QuantConfig(shN_step=float("nan"))
    with pytest.raises(RaveError, match="shN_step"):
        QuantConfig(shN_step=2.0)
    assert _lower(cfg, "shN_step").shN_step == 0.01 and _lower(cfg, "shN_bits") is None


def _stream(step: float = 0.01) -> tuple[ProgressiveEncoder, bytes]:
    g = _correlated(300, 2, seed=4)
    enc = ProgressiveEncoder(g, QuantConfig(shN_step=step), codec="zstd", chunk_size=64, progress=False)
    return enc, enc.encode()


def _with_blob(data: bytes, raw: bytes, codec) -> bytes:
    """``data`` with its transform blob replaced by ``raw`` compressed (lengths and CRCs fixed)."""
    info = read_info(data)
    old_len = struct.unpack_from("<I", data, HEADER_SIZE + 4)[0]
    blob = codec.compress(raw)
    start = HEADER_SIZE + HEADER_V2_EXTRA
    bad = bytearray(data[:start]) + blob + data[start + old_len:]
    struct.pack_into("<I", bad, HEADER_SIZE + 4, len(blob))
    assert info.header_size == start + old_len + 4
    return bytes(_refix_crcs(bad))


@pytest.mark.parametrize("forge", ["nan step", "zero step", "huge step", "basis entry", "zero range", "short"])
def test_forged_transform_is_one_error_line(forge):
    enc, data = _stream()
    cfg = enc.cfg
    step, b = cfg.shN_step, np.array(cfg.sh_basis)
    if forge == "nan step":
        step = float("nan")
    elif forge == "zero step":
        step = 0.0
    elif forge == "huge step":
        step = 1e30
    elif forge == "basis entry":
        b[3, 4] = 40000
    elif forge == "zero range":
        b[-1, 2] = 0
    raw = np.float64(step).astype("<f8").tobytes() + b.astype("<i4").tobytes()
    if forge == "short":
        raw = raw[:-4]
    with pytest.raises(RaveError) as ei:
        decode(_with_blob(data, raw, enc.codec))
    assert "\n" not in str(ei.value) and ("header" in str(ei.value) or "transform" in str(ei.value))
    assert decode(_with_blob(data, to_bytes(cfg), enc.codec)).gaussians.equal(enc.quantized_prefix())


@pytest.mark.parametrize("forged_d", [0, 9, 23, 45, 65536, 2**32 - 1])
def test_forged_transform_size_is_a_rave_error(forged_d):
    _, data = _stream()
    bad = bytearray(data)
    struct.pack_into("<I", bad, HEADER_SIZE, forged_d)
    with pytest.raises(RaveError, match="SH transform size"):
        decode(bytes(_refix_crcs(bad)))


def test_code_beyond_a_transform_level_is_a_rave_error():
    from rave_viewer.codec.container import _pack_chunk

    enc, data = _stream()
    info = read_info(data)
    lv = levels(enc.cfg)
    j = int(np.argmin(lv))
    cols = enc._cols[:64].copy()
    cols[7, 11 + j] = int(2 * lv[j]) + 1
    raw, _ = _pack_chunk(enc._morton[:64], cols, enc._layout)
    blob = enc.codec.compress(raw)
    c0 = info.chunks[0]
    bad = bytearray(data[: c0.offset]) + blob + data[c0.offset + c0.length:]
    struct.pack_into("<I", bad, info.header_size, len(blob))
    with pytest.raises(RaveError, match=f"chunk 0 does not decode: attribute column {11 + j} has codes out of range"):
        decode(bytes(_refix_crcs(bad)))


def test_cli_sh_step_format_versions_and_info(tmp_path, capsys):
    g = _correlated(2000, 3, seed=5)
    ply = tmp_path / "in.ply"
    write_ply(g, ply)
    out4, out3 = tmp_path / "v4.rave", tmp_path / "v3.rave"
    assert main(["encode", str(ply), "-o", str(out4), "--quality", "very-high", "--quiet"]) == 0
    assert main(["encode", str(ply), "-o", str(out3), "--quality", "very-high", "--format-version", "3",
                 "--quiet"]) == 0
    i4, i3 = read_info(out4), read_info(out3)
    assert i4.format_version == 4 and i4.cfg.shN_step == preset("very-high").shN_step
    assert i3.format_version == 3 and i3.cfg.shN_step == 0 and i3.cfg.sh_basis is None
    assert main(["encode", str(ply), "-o", str(tmp_path / "m.rave"), "--sh-step", "0.01", "--quiet"]) == 0
    im = read_info(tmp_path / "m.rave")
    assert im.format_version == 4 and im.cfg.shN_step == 0.01 and im.cfg.sh_vq == 0
    capsys.readouterr()
    assert main(["info", str(out4)]) == 0
    assert "format version 4" in capsys.readouterr().out
    assert main(["encode", str(ply), "-o", str(tmp_path / "x.rave"), "--format-version", "3", "--sh-step",
                 "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format-version 3 cannot hold the SH transform" in err
    assert not (tmp_path / "x.rave").exists()
    # the decoded PLY is the stream's Gaussians
    assert main(["decode", str(out4), "-o", str(tmp_path / "d.ply"), "--quiet"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_ply(tmp_path / "d.ply").equal(decode(out4).gaussians)
