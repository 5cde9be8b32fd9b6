"""Rate-distortion bit allocation measured on the scene: the cheapest bit depths that keep a fidelity target.

Greedy descent from a starting configuration (a quality preset): every step tries one bit less on each attribute
(positions, rotations, log-scales, opacity, SH DC, the SH-rest grid when it is scalar or transform-coded (its
step doubled), and one more bit dropped
from faint Gaussians' grids, ``faint_bits``), measures the exact
bytes (a sample of chunks compressed with the chunk codec) and the distortion (``measure``: a caller-supplied
fidelity of the dequantized scene in dB, e.g. PSNR of its renders against the original's), and takes the step
that saves the most bytes per dB lost while the fidelity stays >= the target. The codec layer does not render:
``rave encode --tune`` passes a measure built on the renderer (commands/encode.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..scene.gaussians import Gaussians
from .quantize import BIT_RANGES, MAX_FAINT_BITS, MAX_SH_STEP, QuantConfig, dequantize, quantize

KNOBS = ("pos_bits", "rot_bits", "scale_bits", "opacity_bits", "sh0_bits", "shN_bits", "shN_step", "faint_bits")
RATE_SAMPLE = 16384  # Gaussians whose compressed size stands for the rate (spread over the scene)
MIN_BITS = {"pos_bits": 6, "rot_bits": 3, "scale_bits": 3, "opacity_bits": 3, "sh0_bits": 3, "shN_bits": 3}


def _lower(cfg: QuantConfig, knob: str) -> QuantConfig | None:
    """``cfg`` one step cheaper on ``knob`` (one bit less; for faint_bits one bit more dropped), None at the end."""
    if knob == "faint_bits":
        return replace(cfg, faint_bits=cfg.faint_bits + 1) if cfg.faint_bits < MAX_FAINT_BITS else None
    if knob == "shN_step":  # the transform's grid twice as coarse (its basis and ranges stay: they are absolute)
        return replace(cfg, shN_step=cfg.shN_step * 2) if 0 < cfg.shN_step <= MAX_SH_STEP / 2 else None
    lo = max(BIT_RANGES[knob][0], MIN_BITS[knob])
    if knob == "shN_bits":
        # a codebook's entries keep their grid (the codebook is fixed); the transform has its own knob, shN_step
        if cfg.sh_vq or cfg.shN_step or min(cfg.shN_bits) <= lo:
            return None
        return replace(cfg, shN_bits=tuple(b - 1 for b in cfg.shN_bits))
    b = getattr(cfg, knob)
    return replace(cfg, **{knob: b - 1}) if b > lo else None


def sample_rate(g: Gaussians, cfg: QuantConfig, bounds: Tensor, codec: str = "lzma", chunk_size: int = 4096) -> float:
    """Bytes per Gaussian of the chunks of a fixed sample (contiguous runs spread over the scene's order)."""
    from .container import ProgressiveEncoder

    n = len(g)
    if n > RATE_SAMPLE:
        runs = RATE_SAMPLE // chunk_size
        starts = np.linspace(0, n - chunk_size, runs).astype(np.int64)
        idx = torch.from_numpy(np.concatenate([np.arange(s, s + chunk_size) for s in starts]))
        g = g.subset(idx)
    enc = ProgressiveEncoder(g, cfg, codec, chunk_size, bounds, progress=False)
    return sum(enc.chunk_sizes() or [enc.size_of_prefix(len(g)) - enc.overhead()]) / max(len(g), 1)


def allocate(
    g: Gaussians,
    start: QuantConfig,
    target: float,
    measure: Callable[[Gaussians], float],
    *,
    bounds: Tensor | None = None,
    codec: str = "lzma",
    chunk_size: int = 4096,
    max_steps: int = 40,
    log: Callable[[str], None] | None = None,
) -> tuple[QuantConfig, list[dict]]:
    """(cheapest config found with ``measure >= target``, the path taken: one dict per accepted step).

    ``start`` is fitted once on the whole scene (ranges, codebook); only bit depths change afterwards. When
    ``start`` itself misses the target it is returned unchanged (the path says so).
    """
    from .quantize import scene_bounds

    bounds = scene_bounds(g) if bounds is None else bounds
    cfg = start.fit(g, bounds)
    evals: dict[tuple, tuple[float, float]] = {}

    def evaluate(c: QuantConfig) -> tuple[float, float]:
        key = tuple(getattr(c, k) for k in KNOBS)
        if key not in evals:
            evals[key] = (sample_rate(g, c, bounds, codec, chunk_size), float(measure(dequantize(quantize(g, c, bounds)))))
        return evals[key]

    rate, fid = evaluate(cfg)
    path = [{"cfg": {k: getattr(cfg, k) for k in KNOBS}, "bytes_per_gaussian": rate, "fidelity": fid}]
    if fid < target:
        return cfg, path
    for _ in range(max_steps):
        best = None
        for knob in KNOBS:
            c = _lower(cfg, knob)
            if c is None:
                continue
            r, f = evaluate(c)
            if f < target or r >= rate:
                continue
            score = (rate - r) / max(fid - f, 1e-3)
            if best is None or score > best[0]:
                best = (score, c, r, f, knob)
        if best is None:
            break
        _, cfg, rate, fid, knob = best
        path.append({"cfg": {k: getattr(cfg, k) for k in KNOBS}, "bytes_per_gaussian": rate, "fidelity": fid,
                     "step": knob})
        if log:
            what = {"shN_step": "x2", "faint_bits": "+1"}.get(knob, "-1")
            log(f"{knob} {what}: {rate:.2f} B/Gaussian, {fid:.2f} dB")
    return cfg, path


__all__ = ["allocate", "sample_rate", "KNOBS"]
