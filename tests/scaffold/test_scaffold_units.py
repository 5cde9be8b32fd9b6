"""ScaffoldUnits: anchors as RAVE units, scored, levelled, ranked and fine-tuned by the unmodified RAVE core."""

from __future__ import annotations

import pytest
import torch

from rave_viewer import metrics
from rave_viewer.rave.finetune import finetune
from rave_viewer.rave.importance import importance
from rave_viewer.rave.levels import build_levels, level_fractions, level_sizes
from rave_viewer.rave.ranking import rank
from rave_viewer.rave.units import UnitModel
from rave_viewer.scaffold.model import ANCHOR_FIELDS
from rave_viewer.scaffold.units import ScaffoldUnits


@pytest.fixture
def units(trained):
    return ScaffoldUnits(trained.model, backend="cpu")


def _psnr(u, cams, subset) -> float:
    with torch.no_grad():
        return metrics.mean(metrics.psnr(u.render(cams, subset).clamp(0, 1), cams.images))


def test_it_is_a_unit_model(units, trained):
    assert isinstance(units, UnitModel)
    assert units.num_units == len(trained.model)
    p = units.params()
    assert set(p) == set(ANCHOR_FIELDS) and all(t.shape[0] == units.num_units for t in p.values())
    idx = torch.tensor([5, 1, 3])
    sel = units.select(idx)
    assert sel.num_units == 3 and torch.equal(sel.params()["anchor_feat"], p["anchor_feat"][idx])
    assert sel.mlps is units.mlps and not any(w.requires_grad for w in units.mlps.parameters())
    assert units.with_params({k: v.clone() for k, v in p.items()}).num_units == units.num_units


@pytest.mark.parametrize("kind", ["index", "mask", "prefix"])
def test_subset_rendering_gives_zero_gradient_outside(units, scaffold_dataset, kind, single_thread):
    n = units.num_units
    g = torch.Generator().manual_seed(0)
    inside = torch.zeros(n, dtype=torch.bool)
    if kind == "prefix":
        subset = n // 3
        inside[:subset] = True
    else:
        idx = torch.randperm(n, generator=g)[: n // 3]
        inside[idx] = True
        subset = idx if kind == "index" else inside
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in units.params().items()}
    cams = scaffold_dataset.train[[0, 5]]
    img = units.render(cams, subset, params=leaves)
    loss = metrics.rendering_loss(img, cams.images)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    for name, gr in zip(leaves, grads):
        assert gr is not None, name
        flat = gr.reshape(n, -1)
        assert torch.count_nonzero(flat[~inside]) == 0, name
    feat = grads[list(leaves).index("anchor_feat")].reshape(n, -1)
    assert torch.count_nonzero(feat[inside].abs().sum(dim=1)) > inside.sum() // 4  # most seen anchors learn


def test_importance_scores_are_the_feature_gradient_norm(units, scaffold_dataset, single_thread):
    cams = scaffold_dataset.train
    n = units.num_units
    sub = torch.arange(0, n, 2)
    s = importance(units, cams, subset=sub, progress=False)
    assert s.shape == (n,) and s.dtype == torch.float64
    out = torch.ones(n, dtype=torch.bool)
    out[sub] = False
    assert torch.count_nonzero(s[out]) == 0 and torch.count_nonzero(s[sub]) > len(sub) // 2
    # by hand: the norm of the feature gradient summed over the views (the authors' score)
    leaves = {k: v.detach().clone().requires_grad_(k == "anchor_feat") for k, v in units.params().items()}
    from rave_viewer.rave.importance import view_losses

    total = sum(view_losses(units.render(cams[i], sub, params=leaves), cams[i].images).sum() for i in range(len(cams)))
    (gf,) = torch.autograd.grad(total, [leaves["anchor_feat"]])
    assert torch.allclose(s, gf.double().norm(dim=1), rtol=1e-4, atol=1e-9)
    every = ScaffoldUnits(units.model(), backend="cpu", score_params=None)
    s_all = importance(every, cams, subset=sub, progress=False)
    assert bool((s_all >= s - 1e-9).all()) and bool((s_all > s).any())


