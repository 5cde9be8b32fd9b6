"""Quality presets of ``rave encode --quality``: named :class:`QuantConfig` bit allocations (format version 3).

Each preset fits its ranges to the scene (log-scales, SH DC, SH rest) and ``low``/``medium``/``high`` code the SH
rest as one index into a per-scene k-means codebook (``sh_vq`` entries at most, fewer for small scenes; see
vq.py). The bit depths were chosen from the rate-distortion points measured by benchmarks/codec.py on scenes of
SH degree 0-3 (benchmarks/CODEC.md): each preset is the cheapest allocation found whose renders stay above its
fidelity target against the original's (``target_psnr``, dB; the benchmark reports what each scene reaches).
The same config drives the RAVE build's quantization-aware fine-tuning, its level table and the stream.

Every preset coarsens faint Gaussians' grids (``faint_bits``, format version 3): at medium on the SH0 scene -13 %
bytes for -0.5 dB, a quarter of the PSNR the same saving costs through uniform bit depths. ``very-high`` is the
allocation ``rave encode --tune`` found from ``lossless-ish`` down to 65 dB on the SH0 scene (the point where
PlayCanvas SOG sits), with positions at 14 bits instead of the 13 found (+1.4 dB for +3 % bytes, and never
coarser than ``high``) and the SH rest transform-coded (format version 4, transform.py: a codebook's error floor
sits near 57 dB). ``shN_step`` 0.003 keeps the renders near where the 7-bit scalar SH rest had them (-0.6 to
+0.1 dB; 65.6-67.7 dB on the SH2/SH3 scenes) for 9-26 % fewer bytes; ``shN_bits`` is then the grid a version-3
stream falls back to (``rave encode --format-version 3``).
"""

from __future__ import annotations

from .quantize import QuantConfig
from ..errors import RaveError

#: name -> (QuantConfig keyword arguments, fidelity target in dB PSNR vs the original renders)
PRESETS: dict[str, tuple[dict, float]] = {
    "low": (dict(pos_bits=10, rot_bits=4, scale_bits=4, opacity_bits=4, sh0_bits=5, shN_bits=(6, 6, 6),
                 sh_vq=128, fit_ranges=True, faint_bits=2), 40.0),
    "medium": (dict(pos_bits=11, rot_bits=4, scale_bits=5, opacity_bits=5, sh0_bits=6, shN_bits=(6, 6, 6),
                    sh_vq=512, fit_ranges=True, faint_bits=2), 45.0),
    "high": (dict(pos_bits=14, rot_bits=6, scale_bits=6, opacity_bits=6, sh0_bits=7, shN_bits=(8, 8, 8),
                  sh_vq=1024, fit_ranges=True, faint_bits=2), 52.0),
    "very-high": (dict(pos_bits=14, rot_bits=7, scale_bits=9, opacity_bits=7, sh0_bits=9, shN_bits=(7, 7, 7),
                       shN_step=0.003, fit_ranges=True, faint_bits=6), 62.0),
    "lossless-ish": (dict(pos_bits=18, rot_bits=10, scale_bits=9, opacity_bits=9, sh0_bits=10, shN_bits=(8, 8, 8),
                          shN_step=0.001, fit_ranges=True, faint_bits=3), 65.0),
}
DEFAULT_QUALITY = "medium"


def preset(name: str = DEFAULT_QUALITY, **overrides) -> QuantConfig:
    """The (unfitted) :class:`QuantConfig` of preset ``name``, with ``overrides`` (e.g. ``pos_bits=16``)."""
    if name not in PRESETS:
        raise RaveError(f"unknown quality preset {name!r} (known: {', '.join(PRESETS)})")
    return QuantConfig(**{**PRESETS[name][0], **overrides})


__all__ = ["PRESETS", "DEFAULT_QUALITY", "preset"]
