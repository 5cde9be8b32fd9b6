"""Bytes: the quantizer shared with fine-tuning, and the progressive chunked .rave container."""

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

__all__ = [
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
