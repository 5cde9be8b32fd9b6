"""The stages one by one: level fractions/sizes, importance, nested level construction, ranking, fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.rave.config import AUTHORS_LEVEL_WEIGHTS, BuildConfig, from_dict, load_config
from rave_viewer.rave.finetune import finetune, level_weights
from rave_viewer.rave.importance import importance
from rave_viewer.rave.levels import build_levels, level_fractions, level_sizes
from rave_viewer.rave.ranking import rank
from rave_viewer.rave.units import GaussianUnits, UnitModel


def test_level_fractions():
    fr = level_fractions(8, 0.1)
    assert len(fr) == 8 and fr[-1] == 1.0 and fr[0] == pytest.approx(0.1)
    ratios = [b / a for a, b in zip(fr, fr[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # geometric
    fr = level_fractions(5, delta_rate=0.5)
    assert fr == pytest.approx([1.5**-4, 1.5**-3, 1.5**-2, 1.5**-1, 1.0])
    assert level_fractions(fractions=[0.2, 0.5, 1]) == [0.2, 0.5, 1.0]
    for bad in ([0.5, 0.4, 1], [0.2, 0.9], [0, 1], [1]):
        with pytest.raises(RaveError):
            level_fractions(fractions=bad)


def test_level_sizes():
    assert level_sizes(1000, level_fractions(4, 0.125)) == [125, 250, 500, 1000]
    assert level_sizes(8, level_fractions(8, 0.01)) == list(range(1, 9))  # tiny: still strictly increasing
    s = level_sizes(50, level_fractions(8, 0.1))
    assert s[-1] == 50 and all(b > a for a, b in zip(s, s[1:])) and s[0] >= 1
    with pytest.raises(RaveError, match="cannot make 8"):
        level_sizes(7, level_fractions(8, 0.1))


def test_config_checks(tmp_path):
    assert BuildConfig().num_levels == 8
    cfg = BuildConfig().replace(ranking="global", steps=None)
    assert cfg.ranking == "global" and cfg.steps is None
    for bad, match in [({"nope": 1}, "unknown config key"), ({"ranking": "fancy"}, "ranking"),
                       ({"steps": -1}, "steps"), ({"steps": 1.5}, "integer"),
                       ({"fractions": [0.5, 0.2, 1]}, "fractions"),
                       ({"level_sampling": "authors", "num_levels": 4}, "authors"),
                       ({"quant": {"pos_bits": 40}}, "pos_bits"),
                       ({"importance_params": ["colour"]}, "importance_params")]:
        with pytest.raises(RaveError, match=match):
            from_dict(bad)
    p = tmp_path / "rave.yaml"
    p.write_text("rave:\n  num_levels: 6\n  ranking: global\n  quant: {pos_bits: 14}\n")
    cfg = load_config(p)
    assert cfg.num_levels == 6 and cfg.ranking == "global" and cfg.quant == {"pos_bits": 14}
    p.write_text("num_levels: [1\n")
    with pytest.raises(RaveError, match="YAML"):
        load_config(p)
    p.write_text("num_levels: one\n")
    with pytest.raises(RaveError, match=str(p).replace("\\", "\\\\")):
        load_config(p)


def test_level_weights():
    assert level_weights(4) == [0.25] * 4
    w = level_weights(8, "authors", AUTHORS_LEVEL_WEIGHTS)
    assert w[-1] == pytest.approx(0.32) and w[0] == pytest.approx(0.04) and sum(w) == pytest.approx(1)
    assert level_weights(3, "finest") == [0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def units(tiny_model):
    return GaussianUnits(tiny_model)


@pytest.fixture(scope="module")
def views(tiny_dataset):
    return tiny_dataset.train[[0, 5, 10]]


def test_units_protocol(units):
    assert isinstance(units, UnitModel)
    assert units.num_units == len(units.gaussians)
    sub = units.select(torch.tensor([3, 1, 2]))
    assert sub.num_units == 3 and torch.equal(sub.params()["means"][0], units.params()["means"][3])


def test_importance_subset_and_accumulation(units, views):
    n = units.num_units
    k = n // 3
    s_sum = importance(units, views, subset=k, accumulate="norm_of_sum", progress=False)
    assert s_sum.shape == (n,) and s_sum.dtype == torch.float64
    assert (s_sum[k:] == 0).all() and (s_sum[:k] > 0).sum() > k // 2
    s_norms = importance(units, views, subset=k, accumulate="sum_of_norms", progress=False)
    assert (s_norms + 1e-12 >= s_sum).all()  # triangle inequality: sum of norms >= norm of sum
    # batching views does not change the norm of the summed gradient
    s_b = importance(units, views, subset=k, accumulate="norm_of_sum", batch=3, progress=False)
    assert torch.allclose(s_b, s_sum, rtol=1e-4, atol=1e-9)
    # restricting the parameters restricts the score
    s_col = importance(units, views, subset=k, accumulate="norm_of_sum", param_names=["sh0"], progress=False)
    assert (s_col <= s_sum + 1e-12).all()
    # a bool mask equals the same index list
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:k] = True
    assert torch.allclose(importance(units, views, subset=mask, accumulate="norm_of_sum", progress=False), s_sum,
                          rtol=1e-5, atol=1e-12)


def test_iterative_levels_are_nested_and_scored_in_context(units, views):
    n = units.num_units
    sizes = level_sizes(n, level_fractions(3, 0.25))
    lv = build_levels(units, views, sizes, progress=False)
    assert torch.equal(torch.sort(lv.order).values, torch.arange(n)) and lv.passes == 2
    # G_2 = best of G_3 (all); G_1 = best of G_2 scored rendering G_2 only
    s3 = importance(units, views, progress=False)
    best = torch.sort(s3, descending=True, stable=True).indices
    assert set(lv.order[: sizes[1]].tolist()) == set(best[: sizes[1]].tolist())
    g2 = lv.order[: sizes[1]]
    s2 = importance(units, views, subset=g2, progress=False)
    top = g2[torch.sort(s2[g2], descending=True, stable=True).indices[: sizes[0]]]
    assert set(lv.order[: sizes[0]].tolist()) == set(top.tolist())
    one = build_levels(units, views, sizes, method="oneshot", progress=False)
    assert one.passes == 1 and torch.equal(one.order, torch.sort(s3, descending=True, stable=True).indices)


def test_ranking_permutes_only_inside_intervals(units, views):
    n = units.num_units
    sizes = level_sizes(n, level_fractions(3, 0.25))
    for mode, passes in (("context", 3), ("global", 1), ("keep", 0)):
        rk = rank(units, views, sizes, mode=mode, progress=False)
        assert rk.passes == passes
        assert torch.equal(torch.sort(rk.perm).values, torch.arange(n))
        for lo, hi in zip([0, *sizes], sizes):
            assert set(rk.perm[lo:hi].tolist()) == set(range(lo, hi))
    # context: C_2 sorted by the score rendering G_2
    rk = rank(units, views, sizes, mode="context", progress=False)
    s = importance(units, views, subset=sizes[1], progress=False)
    seg = s[rk.perm[sizes[0]:sizes[1]]]
    assert (seg[:-1] >= seg[1:]).all()


def test_finetune_samples_levels_and_keeps_units(units, views):
    sizes = level_sizes(units.num_units, level_fractions(3, 0.25))
    lrs = {"sh0": 2.5e-3, "opacities": 5e-2}
    tuned, stats = finetune(units, views, sizes, steps=12, lrs=lrs, weights=[0.0, 0.5, 0.5], seed=1, progress=False)
    assert stats["levels_drawn"][0] == 0 and sum(stats["levels_drawn"]) == 12
    assert tuned.num_units == units.num_units
    p0, p1 = units.params(), tuned.params()
    assert torch.equal(p0["means"], p1["means"])  # no lr -> frozen
    assert not torch.equal(p0["sh0"], p1["sh0"])
    assert not math.isnan(float(p1["sh0"].sum()))


def test_default_finetuning_length_follows_the_training(tmp_path, tiny_dataset, tiny_model):
    import json

    from rave_viewer.rave.build import DEFAULT_STEPS, Builder, training_steps

    ply = tmp_path / "scene.ply"
    assert training_steps(ply) is None
    (tmp_path / "scene.json").write_text(json.dumps({"steps_done": 7000, "config": {"steps": 7000}}))
    assert training_steps(ply) == 7000
    (tmp_path / "scene.json").write_text("{not json")
    assert training_steps(ply) is None
    ds = tiny_dataset
    steps = lambda **kw: Builder(tiny_model, ds.train, ds.test, progress=False, **kw).cfg.steps  # noqa: E731
    assert steps() == DEFAULT_STEPS == 3000
    assert steps(train_steps=30_000) == 3000
    assert steps(train_steps=1000) == 300  # at least min_steps
    assert steps(cfg=BuildConfig(steps=42), train_steps=30_000) == 42
