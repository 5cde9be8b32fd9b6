"""Format version 2: the per-scene SH codebook, fitted ranges, presets, RD allocation and the byte-range API."""

from __future__ import annotations

import math

import pytest
import torch

from rave_viewer.codec import (ProgressiveEncoder, QuantConfig, bytes_needed, cut_stream, decode, dequantize,
                               fake_quantize, preset, quantize, read_info, scene_bounds)
from rave_viewer.codec.rdopt import allocate
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians


def _scene(n: int = 2000, degree: int = 3, seed: int = 0) -> Gaussians:
    """Random Gaussians whose SH rest lies near 12 directions (a structured scene, as trained SH are)."""
    g = Gaussians.random(n, degree, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    k = g.shN.shape[1]
    centres = 0.3 * torch.randn(12, k, 3, generator=gen)
    sh = centres[torch.randint(0, 12, (n,), generator=gen)] + 0.01 * torch.randn(n, k, 3, generator=gen)
    return Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh0, sh)


def test_codebook_is_fitted_once_shared_by_every_prefix_and_round_trips():
    g = _scene()
    cfg = QuantConfig(sh_vq=64, fit_ranges=True, shN_bits=(8, 8, 8))
    enc = ProgressiveEncoder(g, cfg, codec="zstd", chunk_size=256, progress=False)
    book = enc.cfg.sh_codebook
    assert book.shape == (enc.cfg.sh_vq, 15, 3) and 12 <= book.shape[0] <= 2000 // 32
    full = enc.encode()
    res = decode(full)
    assert res.info.format_version == 2 and res.info.cfg == enc.cfg
    assert res.gaussians.equal(enc.quantized_prefix()) and res.quantized.shN_index is not None
    # the structured SH rest is reproduced closely (12 clusters, entries on an 8-bit grid)
    ref = g.subset(enc.stream_order())
    assert float((res.gaussians.shN - ref.shN).abs().mean()) < 0.02
    # every prefix: same header size (one codebook), exact sizes, decodes to the quantized prefix
    for k in (0, 1, 255, 256, 257, 1000, 2000):
        data = enc.encode(k)
        assert len(data) == enc.size_of_prefix(k) and read_info(data).header_size == enc.header_size
        assert decode(data).gaussians.equal(enc.quantized_prefix(k))
    assert cut_stream(full, 512) == enc.encode(512)
    # quantizing a prefix with the fitted config gives the prefix's codes (assignment is row-independent)
    b = enc.bounds
    q = quantize(g, enc.cfg, b)
    for k in (1, 100, 4095):
        assert quantize(g.prefix(min(k, len(g))), enc.cfg, b).equal(q.prefix(min(k, len(g))))


def test_fitted_config_with_codebook_survives_json_and_drives_fake_quantize():
    import json

    g = _scene(600, 2, seed=3)
    cfg = QuantConfig(sh_vq=16, fit_ranges=True).fit(g)
    assert cfg.fitted and cfg.format_version == 2 and cfg.fit(g) is cfg
    back = QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.sh_codebook.shape == cfg.sh_codebook.shape
    b = scene_bounds(g)
    params = g.map(lambda t: t.clone().requires_grad_(True))
    out = fake_quantize(params, cfg, b)
    assert out.detach().equal(dequantize(quantize(g, cfg, b)))  # forward: exactly what the stream decodes to
    out.shN.sum().backward()
    assert torch.equal(params.shN.grad, torch.ones_like(g.shN))  # straight-through gradient
    with pytest.raises(RaveError, match="codebook"):
        QuantConfig.from_dict({**cfg.to_dict(), "sh_codebook": {"shape": [4, 8, 3], "codes": "AAAA"}})
    with pytest.raises(RaveError, match="sh_vq"):
        QuantConfig(sh_vq=1 << 20)
    with pytest.raises(RaveError, match="coefficients"):  # a codebook of another SH degree
        quantize(_scene(100, 3), cfg, b)


def test_fitted_ranges_follow_the_scene():
    g = _scene(1000, 0)
    g = Gaussians(g.means, g.quats, g.scales - 3.0, g.opacities, g.sh0 * 0.2, g.shN)
    plain = dequantize(quantize(g, QuantConfig()))
    fitted = dequantize(quantize(g, QuantConfig(fit_ranges=True)))
    err = lambda d, f: float((getattr(d, f) - getattr(g, f)).abs().mean())  # noqa: E731
    assert err(fitted, "scales") < 0.5 * err(plain, "scales") and err(fitted, "sh0") < 0.5 * err(plain, "sh0")


def test_bytes_needed_reads_a_header_from_growing_prefixes():
    enc = ProgressiveEncoder(_scene(700, 2), preset("medium"), chunk_size=100, progress=False)
    data = enc.encode()
    have = 0
    for _ in range(6):  # a byte-range client: fetch what it says until it stops growing
        need = bytes_needed(data[:have])
        if have >= need:
            break
        have = need
    info = read_info(data[:have])
    assert have == info.index_end == enc.overhead() and info.n_complete_chunks == 0
    assert [info.prefix_size(j) for j in range(8)] == [enc.size_of_prefix(min(700, 100 * j)) for j in range(8)]
    with pytest.raises(RaveError, match="bad magic"):
        bytes_needed(b"PLY\nxxxxxxxx")


def test_presets_are_ordered_by_size():
    g = _scene(1500, 1, seed=2)
    sizes = [ProgressiveEncoder(g, preset(q), codec="zstd", progress=False).size_of_prefix(1500)
             for q in ("low", "medium", "high", "lossless-ish")]
    assert sizes == sorted(sizes)
    with pytest.raises(RaveError, match="unknown quality preset"):
        preset("ultra")


def test_rd_allocation_lowers_bits_while_keeping_the_target():
    """With a fidelity measure (PSNR of the positions and colours, in place of renders), the greedy allocation
    ends cheaper than its start and never below the target."""
    g = _scene(800, 0, seed=5)

    def measure(dec: Gaussians) -> float:
        mse = float(((dec.means - g.means) ** 2).mean() + ((dec.sh0 - g.sh0) ** 2).mean() * 0.1)
        return 10 * math.log10(1.0 / max(mse, 1e-20))

    start = QuantConfig(pos_bits=14, rot_bits=5, scale_bits=5, opacity_bits=5, sh0_bits=8, fit_ranges=True)
    cfg, path = allocate(g, start, 50.0, measure, codec="zstd", max_steps=8)
    assert len(path) > 3 and path[-1]["fidelity"] >= 50.0
    assert path[-1]["bytes_per_gaussian"] < path[0]["bytes_per_gaussian"]
    assert cfg.rot_bits < 5 and cfg.scale_bits < 5 and cfg.opacity_bits < 5  # unmeasured attributes go first
    assert measure(dequantize(quantize(g, cfg))) >= 50.0
    # a target the start misses: the start comes back unchanged
    cfg2, path2 = allocate(g, start, 500.0, measure, codec="zstd")
    assert len(path2) == 1 and cfg2.pos_bits == 14
