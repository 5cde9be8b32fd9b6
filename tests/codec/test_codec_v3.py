"""Format version 3: faint Gaussians on coarser grids (``faint_bits``) and the spatial stream order."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from rave_viewer.codec import ProgressiveEncoder, QuantConfig, cut_stream, decode, dequantize, quantize, read_info
from rave_viewer.codec.container import _pack_chunk
from rave_viewer.codec.presets import preset
from rave_viewer.codec.quantize import fake_quantize, faint_drop_table
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians

from test_codec_fuzz import _refix_crcs  # noqa: E402  (pytest puts this folder on sys.path)


def _scene(n: int = 600, degree: int = 2, seed: int = 3) -> Gaussians:
    g = Gaussians.random(n, degree, seed=seed)
    # opacities over the whole range, many faint ones (as trained scenes have)
    a = torch.linspace(0.002, 0.998, n)[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    return Gaussians(g.means, g.quats, g.scales, torch.logit(a), g.sh0, g.shN)


def test_faint_drop_table_is_floor_of_minus_log2_alpha():
    for ob in (1, 3, 5, 8):
        t = faint_drop_table(ob, 16).numpy()
        alpha = (2 * np.arange(1 << ob) + 1) / 2.0 ** (ob + 1)
        assert (t == np.floor(-np.log2(alpha))).all()
    assert faint_drop_table(8, 2).max() == 2 and faint_drop_table(8, 0).max() == 0


def test_faint_grids_round_trip_bit_exact_for_every_prefix():
    g = _scene()
    cfg = QuantConfig(faint_bits=4, opacity_bits=6)
    enc = ProgressiveEncoder(g, cfg, chunk_size=128, progress=False)
    assert enc.format_version == 3
    q = enc.quantized
    drop = faint_drop_table(6, 4)[q.opacities.long()]
    assert drop.min() == 0 and drop.max() == 4
    # a faint Gaussian's codes lie on its coarser grid
    assert (q.means.long() < (1 << (cfg.pos_bits - drop))[:, None]).all()
    assert (q.rot.long() < (1 << (cfg.rot_bits - drop))[:, None]).all()
    for k in (0, 1, 127, 128, 300, 600):
        data = enc.encode(k)
        assert len(data) == enc.size_of_prefix(k)
        res = decode(data, strict=True)
        assert res.info.format_version == 3 and res.info.cfg.faint_bits == 4
        assert res.gaussians.equal(enc.quantized_prefix(k))
    # dequantize is row-independent, and fine-tuning's straight-through quantizer sees the same values
    deq = dequantize(q)
    idx = torch.randperm(len(g), generator=torch.Generator().manual_seed(0))[:100]
    assert dequantize(q.subset(idx)).equal(deq.subset(idx))
    fq = fake_quantize(g, enc.cfg, enc.bounds)
    assert torch.equal(fq.means, deq.means) and torch.equal(fq.shN, deq.shN)
    assert cut_stream(enc.encode(), 256) == enc.encode(256)


def test_faint_grids_cost_little_error_and_save_bytes():
    """Coarser grids only where the Gaussian is faint: the alpha-weighted error hardly moves, the bytes fall."""
    g = _scene(2000)
    sizes, errs = [], []
    for fb in (0, 2, 4):
        enc = ProgressiveEncoder(g, QuantConfig(faint_bits=fb), chunk_size=500, progress=False)
        d = dequantize(quantize(g, enc.cfg, enc.bounds))
        a = torch.sigmoid(g.opacities)[:, None]
        errs.append(float((a * (d.means - g.means).abs()).mean()))
        sizes.append(len(enc.encode()))
    assert sizes[0] > sizes[1] > sizes[2]
    assert errs[2] < 3 * errs[0]


def test_forged_code_beyond_a_faint_class_grid_is_a_rave_error():
    g = _scene(200, 1)
    enc = ProgressiveEncoder(g, QuantConfig(faint_bits=3, opacity_bits=5), chunk_size=100, progress=False)
    data = enc.encode()
    info = read_info(data)
    cols = enc._cols[:100].copy()
    faint = int(np.flatnonzero(faint_drop_table(5, 3).numpy()[cols[:, 7]] == 3)[0])
    cols[faint, 1] = (1 << enc.cfg.rot_bits) - 1  # a full-grid rotation code on a 3-bits-coarser row
    raw, _ = _pack_chunk(enc._morton[:100], cols, enc._layout)
    blob = enc.codec.compress(raw)
    c0 = info.chunks[0]
    bad = bytearray(data[: c0.offset]) + blob + data[c0.offset + c0.length :]
    struct.pack_into("<I", bad, info.header_size, len(blob))
    with pytest.raises(RaveError, match="chunk 0 does not decode: attribute column 1 has codes out of range"):
        decode(bytes(_refix_crcs(bad)))
    # faint_bits above the maximum in a CRC-consistent header
    bad = bytearray(data)
    flags_at = struct.calcsize("<4sHHQIIBB8B")  # offset of the flags in the fixed header
    bad[flags_at + 1] = 0x0F
    with pytest.raises(RaveError, match="faint_bits"):
        decode(bytes(_refix_crcs(bad)))
    # a version-2 header cannot carry faint bits
    bad = bytearray(data)
    bad[4:6] = struct.pack("<H", 2)
    with pytest.raises(RaveError, match="unknown flags"):
        decode(bytes(_refix_crcs(bad)))
    # the unit type (high byte of the version) says anchors: the Gaussian reader refuses it in one line
    bad = bytearray(data)
    bad[5] = 1
    with pytest.raises(RaveError, match="anchor"):
        decode(bytes(_refix_crcs(bad)))


def test_spatial_order_is_a_permutation_and_smaller_on_a_shuffled_scene():
    g = _scene(4000, 0)
    g = g.subset(torch.randperm(len(g), generator=torch.Generator().manual_seed(1)))
    cfg = preset("medium")
    given = ProgressiveEncoder(g, cfg, chunk_size=500, progress=False)
    spatial = ProgressiveEncoder(g, cfg, chunk_size=500, progress=False, spatial_order=True)
    order = spatial.stream_order()
    assert sorted(order.tolist()) == list(range(len(g)))
    res = decode(spatial.encode())
    assert res.gaussians.equal(dequantize(quantize(g, spatial.cfg, spatial.bounds)).subset(order))
    assert res.gaussians.equal(spatial.quantized_prefix())
    assert decode(spatial.encode(1000)).gaussians.equal(spatial.quantized_prefix(1000))
    assert len(spatial.encode()) < 0.97 * len(given.encode())


def test_version_2_and_1_settings_still_write_their_versions():
    g = _scene(300, 1)
    assert ProgressiveEncoder(g, QuantConfig(sh_vq=8), progress=False).format_version == 2
    assert ProgressiveEncoder(g, QuantConfig(), progress=False, format_version=1).format_version == 1
    with pytest.raises(RaveError, match="format version 2"):
        ProgressiveEncoder(g, QuantConfig(faint_bits=1), progress=False, format_version=2)
    back = QuantConfig.from_dict(QuantConfig(faint_bits=5).to_dict())
    assert back.faint_bits == 5 and back.format_version == 3
    with pytest.raises(RaveError, match="faint_bits"):
        QuantConfig(faint_bits=9)
