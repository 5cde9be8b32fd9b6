"""Selection: Eq. 3 by hand, exact-size bound with a real encoder, the cap search, count/PSNR targets, rate parsing."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.rave.checkpoint import RaveCheckpoint, chunk_rate_table
from rave_viewer.rave.selection import (
    MAX_RATE,
    cap_probe_bound,
    parse_rate,
    parse_rate_target,
    select_by_count,
    select_by_psnr,
    select_by_rate,
    select_by_rate_cap,
    select_by_rate_exact,
)
from rave_viewer.scene.cameras import Cameras
from rave_viewer.scene.gaussians import Gaussians

SIZES = [100, 200, 400, 800]
RATES = [1000, 1800, 3400, 6600]


@pytest.mark.parametrize(
    "text,expected",
    [("2.5MB", 2_500_000), ("800KB", 800_000), ("123456", 123456), ("2.5MiB", 2_621_440), ("64KiB", 65536),
     ("1GB", 10**9), ("2.5 mb", 2_500_000), ("1e6", 10**6), ("1.5e3B", 1500), ("777b", 777), (4096, 4096),
     ("5 MB", 5_000_000), ("5mb", 5_000_000), (" 5 Mb ", 5_000_000), ("0.2MB", 200_000), ("0.29KB", 290),
     ("1.005KB", 1005), ("+3KB", 3000), ("1e15", MAX_RATE), ("1000TB", MAX_RATE), (2.9, 2), (MAX_RATE, MAX_RATE)],
)  # fmt: skip
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text,why",
    [("", "cannot read"), ("MB", "cannot read"), ("2.5XB", "cannot read"), ("1.2.3MB", "cannot read"),
     ("abc", "cannot read"), ("~5MB", "cannot read"), (True, "not a rate"),
     ("-1MB", "positive"), ("-5", "positive"), ("nan", "positive"), ("NaN MB", "positive"), ("inf", "positive"),
     ("-inf", "positive"), (float("nan"), "positive"), (float("inf"), "positive"), (-3.0, "positive"),
     ("0", "at least 1 byte"), ("0.5", "at least 1 byte"), ("1e-400", "at least 1 byte"), (0, "at least 1 byte"),
     (-7, "at least 1 byte"),
     ("1e400", "too large"), ("1e999999", "too large"), ("1e308GB", "too large"), ("1e9999999999999", "too large"),
     ("1.000000000000001e15", "too large"), ("1001TB", "too large"), ("9" * 5000, "too large"), (1e300, "too large"),
     (10**400, "too large")],
)  # fmt: skip
def test_parse_rate_rejects(text, why):
    with pytest.raises(RaveError) as e:
        parse_rate(text)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_parse_rate_target_tilde_means_nearest():
    assert parse_rate_target("~2.5MB") == (2_500_000, True)
    assert parse_rate_target(" ~ 800 KB") == (800_000, True)
    assert parse_rate_target("2.5MB") == (2_500_000, False) and parse_rate_target(4096) == (4096, False)
    with pytest.raises(RaveError, match="too large"):
        parse_rate_target("~1e400")


def test_eq3_by_hand():
    # R = 1000 + 0.5 * 800 -> halfway between levels 1 and 2 -> 100 + 0.5 * 100
    assert select_by_rate(SIZES, RATES, 1400) == 150
    assert select_by_rate(SIZES, RATES, 1000) == 100  # exactly R(G_1)
    assert select_by_rate(SIZES, RATES, 1800) == 200  # exactly R(G_2)
    assert select_by_rate(SIZES, RATES, 1799.9) == 199
    assert select_by_rate(SIZES, RATES, 3400 + 0.25 * 3200) == 500  # Eq. 3 in the last interval
    assert select_by_rate(SIZES, RATES, 6600) == 800  # top
    # naive multi-anchor: snap to the level at or below
    assert select_by_rate(SIZES, RATES, 3399, interpolate=False) == 200
    assert select_by_rate(SIZES, RATES, 3400, interpolate=False) == 400


@pytest.mark.parametrize("rate", [999, 0, -5, 6601, 1e12, float("nan"), float("inf")])
def test_out_of_range_rate_names_the_valid_range(rate):
    with pytest.raises(RaveError) as e:
        select_by_rate(SIZES, RATES, rate)
    msg = str(e.value)
    assert "1000..6600 bytes" in msg and "\n" not in msg
    if rate == 999:
        assert "below" in msg
    if rate == 6601:
        assert "above" in msg


def test_selection_is_monotone_in_rate():
    ks = [select_by_rate(SIZES, RATES, r) for r in range(1000, 6601, 7)]
    assert all(b >= a for a, b in zip(ks, ks[1:]))


def test_count_and_psnr():
    assert select_by_count(SIZES, 1) == 1 and select_by_count(SIZES, 800) == 800
    assert select_by_count(SIZES, 450, interpolate=False) == 400
    for bad in (0, 801, -1):
        with pytest.raises(RaveError, match="1..800"):
            select_by_count(SIZES, bad)
    rd = {"count": [100, 200, 300, 400], "psnr": [20.0, 22.0, 21.9, 24.0], "bytes": [1000, 1800, 2600, 3400]}
    assert select_by_psnr(rd, 20.0) == 100
    assert select_by_psnr(rd, 19.0) == 100  # below the first point: the first point reaches it
    assert select_by_psnr(rd, 21.0) == 150
    assert select_by_psnr(rd, 22.0) == 200
    # 23 dB: first reached at 400; the segment from the dip (300, 21.9) to (400, 24.0) crosses it at 352.4
    assert select_by_psnr(rd, 23.0) == math.ceil(300 + (23.0 - 21.9) / (24.0 - 21.9) * 100)
    assert select_by_psnr(rd, 24.0) == 400
    with pytest.raises(RaveError) as e:
        select_by_psnr(rd, 24.1)
    assert "above the best operating point: 24.000 dB at 400 Gaussians, 3,400 B" in str(e.value)
    ks = [select_by_psnr(rd, 19 + i * 0.01) for i in range(501)]
    assert all(b >= a for a, b in zip(ks, ks[1:]))


def test_psnr_on_a_curve_that_is_not_increasing():
    counts = [100, 200, 300, 400, 500]
    falling = {"count": counts, "psnr": [22.399, 22.1, 21.5, 21.0, 20.2]}
    for target in (22.399, 22.0, 21.0, 15.0):  # every reachable target: the first (smallest) point reaches it
        assert select_by_psnr(falling, target) == 100
    with pytest.raises(RaveError, match="above the best operating point: 22.399 dB at 100 Gaussians"):
        select_by_psnr(falling, 22.5)
    peaked = {"count": counts, "psnr": [20.0, 21.0, 25.0, 23.0, 22.0]}
    assert select_by_psnr(peaked, 22.0) == 225  # the rise from 21.0 (200) to 25.0 (300) crosses 22.0 at 225
    assert select_by_psnr(peaked, 24.99) <= 300 and select_by_psnr(peaked, 25.0) == 300
    with pytest.raises(RaveError, match="best operating point: 25.000 dB at 300 Gaussians"):
        select_by_psnr(peaked, 25.01)
    for rd in (falling, peaked):  # the answer: no earlier RD point reaches the target, the chosen one does
        for target in [20 + 0.05 * i for i in range(101)]:
            try:
                k = select_by_psnr(rd, target)
            except RaveError:
                assert target > max(rd["psnr"])
                continue
            j = next(i for i, p in enumerate(rd["psnr"]) if p >= target - 1e-9)
            assert (counts[j - 1] < k if j else True) and k <= counts[j]


def _random_ckpt(n=3000, chunk=64, seed=0) -> RaveCheckpoint:
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds

    g = Gaussians.random(n, sh_degree=1, seed=seed)
    # make chunks compress differently along the order (a systematic trend Eq. 3 cannot see)
    g.shN[: n // 2] = 0.0
    q = QuantConfig()
    bounds = scene_bounds(g)
    enc = ProgressiveEncoder(g, q, chunk_size=chunk, bounds=bounds, progress=False)
    sizes = [300, 700, 1500, n]
    cams = Cameras(torch.eye(4)[None], torch.eye(3)[None], 16, 16, None, [])
    ck = RaveCheckpoint(g, torch.arange(n), sizes, [enc.size_of_prefix(s) for s in sizes], q, bounds, "lzma", chunk,
                        {"count": [], "bytes": [], "psnr": [], "ssim": []}, cams, {})
    ck._encoder = enc
    ck.chunk_rates = chunk_rate_table(enc, n, chunk)
    return ck


def test_selected_prefix_size_within_one_chunk_of_target():
    ck = _random_ckpt()
    enc = ck.encoder()
    full = enc.chunk_sizes()
    one_chunk = max(full) + 12  # compressed chunk + its index entry
    r0, r1 = ck.rate_range()
    rng = random.Random(0)
    targets = [r0, r1, *ck.level_rates, *(rng.uniform(r0, r1) for _ in range(300))]
    worst_eq3 = 0
    for R in targets:
        k = ck.select(rate=R)
        s = enc.size_of_prefix(k)
        # the prefix's complete chunks fit in R; only its last, partial chunk may go beyond
        c = k // ck.chunk_size
        partial = s - ck.chunk_rates[c] if k % ck.chunk_size else 0
        assert s <= R + partial, (R, k, s)
        assert abs(s - R) <= one_chunk, (R, k, s)
        assert ck.level_sizes[0] <= k <= len(ck)
        worst_eq3 = max(worst_eq3, abs(enc.size_of_prefix(ck.select(rate=R, exact=False)) - R))
    # level rates are hit exactly
    for s, r in zip(ck.level_sizes, ck.level_rates):
        assert ck.select(rate=r) == s
    print(f"\nexact selection within one chunk ({one_chunk} B); pure Eq. 3 deviates up to {worst_eq3} B")


def test_exact_selection_by_hand():
    # 10 Gaussians, chunks of 4: boundaries at 0, 4, 8, 10 with sizes 100, 140, 200, 230
    sizes, rates = [2, 6, 10], [120, 170, 230]
    table = [100, 140, 200, 230]
    assert select_by_rate_exact(sizes, rates, 4, table, 120) == 2  # level 1 exactly
    assert select_by_rate_exact(sizes, rates, 4, table, 170) == 6  # level 2 exactly
    assert select_by_rate_exact(sizes, rates, 4, table, 155) == 4 + math.floor(15 / 60 * 4)
    assert select_by_rate_exact(sizes, rates, 4, table, 230) == 10
    assert select_by_rate_exact(sizes, rates, 4, table, 215) == 9
    assert select_by_rate_exact(sizes, rates, 4, table, 150, interpolate=False) == 2


def test_exact_selection_uses_level_points_as_knots():
    # level 1 (1 Gaussian, 150 B) lies inside the first chunk (0..4: 100..160 B): its own rate selects it exactly
    sizes, rates, table = [1, 6, 10], [150, 170, 230], [100, 160, 200, 230]
    assert select_by_rate_exact(sizes, rates, 4, table, 150) == 1
    assert select_by_rate_exact(sizes, rates, 4, table, 155) == 1 + math.floor(5 / 10 * 3)
    assert select_by_rate_exact(sizes, rates, 4, table, 170) == 6


def _noisy_sizes(n: int, chunk: int, seed: int) -> tuple[list[int], list[int], list[int], dict]:
    """A synthetic size function: ~10 B per Gaussian plus noise inside each chunk (so not monotone there),
    chunk boundaries strictly increasing; levels at a few prefixes. Returns sizes, rates, table, size_of."""
    rng = random.Random(seed)
    size = {0: 100}
    table = [100]
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        for k in range(a + 1, b + 1):
            size[k] = table[-1] + 12 + int(10 * (k - a) + rng.gauss(0, 15))
        size[b] = max(size[b], size[b - 1] - 5, table[-1] + 1)
        table.append(size[b])
    levels = sorted({n // 7, n // 3, n // 2 + 3, n})
    return levels, [size[k] for k in levels], table, size


def test_rate_cap_search_on_noisy_sizes():
    for seed, (n, chunk) in enumerate([(1000, 64), (777, 33), (5000, 4096), (300, 1)]):
        levels, rates, table, size = _noisy_sizes(n, chunk, seed)
        assert all(b > a for a, b in zip(rates, rates[1:]))
        calls: list[int] = []

        def size_of(k):
            calls.append(k)
            return size[k]

        rng = random.Random(seed)
        for R in [rates[0], rates[-1] - 1, *rates, *(rng.uniform(rates[0], rates[-1]) for _ in range(300))]:
            calls.clear()
            k = select_by_rate_cap(levels, rates, chunk, table, R, size_of)
            assert levels[0] <= k <= n and size[k] <= R  # fits
            assert k == n or size[k + 1] > R  # no Gaussian can be added
            first_over = next((i for i in range(levels[0], n + 1) if size[i] > R), n + 1)
            assert k >= first_over - 1  # never worse than walking up until the size first exceeds R
            assert len(calls) <= cap_probe_bound(chunk), (len(calls), chunk)
            assert all(k % chunk and k not in levels for k in calls)  # known sizes are never asked for
        assert select_by_rate_cap(levels, rates, chunk, table, rates[-1] * 5, size_of) == n
        with pytest.raises(RaveError, match="below the lowest operating point"):
            select_by_rate_cap(levels, rates, chunk, table, rates[0] - 1, size_of)
        assert select_by_rate_cap(levels, rates, chunk, table, rates[2] + 1, size_of, interpolate=False) == levels[2]


@pytest.mark.parametrize("rate", [999, 0, -5, float("nan")])
def test_rate_cap_below_range_names_the_valid_range(rate):
    table = [90, 1400, 2600, 6600]
    with pytest.raises(RaveError) as e:
        select_by_rate_cap(SIZES, RATES, 300, table, rate, lambda k: 0)
    msg = str(e.value)
    assert "below the lowest operating point" in msg and "1000..6600 bytes" in msg and "\n" not in msg


def test_rate_cap_with_a_real_encoder():
    ck = _random_ckpt()
    enc = ck.encoder()
    r0, r1 = ck.rate_range()
    rng = random.Random(1)
    for R in [r0, r1, *ck.level_rates, *(rng.uniform(r0, r1) for _ in range(60))]:
        k = ck.select(rate=R, cap=True)
        assert enc.size_of_prefix(k) <= R and (k == len(ck) or enc.size_of_prefix(k + 1) > R)
        assert k >= ck.select(rate=R, exact=False, cap=False) - ck.chunk_size  # near the Eq. 3 point
    assert ck.select(rate=f"~{r0 + 1000}", cap=True) == ck.select(rate=r0 + 1000)  # "~": nearest wins


def test_falling_levels_and_the_pareto_front():
    from types import SimpleNamespace

    from rave_viewer.commands.build import warn_if_falling
    from rave_viewer.rave.selection import falling_levels, pareto_levels

    sizes = [100, 200, 400, 800]
    rd = {"count": [100, 200, 400, 800], "psnr": [20.0, 22.4, 21.9, 21.1]}  # the capture of issue 14
    assert falling_levels(sizes, rd) == [(2, 22.4, 21.9), (3, 21.9, 21.1)]
    assert pareto_levels(sizes, rd) == [1, 2]
    rising = {"count": rd["count"], "psnr": [20.0, 21.0, 21.03, 22.0]}  # a 0.03 dB wobble is not a fall
    assert falling_levels(sizes, {**rising, "psnr": [20.0, 21.0, 20.98, 22.0]}) == []
    assert pareto_levels(sizes, rising) == [1, 2, 3, 4]
    ck = SimpleNamespace(level_sizes=sizes, level_rates=[1000, 2000, 4000, 8000], rd=rd)
    with pytest.warns(UserWarning) as rec:
        warn_if_falling(ck, "scene.ckpt")
    msg = str(rec[0].message)
    assert len(rec) == 1 and "\n" not in msg and "G_2->G_3 22.40->21.90 dB" in msg and "levels 1, 2" in msg
    assert "--rate 2000" in msg
    ck.rd = {"count": rd["count"], "psnr": rising["psnr"]}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_falling(ck, "scene.ckpt")  # a rising curve: silent
