"""Bytes: the quantizer shared with fine-tuning, and the progressive chunked .rave container (Gaussians and
Scaffold-GS anchors: :mod:`.anchors`; which one a stream holds: :func:`unit_type_of`)."""

from .anchors import (
    DEFAULT_ANCHOR_CHUNK,
    AnchorEncoder,
    AnchorQuant,
    anchor_bytes_needed,
    cut_anchor_stream,
    decode_anchors,
    read_anchor_info,
)
from .coders import CODECS, DEFAULT_CODEC, CodecError, get_codec, register_codec
from .container import (
    DEFAULT_CHUNK_SIZE,
    FORMAT_VERSION,
    DecodedStream,
    ProgressiveEncoder,
    RaveStreamWarning,
    StreamInfo,
    bytes_needed,
    cut_stream,
    decode,
    encode,
    read_info,
)
from .presets import DEFAULT_QUALITY, PRESETS, preset
from .quantize import QuantConfig, QuantizedGaussians, dequantize, fake_quantize, quantize, scene_bounds
from .unit_type import unit_type_of

__all__ = [
    "DEFAULT_ANCHOR_CHUNK",
    "AnchorEncoder",
    "AnchorQuant",
    "anchor_bytes_needed",
    "cut_anchor_stream",
    "decode_anchors",
    "read_anchor_info",
    "unit_type_of",
    "CODECS",
    "DEFAULT_CODEC",
    "CodecError",
    "get_codec",
    "register_codec",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "DecodedStream",
    "ProgressiveEncoder",
    "RaveStreamWarning",
    "StreamInfo",
    "bytes_needed",
    "cut_stream",
    "DEFAULT_QUALITY",
    "PRESETS",
    "preset",
    "decode",
    "encode",
    "read_info",
    "QuantConfig",
    "QuantizedGaussians",
    "dequantize",
    "fake_quantize",
    "quantize",
    "scene_bounds",
]
