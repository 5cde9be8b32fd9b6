"""Selection: Eq. 3 by hand, exact-size bound with a real encoder, count/PSNR targets, rate parsing, ranges."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.rave.checkpoint import RaveCheckpoint, chunk_rate_table
from rave_viewer.rave.selection import (
    parse_rate,
    select_by_count,
    select_by_psnr,
    select_by_rate,
    select_by_rate_exact,
)
from rave_viewer.scene.cameras import Cameras
from rave_viewer.scene.gaussians import Gaussians

SIZES = [100, 200, 400, 800]
RATES = [1000, 1800, 3400, 6600]


@pytest.mark.parametrize(
    "text,expected",
    [("2.5MB", 2_500_000), ("800KB", 800_000), ("123456", 123456), ("2.5MiB", 2_621_440), ("64KiB", 65536),
     ("1GB", 10**9), ("2.5 mb", 2_500_000), ("1e6", 10**6), ("1.5e3B", 1500), ("777b", 777), (4096, 4096)],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "0", "2.5XB", "1.2.3MB", "nan", "inf", "abc", True])
def test_parse_rate_rejects(text):
    with pytest.raises(RaveError):
        parse_rate(text)


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
    rd = {"count": [100, 200, 300, 400], "psnr": [20.0, 22.0, 21.9, 24.0]}  # one dip, made monotone
    assert select_by_psnr(rd, 20.0) == 100
    assert select_by_psnr(rd, 21.0) == 150
    assert select_by_psnr(rd, 22.0) == 200
    assert select_by_psnr(rd, 23.0) == 350  # between 22.0 (running max at 300) and 24.0 at 400
    assert select_by_psnr(rd, 24.0) == 400
    for bad in (19.9, 24.1):
        with pytest.raises(RaveError, match="20.000-24.000 dB"):
            select_by_psnr(rd, bad)
    ks = [select_by_psnr(rd, 20 + i * 0.01) for i in range(401)]
    assert all(b >= a for a, b in zip(ks, ks[1:]))


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
