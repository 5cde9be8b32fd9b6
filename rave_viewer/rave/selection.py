"""Operating point selection: a target rate, Gaussian count or PSNR -> a prefix length of the ranked order.

Rate (paper Eq. 3 / Eq. 4): with R(G_l) the exact ``.rave`` bytes of level l,
``l = argmax{R(G_l) <= R}`` and ``|G_t| = |G_l| + (R - R(G_l)) / (R(G_{l+1}) - R(G_l)) * (|G_{l+1}| - |G_l|)``
(rounded down); Eq. 4 fills the budget with the top of C_{l+1}, which in our ranked order is simply the prefix
of length |G_t|. :func:`select_by_rate` is exactly that.

Eq. 3 assumes the rate grows linearly inside an interval; the real size of a prefix may differ by a few chunks
(chunks compress differently). The progressive container knows the exact size at every chunk boundary, so
:func:`select_by_rate_exact` applies the same linear rule between the two chunk boundaries around R (the
levels still decide the interval). Then, with S_j <= R < S_{j+1} the sizes at the surrounding chunk
boundaries, the selected prefix ends inside chunk j and its size s obeys ``S_j <= s`` and
``s <= S_j + (bytes of its last, partial chunk)``, hence ``R - (one chunk) <= s <= R + (one partial chunk)``.
This is what :meth:`RaveCheckpoint.select` uses.

All functions are O(log L) (``bisect`` on Python lists), allocate no tensors, and raise :class:`RaveError`
with the valid range for targets outside it.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import Sequence

from ..errors import RaveError

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}
_RATE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*([a-zA-Z]*)\s*$")


def parse_rate(text: str | int | float) -> int:
    """Bytes from "2.5MB" (10^6), "800KB" (10^3), "1GB", "2.5MiB" (2^20), "64KiB", "123456" or "123456B".

    Unit letters are case-insensitive and always mean bytes (never bits). The result is rounded down.
    """
    if isinstance(text, bool):
        raise RaveError(f"not a rate: {text!r}")
    if isinstance(text, (int, float)):
        value, mult = float(text), 1
    else:
        m = _RATE_RE.match(str(text))
        unit = m.group(3).lower() if m else None
        if not m or unit not in _UNITS:
            raise RaveError(f"cannot read the rate {text!r}: use bytes (123456) or a number with B, KB, MB, GB "
                            "(powers of 10) or KiB, MiB, GiB (powers of 2), e.g. 2.5MB")
        value = float(m.group(1)) * (10.0 ** int(m.group(2)) if m.group(2) else 1.0)
        mult = _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise RaveError(f"a rate must be a positive number of bytes, got {text!r}")
    return int(math.floor(value * mult + 1e-9))


def format_bytes(n: float) -> str:
    """'2,345,678 B (2.35 MB)' with MB = 10^6 bytes."""
    n = float(n)
    if not math.isfinite(n):
        return str(n)
    if n >= 1e6:
        short = f"{n / 1e6:.3g} MB"
    elif n >= 1e3:
        short = f"{n / 1e3:.3g} KB"
    else:
        short = f"{n:.0f} B"
    return f"{int(round(n)):,} B ({short})" if n >= 1e3 else short


def _range_error(rate: float, level_rates: Sequence[int]) -> RaveError:
    lo, hi = level_rates[0], level_rates[-1]
    where = "below the lowest operating point R(G_1)" if rate < lo else "above the highest operating point R(G_L)"
    return RaveError(f"target rate {format_bytes(rate)} is {where}; valid range {lo}..{hi} bytes "
                     f"({lo / 1e6:.3f}-{hi / 1e6:.3f} MB, MB = 10^6 bytes)")


def _level_of_rate(level_rates: Sequence[int], rate: float) -> int:
    """0-based l with R(G_l) <= rate < R(G_{l+1}) (L-1 at the top); RaveError outside the range."""
    if not math.isfinite(rate) or rate < level_rates[0] or rate > level_rates[-1]:
        raise _range_error(rate, level_rates)
    return bisect.bisect_right(level_rates, rate) - 1


def select_by_rate(level_sizes: Sequence[int], level_rates: Sequence[int], rate: float, *,
                   interpolate: bool = True) -> int:
    """Prefix length for target ``rate`` bytes by Eq. 3 on the level table (or the level at or below the target
    when ``interpolate`` is False: the naive multi-anchor rule)."""
    rate = float(rate)
    li = _level_of_rate(level_rates, rate)
    if li == len(level_sizes) - 1:
        return int(level_sizes[-1])
    if not interpolate:
        return int(level_sizes[li])
    r0, r1 = level_rates[li], level_rates[li + 1]
    n0, n1 = level_sizes[li], level_sizes[li + 1]
    k = n0 + math.floor((rate - r0) / (r1 - r0) * (n1 - n0))
    return int(min(max(k, n0), n1 - 1))


def select_by_rate_exact(level_sizes: Sequence[int], level_rates: Sequence[int], chunk_size: int,
                         chunk_rates: Sequence[int], rate: float, *, interpolate: bool = True) -> int:
    """Prefix length for ``rate`` with Eq. 3's linear rule applied between exact chunk-boundary sizes.

    chunk_rates: [M + 1] exact sizes of the prefixes ending at chunk boundaries, counts
    ``0, chunk, 2 chunk, …, N`` (strictly increasing). Level points inside the chunk around ``rate`` serve as
    tighter knots (so a level's own rate selects exactly that level). The result stays within the level
    interval that the level table gives; its size is within one chunk of ``rate`` (module docstring).
    """
    rate = float(rate)
    li = _level_of_rate(level_rates, rate)
    n = int(level_sizes[-1])
    if li == len(level_sizes) - 1:
        return n
    if not interpolate:
        return int(level_sizes[li])
    j = bisect.bisect_right(chunk_rates, rate) - 1
    if j < 0:
        k = 0
    elif j >= len(chunk_rates) - 1:
        k = n
    else:
        b0, b1 = j * chunk_size, min((j + 1) * chunk_size, n)
        s0, s1 = chunk_rates[j], chunk_rates[j + 1]
        # the level points are exact sizes too: use them when they are closer knots inside this chunk
        n0, r0, n1, r1 = level_sizes[li], level_rates[li], level_sizes[li + 1], level_rates[li + 1]
        if b0 <= n0 < b1 and s0 <= r0 <= rate:
            b0, s0 = n0, r0
        if b0 < n1 <= b1 and rate < r1 <= s1:
            b1, s1 = n1, r1
        k = b0 + math.floor((rate - s0) / (s1 - s0) * (b1 - b0)) if s1 > s0 else b0
    return int(min(max(k, level_sizes[li]), level_sizes[li + 1] - 1))


def select_by_count(level_sizes: Sequence[int], count: int, *, interpolate: bool = True) -> int:
    """``count`` itself (validated to 1..N), or the level at or below it when ``interpolate`` is False."""
    n = int(level_sizes[-1])
    if isinstance(count, bool) or not isinstance(count, int) and not float(count).is_integer():
        raise RaveError(f"a Gaussian count must be an integer, got {count!r}")
    count = int(count)
    lo = 1 if interpolate else int(level_sizes[0])
    if not lo <= count <= n:
        raise RaveError(f"Gaussian count {count:,} is outside the valid range {lo:,}..{n:,}")
    if not interpolate:
        return int(level_sizes[bisect.bisect_right(level_sizes, count) - 1])
    return count


def psnr_running_max(psnr: Sequence[float]) -> list[float]:
    """The RD table's PSNR made monotone along the count (running maximum)."""
    cm = list(psnr)
    for i in range(1, len(cm)):
        cm[i] = max(cm[i], cm[i - 1])
    return cm


def select_by_psnr(rd: dict, psnr: float, *, running_max: Sequence[float] | None = None) -> int:
    """Smallest prefix length whose PSNR reaches ``psnr`` dB according to the stored RD table.

    The table's PSNR is made monotone (running maximum along the count) and inverted with linear
    interpolation in count between its points (rounded up); targets outside [PSNR at the first point,
    best PSNR] raise RaveError with that range. ``running_max``: precomputed :func:`psnr_running_max`.
    """
    counts, ps = rd["count"], rd["psnr"]
    if not counts:
        raise RaveError("the checkpoint has no RD table to select by PSNR")
    psnr = float(psnr)
    cm = running_max if running_max is not None else psnr_running_max(ps)
    if not math.isfinite(psnr) or psnr < cm[0] - 1e-9 or psnr > cm[-1] + 1e-9:
        raise RaveError(f"target PSNR {psnr:.3f} dB is outside the range of the operating points "
                        f"({cm[0]:.3f}-{cm[-1]:.3f} dB on the stored test views)")
    j = bisect.bisect_left(cm, psnr)
    if j <= 0:
        return int(counts[0])
    if j >= len(cm):
        j = len(cm) - 1
    frac = (psnr - cm[j - 1]) / (cm[j] - cm[j - 1]) if cm[j] > cm[j - 1] else 1.0
    k = math.ceil(counts[j - 1] + frac * (counts[j] - counts[j - 1]) - 1e-9)
    return int(min(max(k, counts[j - 1]), counts[j]))
