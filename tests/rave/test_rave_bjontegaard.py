"""PCHIP-based Bjøntegaard deltas: exact on lines, equal to scipy's PCHIP, shift/scale identities, errors.

(Hand-computed BD cases for the eval reports also live in tests/eval/test_bjontegaard.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from rave_viewer.bjontegaard import bd_psnr, bd_rate, pchip_integral, pchip_slopes
from rave_viewer.errors import RaveError

RATES = [1.2e5, 2.0e5, 3.1e5, 5.0e5, 8.2e5, 1.3e6]
PSNR = [24.1, 25.9, 27.0, 27.9, 28.4, 28.6]


def test_identical_curves_and_shifts():
    assert bd_psnr(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_psnr(RATES, PSNR, RATES, [p + 1 for p in PSNR]) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, [0.8 * r for r in RATES], PSNR) == pytest.approx(-20.0, abs=1e-9)
    # order of the points does not matter; duplicates are merged
    assert bd_psnr(RATES[::-1], PSNR[::-1], RATES + RATES[:1], PSNR + PSNR[:1]) == pytest.approx(0.0, abs=1e-12)


def test_pchip_is_exact_on_lines_and_monotone():
    x = np.array([0.0, 0.3, 1.0, 1.1, 2.5])
    y = 2 * x + 1
    assert pchip_integral(x, y, 0.2, 2.0) == pytest.approx((2.0**2 + 2.0) - (0.2**2 + 0.2))
    d = pchip_slopes(x, np.array([0.0, 1.0, 1.0, 2.0, 5.0]))
    assert d[2] == 0.0  # flat neighbour: no overshoot


def test_matches_scipy_pchip():
    interp = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = np.sort(rng.uniform(0, 10, 9))
        y = np.cumsum(rng.uniform(-0.5, 2.0, 9))
        a, b = sorted(rng.uniform(x[0], x[-1], 2))
        ref = interp.PchipInterpolator(x, y).integrate(a, b)
        assert pchip_integral(x, y, a, b) == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_errors():
    with pytest.raises(RaveError, match="do not overlap"):
        bd_psnr([1, 2], [20, 21], [3, 4], [20, 21])
    with pytest.raises(RaveError, match="at least 2"):
        bd_psnr([1], [20], [1, 2], [20, 21])
    with pytest.raises(RaveError, match="> 0"):
        bd_psnr([0, 2], [20, 21], [1, 2], [20, 21])
