"""Quantizer: documented error bounds, exact decoder reproducibility, straight-through gradients, config I/O."""

from __future__ import annotations

import math

import pytest
import torch

from rave_viewer.codec.quantize import (
    QuantConfig,
    dequantize,
    fake_quantize,
    quantize,
    scale_reference,
    scene_bounds,
)
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians


def test_config_dict_round_trip_and_validation():
    cfg = QuantConfig(pos_bits=18, shN_bits=(6, 5, 3), shN_range=(1.0, 0.5, 0.25))
    d = cfg.to_dict()
    assert d["shN_bits"] == [6, 5, 3]
    assert QuantConfig.from_dict(d) == cfg
    assert QuantConfig.from_dict(QuantConfig().to_dict()) == QuantConfig()
    with pytest.raises(RaveError, match="unknown"):
        QuantConfig.from_dict({**d, "bogus": 1})
    for bad in ({"pos_bits": 22}, {"pos_bits": 0}, {"rot_bits": 17}, {"shN_bits": (5, 4)},
                {"scale_min": 2.0, "scale_max": 1.0}, {"sh0_range": -1.0}, {"shN_range": (1, 1, float("nan"))}):
        with pytest.raises(RaveError):
            QuantConfig(**bad)


def test_error_bounds_at_defaults():
    g = Gaussians.random(3000, 3, seed=3)
    cfg = QuantConfig().fit(g)
    b = scene_bounds(g)
    d = dequantize(quantize(g, cfg, b))
    step = (b[1] - b[0]) / (2**cfg.pos_bits - 1)
    assert ((d.means - g.means).abs() <= step * 0.5 + 1e-6).all()
    # rotation: unit quaternions, same rotation up to sign, small angle
    qn = g.quats / g.quats.norm(dim=1, keepdim=True)
    assert torch.allclose(d.quats.norm(dim=1), torch.ones(len(g)), atol=1e-6)
    cos = (qn * d.quats).sum(1).abs().clamp(max=1)
    assert (2 * torch.acos(cos)).max() < math.radians(1.5) * 2 ** (8 - cfg.rot_bits)
    s_step = (cfg.scale_max - cfg.scale_min) / (2**cfg.scale_bits - 1)
    assert ((d.scales - g.scales).abs() <= s_step / 2 + 1e-5).all()
    assert ((torch.sigmoid(d.opacities) - torch.sigmoid(g.opacities)).abs() <= 0.5 / 2**cfg.opacity_bits + 1e-6).all()
    assert ((d.sh0 - g.sh0).abs() <= cfg.sh0_range / 127 / 2 + 1e-6).all()
    # SH rest inside the range: error <= half a step of its band; zero stays exactly zero
    for band, (a, z) in enumerate([(0, 3), (3, 8), (8, 15)]):
        L = 2 ** (cfg.shN_bits[band] - 1) - 1
        err = (d.shN[:, a:z] - g.shN[:, a:z]).abs()
        inside = g.shN[:, a:z].abs() <= cfg.shN_range[band]
        assert (err[inside] <= cfg.shN_range[band] / L / 2 + 1e-6).all()
    zero = Gaussians(g.means, g.quats, g.scales, g.opacities, torch.zeros_like(g.sh0), torch.zeros_like(g.shN))
    zq = dequantize(quantize(zero, cfg, b))
    assert (zq.sh0 == 0).all() and (zq.shN == 0).all()


def test_infinite_opacities_and_out_of_range_values_clamp():
    g = Gaussians.random(10, 2, seed=0)
    g.opacities[0], g.opacities[1] = float("inf"), -float("inf")
    g.shN[2] = 50.0
    g.scales[3] = 100.0
    g.scales[4] = -100.0
    q = quantize(g)
    assert q.opacities[0] == (1 << q.cfg.opacity_bits) - 1 and q.opacities[1] == 0
    d = dequantize(q)
    assert torch.isfinite(d.opacities).all() and torch.isfinite(d.scales).all()
    half = 0.5 ** q.cfg.opacity_bits
    assert torch.sigmoid(d.opacities[0]) >= 1 - half - 1e-6 and torch.sigmoid(d.opacities[1]) <= half + 1e-6
    assert (d.shN[2] > 0).all()


