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
This is the *nearest* rule: the viewer's slider and ``rave encode --rate ~R`` / ``--nearest`` use it.

Cap (the default of ``rave encode --rate R``, and the viewer's typed rate box): :func:`select_by_rate_cap`
returns the largest prefix whose exact size is ``<= R``. Sizes at chunk boundaries increase strictly and every
prefix ending inside chunk j is larger than S_j, so only prefixes inside the one chunk j with
``S_j <= R < S_{j+1}`` can be the answer. Inside it the size ``S_j + 12 + partial(k)`` is not strictly
monotone (the partial chunk is compressed on its own), so the search keeps an exact bracket
``size(lo) <= R < size(hi)`` (chunk boundaries and level points are free knots), narrows it with a few
regula-falsi probes and then bisection, each probe compressing one partial chunk: at most
``6 + ceil(log2(chunk size))`` compressions (18 for chunks of 4096; typically 4-5). The result k always has
``size(k) <= R < size(k + 1)`` (no Gaussian can be added), and it is the largest such k whenever the partial
size is monotone inside that chunk. It is not always: one more Gaussian can shrink an lzma chunk (measured on
two 4096-chunks of a random SH-3 scene: 17 % and 26 % of the steps shrink it, by up to 0.2 and 1.2 KB), so a
prefix a few dozen Gaussians longer may fit again (up to 21 and 54 Gaussians there, 0.1-0.3 % of the budget);
finding it would cost one compression per candidate. Below R(G_1) nothing fits (RaveError with the valid
range); at or above R(G_L) the whole model fits.

PSNR: :func:`select_by_psnr` picks the first RD point in rate order whose PSNR reaches the target, whatever
the curve's shape, interpolated linearly towards its predecessor; targets above the best point raise
RaveError naming that point.

The rate, count and PSNR rules other than the cap are O(log L) (``bisect`` on Python lists) and allocate no
tensors; out-of-range targets raise :class:`RaveError` with the valid range.
"""

from __future__ import annotations

import bisect
import decimal
import math
import re
from typing import Callable, Sequence

from ..errors import RaveError

MAX_RATE = 10**15  # bytes (1,000 TB): larger targets are typos, and floats lose whole bytes beyond ~9e15
_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_RATE_RE = re.compile(r"^\s*\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*([a-zA-Z]*)\s*$")
_HOW = ("use bytes (123456) or a number with B, KB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB "
        "(powers of 2), e.g. 2.5MB")


def _too_large(text) -> RaveError:
    return RaveError(f"the rate {text!r} is too large: at most 10^15 bytes ({MAX_RATE // 10**12:,} TB)")


def parse_rate(text: str | int | float) -> int:
    """Bytes from "2.5MB" (10^6), "800KB" (10^3), "1GB", "2.5MiB" (2^20), "64KiB", "123456" or "123456B".

    Unit letters are case-insensitive, may follow a space, and always mean bytes (never bits). The value is
    exact (decimal arithmetic, so "0.2MB" is 200,000) and rounded down to whole bytes; it must be 1 byte to
    :data:`MAX_RATE`. Anything else (empty, negative, nan, inf, 1e400, unknown unit) is one RaveError line.
    """
    if isinstance(text, bool):
        raise RaveError(f"not a rate: {text!r}")
    if isinstance(text, int):
        if text < 1:
            raise RaveError(f"a rate must be at least 1 byte, got {text!r}")
        if text > MAX_RATE:
            raise _too_large(text)
        return int(text)
    if isinstance(text, float):
        if not math.isfinite(text) or text <= 0:
            raise RaveError(f"a rate must be a finite positive number of bytes, got {text!r}")
        if text > MAX_RATE:
            raise _too_large(text)
        value, mult = decimal.Decimal(text), 1
    else:
        s = str(text)
        m = _RATE_RE.match(s)
        unit = m.group(3).lower() if m else None
        if not m or unit not in _UNITS:
            try:  # "-5MB", "nan", "inf", "-1e3": a number, but not a positive finite one
                float(re.sub(r"(?i)\s*[kmgt]?i?b\s*$", "", s))
            except ValueError:
                raise RaveError(f"cannot read the rate {s!r}: {_HOW}") from None
            raise RaveError(f"a rate must be a finite positive number of bytes, got {s!r}")
        mant = decimal.Decimal(m.group(1))
        e_txt = (m.group(2) or "0").lstrip("+")
        digits = e_txt.lstrip("-")
        exp = int(e_txt) if len(digits) <= 6 else (-(10**6) if e_txt.startswith("-") else 10**6)
        if mant and mant.adjusted() + exp > 30:  # far beyond MAX_RATE whatever the unit: no huge arithmetic
            raise _too_large(s)
        if not mant or mant.adjusted() + exp < -30:
            raise RaveError(f"a rate must be at least 1 byte, got {s!r}")
        value, mult = mant.scaleb(exp), _UNITS[unit]
    with decimal.localcontext() as ctx:
        ctx.prec = 80  # exact for every value that passed the magnitude checks
        total = value * mult
        if total > MAX_RATE:
            raise _too_large(text)
        n = int(total.to_integral_value(rounding=decimal.ROUND_FLOOR))
    if n < 1:
        raise RaveError(f"a rate must be at least 1 byte, got {text!r}")
    return n


def parse_rate_target(text: str | int | float) -> tuple[int, bool]:
    """(bytes, nearest) from a rate target: a leading ``~`` ("~2.5MB") asks for the nearest operating point
    instead of the largest one that fits (the cap)."""
    if isinstance(text, str) and text.strip().startswith("~"):
        return parse_rate(text.strip()[1:]), True
    return parse_rate(text), False


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


def _below_error(rate: float, level_sizes: Sequence[int], level_rates: Sequence[int]) -> RaveError:
    lo, hi = level_rates[0], level_rates[-1]
    return RaveError(f"target rate {format_bytes(rate)} is below the lowest operating point R(G_1) = {lo:,} bytes "
                     f"({int(level_sizes[0]):,} Gaussians), so no prefix fits in it; valid range {lo}..{hi} bytes "
                     f"({lo / 1e6:.3f}-{hi / 1e6:.3f} MB, MB = 10^6 bytes)")


#: regula-falsi probes of :func:`select_by_rate_cap` before it falls back to bisection
CAP_SECANT_PROBES = 6


def cap_probe_bound(chunk_size: int) -> int:
    """Most partial-chunk sizes :func:`select_by_rate_cap` asks for with chunks of ``chunk_size``."""
    return CAP_SECANT_PROBES + max(0, math.ceil(math.log2(max(int(chunk_size), 1))))


def select_by_rate_cap(level_sizes: Sequence[int], level_rates: Sequence[int], chunk_size: int,
                       chunk_rates: Sequence[int], rate: float, size_of: Callable[[int], int], *,
                       interpolate: bool = True) -> int:
    """The largest prefix length k whose exact size ``size_of(k)`` is at most ``rate`` bytes (module docstring).

    chunk_rates: [M + 1] exact sizes at the chunk boundaries ``0, chunk, 2 chunk, …, N``; ``size_of(k)``: the
    exact size of any prefix (called only for k strictly inside one chunk, at most :func:`cap_probe_bound`
    times). The result is >= |G_1| and satisfies ``size(k) <= rate < size(k + 1)`` (k = N when the whole
    model fits). ``interpolate`` False (naive multi-anchor ablation): the largest level that fits.
    """
    rate = float(rate)
    n = int(level_sizes[-1])
    if math.isnan(rate) or rate < level_rates[0]:
        raise _below_error(rate, level_sizes, level_rates)
    if rate >= chunk_rates[-1] or rate >= level_rates[-1]:
        return n
    if not interpolate:
        return int(level_sizes[bisect.bisect_right(level_rates, rate) - 1])
    j = bisect.bisect_right(chunk_rates, rate) - 1  # S_j <= rate < S_{j+1}; j >= 0 as S_0 < R(G_1) <= rate
    lo, s_lo = j * chunk_size, int(chunk_rates[j])
    hi, s_hi = min((j + 1) * chunk_size, n), int(chunk_rates[j + 1])
    for nl, rl in zip(level_sizes, level_rates):  # level points are exact sizes too: free, tighter knots
        if lo < nl < hi:
            if rl <= rate:
                lo, s_lo = int(nl), int(rl)
            else:
                hi, s_hi = int(nl), int(rl)
                break
    secant = CAP_SECANT_PROBES
    side = 0  # which end moved last (Illinois: halve the weight of an end that stays put twice)
    w_lo = w_hi = 1.0
    while hi - lo > 1:
        if secant > 0 and hi - lo > 2:
            secant -= 1
            f_lo, f_hi = (rate - s_lo) * w_lo, (s_hi - rate) * w_hi
            mid = lo + int(round((hi - lo) * f_lo / (f_lo + f_hi))) if f_lo + f_hi > 0 else (lo + hi) // 2
            mid = min(max(mid, lo + 1), hi - 1)
        else:
            mid = (lo + hi) // 2
        s = int(size_of(mid))
        if s <= rate:
            lo, s_lo = mid, s
            w_lo, w_hi = 1.0, (w_hi / 2 if side == -1 else 1.0)
            side = -1
        else:
            hi, s_hi = mid, s
            w_hi, w_lo = 1.0, (w_lo / 2 if side == 1 else 1.0)
            side = 1
    return int(lo)


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
    """Smallest prefix length whose PSNR reaches ``psnr`` dB according to the stored RD table, whatever its shape.

    j = the first RD point in rate (= count) order with PSNR >= target (a bisection on the running maximum,
    which first reaches the target exactly there). The answer is ``count[j]``, or for j > 0 the count where the
    straight segment from point j-1 (below the target) to point j crosses it (rounded up, so in
    ``(count[j-1], count[j]]``). Targets at or below the first point's PSNR give ``count[0]``; a target above
    the best point raises RaveError naming the best point. ``running_max``: precomputed
    :func:`psnr_running_max`.
    """
    counts, ps = rd["count"], rd["psnr"]
    if not counts:
        raise RaveError("the checkpoint has no RD table to select by PSNR")
    psnr = float(psnr)
    cm = running_max if running_max is not None else psnr_running_max(ps)
    if not math.isfinite(psnr):
        raise RaveError(f"target PSNR {psnr} dB is not a number")
    if psnr > cm[-1] + 1e-9:
        b = max(range(len(ps)), key=lambda i: (ps[i], -i))  # the first point with the best PSNR
        nbytes = rd.get("bytes") or []
        at = f", {format_bytes(nbytes[b])}" if b < len(nbytes) else ""
        raise RaveError(f"target PSNR {psnr:.3f} dB is above the best operating point: {ps[b]:.3f} dB at "
                        f"{int(counts[b]):,} Gaussians{at} (on the stored test views)")
    j = bisect.bisect_left(cm, psnr - 1e-9)
    if j <= 0:
        return int(counts[0])
    j = min(j, len(cm) - 1)
    p0, p1 = ps[j - 1], ps[j]  # p0 < target <= p1 (up to the tolerance)
    frac = (psnr - p0) / (p1 - p0) if p1 > p0 else 1.0
    k = math.ceil(counts[j - 1] + min(max(frac, 0.0), 1.0) * (counts[j] - counts[j - 1]) - 1e-9)
    return int(min(max(k, counts[j - 1] + 1), counts[j]))


FALL_TOLERANCE_DB = 0.05  # a level this much below the one before it counts as a fall (not noise)


def level_psnrs(level_sizes: Sequence[int], rd: dict) -> list[float]:
    """Mean test PSNR at each level's size, interpolated in the dense RD table (count -> psnr)."""
    import numpy as np

    return [float(np.interp(float(s), np.asarray(rd["count"], float), np.asarray(rd["psnr"], float)))
            for s in level_sizes]


def falling_levels(level_sizes: Sequence[int], rd: dict, tol: float = FALL_TOLERANCE_DB) -> list[tuple[int, float, float]]:
    """(l, PSNR(G_l), PSNR(G_l+1)) for every 1-based level l whose successor is more than ``tol`` dB worse:
    more bits that give a worse picture on the held-back views (floaters, view-specific Gaussians)."""
    p = level_psnrs(level_sizes, rd)
    return [(i + 1, p[i], p[i + 1]) for i in range(len(p) - 1) if p[i + 1] < p[i] - tol]


def pareto_levels(level_sizes: Sequence[int], rd: dict) -> list[int]:
    """1-based levels that beat every smaller level's PSNR: the rates worth shipping when the curve falls."""
    best, out = -math.inf, []
    for i, v in enumerate(level_psnrs(level_sizes, rd)):
        if v > best:
            best, out = v, out + [i + 1]
    return out
