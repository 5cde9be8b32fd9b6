"""Bjøntegaard deltas: hand-computed cases, the PCHIP fit (exact on lines, equal to scipy), and eval.compare."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from rave_viewer.eval.bjontegaard import bd_psnr, bd_rate, pchip_integral, pchip_slopes
from rave_viewer.errors import RaveError
from rave_viewer.eval import RDCurve, bd, bd_pairs, bd_table_text

# A concave (saturating) RD curve, like a real one: PSNR rises fast at low rates then flattens.
RATES = [10_000, 18_000, 40_000, 75_000, 160_000, 300_000]
PSNR = [24.0, 26.1, 28.0, 29.2, 30.1, 30.5]


def test_identical_curves_give_zero():
    assert bd_psnr(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-10)


def test_shift_by_one_db_gives_one_db():
    # The PCHIP of y + 1 is the PCHIP of y plus 1, for any curve shape: exactly +1 dB (and -1 reversed).
    up = [p + 1.0 for p in PSNR]
    assert bd_psnr(RATES, PSNR, RATES, up) == pytest.approx(1.0, abs=1e-12)
    assert bd_psnr(RATES, up, RATES, PSNR) == pytest.approx(-1.0, abs=1e-12)


def test_point_order_and_duplicates_do_not_matter():
    assert bd_psnr(RATES[::-1], PSNR[::-1], RATES + RATES[:1], PSNR + PSNR[:1]) == pytest.approx(0.0, abs=1e-12)


def test_pchip_is_exact_on_lines_and_never_overshoots():
    x = np.array([0.0, 0.3, 1.0, 1.1, 2.5])
    assert pchip_integral(x, 2 * x + 1, 0.2, 2.0) == pytest.approx((2.0**2 + 2.0) - (0.2**2 + 0.2))
    assert pchip_slopes(x, np.array([0.0, 1.0, 1.0, 2.0, 5.0]))[2] == 0.0  # flat neighbour: slope 0


def test_pchip_integral_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = np.sort(rng.uniform(0, 10, 9))
        y = np.cumsum(rng.uniform(-0.5, 2.0, 9))
        a, b = sorted(rng.uniform(x[0], x[-1], 2))
        assert pchip_integral(x, y, a, b) == pytest.approx(PchipInterpolator(x, y).integrate(a, b), rel=1e-10,
                                                           abs=1e-10)


def test_rate_scaled_curve_gives_expected_bd_rate():
    # Same PSNR at s times the bytes: log-rate shifted by log10(s) everywhere -> BD-rate exactly (s - 1) * 100 %.
    for s in (0.8, 1.25, 2.0):
        scaled = [r * s for r in RATES]
        assert bd_rate(RATES, PSNR, scaled, PSNR) == pytest.approx((s - 1.0) * 100.0, abs=1e-9)


def test_linear_curves_hand_computed():
    # PSNR = a + b * log10(rate): a +1 dB shift is the same curve at 10^(-1/b) times the rate.
    b = 5.0
    rates = [1e3, 1e4, 1e5, 1e6]
    ref = [30 + b * math.log10(r / 1e3) for r in rates]
    test = [p + 1.0 for p in ref]
    assert bd_psnr(rates, ref, rates, test) == pytest.approx(1.0, abs=1e-12)
    assert bd_rate(rates, ref, rates, test) == pytest.approx((10 ** (-1 / b) - 1) * 100, abs=1e-9)  # -36.90 %
    # doubling the bytes of a line of slope b costs b*log10(2) dB at equal rate, over the overlap only
    doubled = [r * 2 for r in rates]
    assert bd_psnr(rates, ref, doubled, ref) == pytest.approx(-b * math.log10(2), abs=1e-9)


def test_partial_overlap_uses_common_range_and_disjoint_curves_fail():
    rates = [1e3, 1e4, 1e5, 1e6]
    line = lambda rs: [20 + 3 * math.log10(r) for r in rs]  # noqa: E731
    hi = [1e4, 1e5, 1e6, 1e7]
    assert bd_psnr(rates, line(rates), hi, line(hi)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(RaveError, match="do not overlap"):
        bd_psnr([1, 2], [1, 2], [3, 4], [1, 2])
    with pytest.raises(RaveError, match="at least 2"):
        bd_psnr([1], [20], [1, 2], [20, 21])


def _curve(label, rates, psnr, continuous=True):
    return RDCurve(label, list(range(1, len(rates) + 1)), [int(r) for r in rates], list(psnr),
                   [0.9] * len(rates), continuous)


def test_compare_wrapper_signs_and_table():
    ref = _curve("ref", RATES, PSNR)
    better = _curve("better", RATES, [p + 1.0 for p in PSNR], continuous=False)
    smaller = _curve("smaller", [r // 2 for r in RATES], PSNR)
    r1, r2 = bd(ref, better), bd(ref, smaller)
    assert r1.bd_psnr_db == pytest.approx(1.0, abs=1e-9) and r1.bd_rate_pct < 0
    assert r2.bd_rate_pct == pytest.approx(-50.0, abs=0.01) and r2.bd_psnr_db > 0
    rows = bd_pairs([ref, better, smaller])
    assert [(r.ref, r.test) for r in rows] == [("ref", "better"), ("ref", "smaller"), ("better", "smaller")]
    assert [r.test for r in bd_pairs([ref, better, smaller], ref=0)] == ["better", "smaller"]
    text = bd_table_text(rows)
    assert "+1.000" in text and "-50.00" in text


def test_compare_reports_disjoint_pair_instead_of_failing():
    a = _curve("a", [1000, 2000], [20, 21])
    b = _curve("b", [5000, 9000], [22, 23])
    r = bd(a, b)
    assert r.bd_psnr_db is None and "overlap" in r.why
    assert "n/a" in bd_table_text([r])