def test_dequantize_is_bit_exact_whatever_the_order_or_length():
    g = Gaussians.random(777, 3, seed=5)
    q = quantize(g)
    d = dequantize(q)
    perm = torch.randperm(len(g), generator=torch.Generator().manual_seed(0))
    assert dequantize(q.subset(perm)).equal(d.subset(perm))
    for a, b in [(0, 1), (5, 22), (100, 777)]:
        assert dequantize(q.subset(torch.arange(a, b))).equal(d.subset(torch.arange(a, b)))


def test_requantizing_the_decoded_scene_is_stable():
    g = Gaussians.random(2000, 3, seed=7)
    b = scene_bounds(g)
    q = quantize(g, None, b)
    q2 = quantize(dequantize(q), q.cfg, b)  # the scene's fitted grid
    for name in ("means", "scales", "opacities", "sh0", "shN"):
        assert torch.equal(getattr(q, name), getattr(q2, name)), name
    dot = (dequantize(q2).quats * dequantize(q).quats).sum(1).abs()  # same rotation (q and -q are equal)
    assert dot.min() > 1 - 1e-3


def test_fake_quantize_forward_equals_decoder_and_gradient_is_identity():
    g = Gaussians.random(200, 3, seed=11)
    g.opacities[0] = float("inf")
    b = scene_bounds(g)
    params = g.map(lambda t: t.clone().requires_grad_(True))
    out = fake_quantize(params, QuantConfig(), b)
    assert out.detach().equal(dequantize(quantize(g, QuantConfig(), b)))
    weights = {k: torch.randn_like(v) for k, v in params.items()}
    loss = sum((getattr(out, k) * w).sum() for k, w in weights.items())
    loss.backward()
    for k, v in params.items():
        expect = weights[k].clone()
        if k == "opacities":
            expect[0] = 0.0  # no gradient through an infinite logit
        assert torch.equal(v.grad, expect), k


def test_scale_reference_follows_scene_size():
    b = torch.tensor([[0.0, 0, 0], [3.0, 1, 1]])
    assert scale_reference(b) == pytest.approx(2 * math.log(2))  # 4 = 2^2 is the power of two >= 3
    assert scale_reference(torch.tensor([[0.0, 0, 0], [4.0, 1, 1]])) == pytest.approx(2 * math.log(2))
    assert scale_reference(torch.zeros(2, 3)) == 0.0
    g = Gaussians.random(50, 0, seed=1)
    # a scene scaled by ~2^10 keeps its scale codes (grid follows the bounds by a power of two)
    big2 = Gaussians(g.means * 1024, g.quats, g.scales + 10 * math.log(2), g.opacities, g.sh0, g.shN)
    assert torch.equal(quantize(big2).scales, quantize(g).scales)


def test_bad_bounds_raise():
    g = Gaussians.random(5, 0)
    with pytest.raises(RaveError):
        quantize(g, None, torch.zeros(3, 3))
    with pytest.raises(RaveError):
        quantize(g, None, torch.tensor([[1.0, 1, 1], [0.0, 0, 0]]))


def test_big_scenes_are_processed_in_blocks_with_identical_results():
    g = Gaussians.random(70_000, 0, seed=1)  # more than one 65536-row block
    b = scene_bounds(g)
    q = quantize(g, None, b)
    halves = [quantize(g.prefix(35_000), None, b), quantize(g.subset(torch.arange(35_000, 70_000)), None, b)]
    for name in ("means", "rot_index", "rot", "scales", "opacities", "sh0", "shN"):
        assert torch.equal(getattr(q, name), torch.cat([getattr(h, name) for h in halves])), name
    d = dequantize(q)
    assert d.equal(Gaussians.cat([dequantize(h) for h in halves]))