def test_core_levels_ranking_and_finetuning_on_anchors(units, scaffold_dataset, single_thread):
    train, test = scaffold_dataset.train, scaffold_dataset.test
    n = units.num_units
    sizes = level_sizes(n, level_fractions(4, 0.25))
    lv = build_levels(units, train, sizes, progress=False)
    assert lv.passes == 3 and sorted(lv.order.tolist()) == list(range(n))
    ordered = units.select(lv.order)
    rk = rank(ordered, train, sizes, progress=False)
    bounds = [0, *sizes]
    for lo, hi in zip(bounds, bounds[1:]):  # ranking only permutes inside each interval: levels stay nested
        assert sorted(rk.perm[lo:hi].tolist()) == list(range(lo, hi))
    ranked = ordered.select(rk.perm)
    psnr = [_psnr(ranked, test, s) for s in sizes]
    assert all(b > a - 0.05 for a, b in zip(psnr, psnr[1:])), psnr  # more anchors, no worse picture
    g = torch.Generator().manual_seed(0)
    shuffled = units.select(torch.randperm(n, generator=g))
    assert psnr[0] > _psnr(shuffled, test, sizes[0]) + 2.0, psnr  # scored anchors beat a random quarter
    before = {k: v.clone() for k, v in ranked.params().items()}
    mlp_before = [w.clone() for w in ranked.mlps.parameters()]
    tuned, stats = finetune(ranked, train, sizes, steps=12, lrs={"anchor_feat": 1e-3, "offset": 1e-4}, progress=False)
    assert isinstance(tuned, ScaffoldUnits) and sum(stats["levels_drawn"]) == 12
    after = tuned.params()
    assert not torch.equal(after["anchor_feat"], before["anchor_feat"])
    assert torch.equal(after["scaling"], before["scaling"]) and torch.equal(after["anchor"], before["anchor"])
    assert all(torch.equal(a, b) for a, b in zip(tuned.mlps.parameters(), mlp_before))  # shared MLPs stay frozen


def test_transform_sees_the_selected_anchor_parameters(units, scaffold_dataset):
    seen = {}

    def fp16(p):
        seen["n"] = p["anchor"].shape[0]
        return {k: v.half().float() for k, v in p.items()}

    with torch.no_grad():
        img = units.render(scaffold_dataset.test[0], 50, transform=fp16)
        ref = units.render(scaffold_dataset.test[0], 50)
    assert seen["n"] == 50 and img.shape == ref.shape
    assert (img - ref).abs().max() < 0.05


def test_fake_quantized_anchors_render_close_and_pass_gradients(units, scaffold_dataset, single_thread):
    from rave_viewer.scaffold.qat import fake_quantize_anchors

    p = {k: v.detach().clone().requires_grad_(True) for k, v in units.params().items()}
    q = fake_quantize_anchors(p)
    feat = q["anchor_feat"].detach()
    for c in range(feat.shape[1]):  # at most 256 distinct values per feature channel
        assert torch.unique(feat[:, c]).numel() <= 256
    assert torch.equal(q["anchor"].detach(), p["anchor"].detach().half().float())
    (g,) = torch.autograd.grad((q["anchor_feat"] * 3).sum(), [p["anchor_feat"]])
    assert torch.equal(g, torch.full_like(g, 3.0))  # straight-through
    cams = scaffold_dataset.test
    with torch.no_grad():
        full = metrics.mean(metrics.psnr(units.render(cams).clamp(0, 1), cams.images))
        fq = metrics.mean(metrics.psnr(units.render(cams, transform=fake_quantize_anchors).clamp(0, 1), cams.images))
    assert fq > full - 0.5, (full, fq)  # 8-bit features and fp16 geometry cost little
