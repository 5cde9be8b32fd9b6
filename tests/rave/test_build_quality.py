"""`rave build` quantizes with a codec quality preset (default medium), the same one `rave encode --quality` uses."""

from __future__ import annotations

import pytest

from rave_viewer.codec.presets import DEFAULT_QUALITY, PRESETS
from rave_viewer.errors import RaveError
from rave_viewer.rave.config import QUALITIES, BuildConfig, from_dict, quant_config


def test_qualities_are_the_codec_presets():
    assert QUALITIES == tuple(PRESETS)
    assert BuildConfig().quality == DEFAULT_QUALITY == "medium"


def test_quant_overrides_apply_on_top_of_the_preset():
    q = quant_config(BuildConfig(quality="high", quant={"pos_bits": 16}))
    assert q.pos_bits == 16
    assert q.sh_vq == PRESETS["high"][0]["sh_vq"] and q.rot_bits == PRESETS["high"][0]["rot_bits"]
    with pytest.raises(RaveError, match="quant"):
        from_dict({"quant": {"pos_bits": 40}})
    with pytest.raises(RaveError, match="quality"):
        from_dict({"quality": "ultra"})


def test_builder_uses_the_preset(tiny_dataset, tiny_model, builder_factory):
    for name in ("medium", "low"):
        b = builder_factory(tiny_dataset, tiny_model, quality=name)
        want = PRESETS[name][0]
        assert (b.quant.pos_bits, b.quant.opacity_bits) == (want["pos_bits"], want["opacity_bits"])
        assert 0 < b.quant.sh_vq <= want["sh_vq"] and b.quant.sh_codebook is not None  # SH degree 1: a codebook
        assert b.quant.format_version == 3


def test_default_checkpoint_streams_are_version_3_with_a_codebook(ckpt_context):
    from rave_viewer.codec.container import read_info

    assert ckpt_context.quant.sh_vq > 0
    k = ckpt_context.select(rate=ckpt_context.rate_range()[1])
    data = ckpt_context.encoder().encode(k)
    info = read_info(data)
    assert info.format_version == 3 and len(data) == ckpt_context.prefix_bytes(k)


def test_very_high_build_fine_tunes_through_the_sh_transform(tiny_dataset, tiny_model, builder_factory):
    """quality very-high: the SH transform is fitted once before fine-tuning and its v4 stream is the model."""
    from rave_viewer.codec.container import decode, read_info

    b = builder_factory(tiny_dataset, tiny_model, quality="very-high")
    assert b.quant.sh_basis is not None and b.quant.shN_step == PRESETS["very-high"][0]["shN_step"]
    ckpt = b.checkpoint(ranking="global", finetune_=True)
    assert ckpt.quant == b.quant  # the basis fitted before fine-tuning is the one stored
    enc = ckpt.encoder()
    k = ckpt.select(rate=ckpt.rate_range()[1])
    data = enc.encode(k)
    assert read_info(data).format_version == 4 and len(data) == ckpt.prefix_bytes(k)
    assert decode(data).gaussians.equal(enc.quantized_prefix(k))