def test_sh_ranges_are_fitted_once_per_scene_and_fixed_for_every_prefix():
    g = Gaussians.random(1000, 2, seed=13)
    g.shN[:, :3] *= 0.1  # band 1 much smaller than band 2
    cfg = QuantConfig().fit(g)
    assert cfg.fitted and not QuantConfig().fitted and cfg.fit(g.prefix(10)) is cfg
    x1, x2 = g.shN[:, :3].abs().flatten(), g.shN[:, 3:8].abs().flatten()
    assert cfg.shN_range[0] == pytest.approx(float(x1.quantile(0.999)), rel=1e-6)
    assert cfg.shN_range[1] == pytest.approx(float(x2.quantile(0.999)), rel=1e-6)
    assert cfg.shN_range[2] == 1.0  # band the scene lacks
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    q = quantize(g)  # unfitted config: fitted to the whole scene, recorded in the codes
    assert q.cfg == cfg
    assert quantize(g.prefix(100), q.cfg, q.bounds).equal(q.prefix(100))  # grid independent of the prefix
    # the fitted grid keeps small SH coefficients: much smaller error than a fixed +-1 grid
    d_fit = dequantize(q).shN
    d_fix = dequantize(quantize(g, QuantConfig(shN_range=(1.0, 1.0, 1.0)))).shN
    assert (d_fit - g.shN).abs().mean() < 0.5 * (d_fix - g.shN).abs().mean()


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"pos_bits": 14.5}, ["pos_bits", "integer 1..21", "float"]),
        ({"pos_bits": "14"}, ["pos_bits", "str"]),
        ({"pos_bits": True}, ["pos_bits", "bool"]),
        ({"pos_bits": None}, ["pos_bits"]),
        ({"rot_bits": 1}, ["rot_bits", "2..16"]),
        ({"opacity_bits": 10**5000}, ["opacity_bits", "digits"]),
        ({"shN_bits": (4, 4, 4.0)}, ["shN_bits", "float"]),
        ({"shN_bits": ("4", 4, 4)}, ["shN_bits", "str"]),
        ({"shN_bits": 4}, ["shN_bits", "one value per SH band"]),
        ({"shN_bits": [4, 4, 4, 4]}, ["shN_bits", "one value per SH band"]),
        ({"sh0_range": "3"}, ["sh0_range", "a number"]),
        ({"sh0_range": 10**5000}, ["sh0_range", "digits"]),
        ({"scale_min": float("-inf")}, ["scale_min", "finite"]),
        ({"scale_max": False}, ["scale_max", "a number"]),
        ({"shN_range": "abc"}, ["shN_range", "one value per SH band"]),
        ({"shN_range": [1.0, [1.0], 1.0]}, ["shN_range", "a number"]),
    ],
)
def test_config_values_are_type_checked_before_conversion(bad, words):
    """int(14.5) or int("14") used to be accepted silently (or crash the encoder later): every bit depth is an
    int in its documented range and every range a real number, checked in the constructor and from_dict."""
    for make in (lambda: QuantConfig(**bad), lambda: QuantConfig.from_dict({**QuantConfig().to_dict(), **bad})):
        with pytest.raises(RaveError) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and len(msg) < 200 and all(w in msg for w in words), msg


def test_config_accepts_numpy_scalars_and_stores_python_types():
    import json

    import numpy as np

    cfg = QuantConfig(pos_bits=np.int64(12), sh0_range=np.float32(2.0), shN_bits=[3, 3, 3], scale_min=-10)
    assert cfg.pos_bits == 12 and type(cfg.pos_bits) is int and type(cfg.sh0_range) is float
    assert type(cfg.scale_min) is float and cfg.shN_bits == (3, 3, 3)
    assert QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ([1, 2], "pos_bits", None):
        with pytest.raises(RaveError, match="mapping"):
            QuantConfig.from_dict(bad)
    with pytest.raises(RaveError, match="unknown quantization settings: 1, bogus"):
        QuantConfig.from_dict({"bogus": 1, 1: 2})
