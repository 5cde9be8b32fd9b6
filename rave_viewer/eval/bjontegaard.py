"""Bjøntegaard deltas (BD-PSNR, BD-rate) between two rate-distortion curves, with piecewise-cubic (PCHIP) fits.

Pure math (numpy only, no scipy). The method follows the JVET/VCEG practice
(VCEG-M33 with the piecewise cubic Hermite interpolation of the JVET common-test-conditions sheet):

* BD-PSNR: fit PSNR as a PCHIP function of log10(rate) for each curve, integrate both over the overlapping
  log-rate interval, and return the difference of the mean values (dB, test minus reference: > 0 means the
  test curve has higher quality at equal rate).
* BD-rate: fit log10(rate) as a PCHIP function of PSNR over the overlapping PSNR interval; the mean
  difference ``d`` gives ``(10^d - 1) * 100`` percent (< 0 means the test curve needs fewer bytes).

Points are sorted by the abscissa; points with equal abscissa are merged (mean of their ordinates), so a dense
RD table of a continuous method (hundreds of points) is used as-is. PCHIP keeps the fit monotone between
points and never overshoots, which matters for dense, slightly noisy curves.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import RaveError

__all__ = ["bd_psnr", "bd_rate", "pchip_slopes", "pchip_integral"]


def _prepare(x: Sequence[float], y: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, de-duplicated float64 (x, y); RaveError when fewer than 2 distinct abscissae remain."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise RaveError(f"{what}: {x.size} abscissae but {y.size} ordinates")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise RaveError(f"{what}: values must be finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inv = np.unique(x, return_inverse=True)
    if ux.size < 2:
        raise RaveError(f"{what}: need at least 2 points with distinct values, got {ux.size}")
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    return ux, uy


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise-cubic Hermite interpolant (Fritsch-Carlson, with
    the one-sided three-point end formula used by MATLAB/scipy ``pchip``). x strictly increasing, len >= 2."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    # interior: weighted harmonic mean when the neighbouring secants have the same sign, else 0
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same = (np.sign(delta[:-1]) * np.sign(delta[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[1:-1] = np.where(same, hm, 0.0)

    def end(h0, h1, m0, m1):
        s = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(s) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(s) > abs(3 * m0):
            return 3 * m0
        return s

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def pchip_integral(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    """Exact integral over [a, b] (within [x0, x_end]) of the PCHIP interpolant through (x, y)."""
    d = pchip_slopes(x, y)
    total = 0.0
    for i in range(x.size - 1):
        x0, x1 = x[i], x[i + 1]
        lo, hi = max(a, x0), min(b, x1)
        if hi <= lo:
            continue
        h = x1 - x0
        m = (y[i + 1] - y[i]) / h
        c2 = (3 * m - 2 * d[i] - d[i + 1]) / h
        c3 = (d[i] + d[i + 1] - 2 * m) / (h * h)

        def prim(s, y0=y[i], d0=d[i], c2=c2, c3=c3):
            return y0 * s + d0 * s * s / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

        total += prim(hi - x0) - prim(lo - x0)
    return float(total)


def _mean_difference(x_ref, y_ref, x_test, y_test, what: str) -> float:
    lo = max(x_ref[0], x_test[0])
    hi = min(x_ref[-1], x_test[-1])
    if not hi > lo:
        raise RaveError(
            f"{what}: the curves do not overlap (reference {x_ref[0]:.6g}..{x_ref[-1]:.6g}, "
            f"test {x_test[0]:.6g}..{x_test[-1]:.6g})"
        )
    i_ref = pchip_integral(x_ref, y_ref, lo, hi)
    i_test = pchip_integral(x_test, y_test, lo, hi)
    return (i_test - i_ref) / (hi - lo)


def _log_rates(rates: Sequence[float], what: str) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64).reshape(-1)
    if r.size and not (r > 0).all():
        raise RaveError(f"{what}: rates must be > 0")
    return np.log10(r)


def bd_psnr(rates_ref: Sequence[float], psnr_ref: Sequence[float],
            rates_test: Sequence[float], psnr_test: Sequence[float]) -> float:
    """Mean PSNR difference (dB, test minus reference) over the overlapping log10-rate range (PCHIP)."""
    xr, yr = _prepare(_log_rates(rates_ref, "BD-PSNR reference"), psnr_ref, "BD-PSNR reference")
    xt, yt = _prepare(_log_rates(rates_test, "BD-PSNR test"), psnr_test, "BD-PSNR test")
    return float(_mean_difference(xr, yr, xt, yt, "BD-PSNR"))


def bd_rate(rates_ref: Sequence[float], psnr_ref: Sequence[float],
            rates_test: Sequence[float], psnr_test: Sequence[float]) -> float:
    """Mean rate difference (percent, test vs reference) at equal PSNR over the overlapping PSNR range (PCHIP).

    Each curve is fitted as log10(rate) against PSNR after sorting by PSNR (the usual practice; a curve whose
    PSNR is not monotone in rate is thereby treated as its PSNR-sorted version).
    """
    xr, yr = _prepare(psnr_ref, _log_rates(rates_ref, "BD-rate reference"), "BD-rate reference")
    xt, yt = _prepare(psnr_test, _log_rates(rates_test, "BD-rate test"), "BD-rate test")
    d = _mean_difference(xr, yr, xt, yt, "BD-rate")
    return float((10.0**d - 1.0) * 100.0)
