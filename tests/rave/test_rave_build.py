"""The RAVE pipeline on a tiny fitted scene: ranked order, levels, RD table, fine-tuning and ranking ablations."""

from __future__ import annotations

import torch

from rave_viewer.eval.bjontegaard import bd_psnr



def level_psnr(ckpt) -> list[float]:
    """PSNR of each level's prefix, read from the checkpoint's RD table."""
    idx = {c: i for i, c in enumerate(ckpt.rd["count"])}
    return [ckpt.rd["psnr"][idx[s]] for s in ckpt.level_sizes]


def test_order_is_a_permutation_whose_level_prefixes_are_the_levels(tiny_builder, ckpt_context):
    ck = ckpt_context
    n = len(ck.gaussians)
    assert torch.equal(torch.sort(ck.order).values, torch.arange(n))
    levels = tiny_builder.levels()
    for s in ck.level_sizes:
        assert set(ck.order[:s].tolist()) == set(levels.order[:s].tolist())
    # the ranked Gaussians are the fine-tuned input Gaussians in that order (positions barely move)
    assert torch.allclose(ck.gaussians.means, tiny_builder.gaussians.means[ck.order], atol=1e-2)
    # levels strictly nested, geometric-ish, finest = all
    assert ck.level_sizes[-1] == n and all(b > a for a, b in zip(ck.level_sizes, ck.level_sizes[1:]))
    assert abs(ck.level_sizes[0] - round(0.1 * n)) <= 1


def test_levels_rates_are_exact_prefix_sizes(ckpt_context):
    ck = ckpt_context
    enc = ck.encoder()
    for s, r in zip(ck.level_sizes, ck.level_rates):
        assert len(enc.encode(s)) == r
    for k, b in zip(ck.rd["count"][::7], ck.rd["bytes"][::7]):
        assert enc.size_of_prefix(k) == b


def test_rd_table_is_dense_and_monotone(ckpt_context):
    rd = ckpt_context.rd
    assert len(rd["count"]) >= 64
    assert all(b > a for a, b in zip(rd["count"], rd["count"][1:]))
    assert all(b > a for a, b in zip(rd["bytes"], rd["bytes"][1:]))
    ps = rd["psnr"]
    dips = [ps[i - 1] - ps[i] for i in range(1, len(ps))]
    print(f"\nRD context: {len(ps)} points, PSNR {ps[0]:.3f} -> {ps[-1]:.3f} dB, largest dip {max(dips):.4f} dB")
    assert max(dips) <= 0.05, f"PSNR dips by {max(dips):.3f} dB between neighbouring RD points"
    assert ps[-1] > ps[0] + 0.5


def test_stochastic_level_finetuning_raises_mean_level_psnr(tiny_dataset, tiny_model, tiny_builder, ckpt_context,
                                                            ckpt_nofinetune, builder_factory):
    ft, base = level_psnr(ckpt_context), level_psnr(ckpt_nofinetune)
    # control: the same number of QAT steps on the finest level only (plain fine-tuning), same levels
    b = builder_factory(tiny_dataset, tiny_model, level_sampling="finest")
    b._levels = tiny_builder.levels()
    plain = level_psnr(b.checkpoint())
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    print(f"\nlevel PSNR stochastic levels {[round(p, 2) for p in ft]} mean {mean(ft):.3f} dB"
          f"\nlevel PSNR finest only      {[round(p, 2) for p in plain]} mean {mean(plain):.3f} dB"
          f"\nlevel PSNR no fine-tuning   {[round(p, 2) for p in base]} mean {mean(base):.3f} dB")
    assert mean(ft) > mean(base) + 0.1
    assert mean(ft) > mean(plain) + 0.1  # not just more training: training every level is what helps
    assert ft[0] - base[0] > 0.1 and ft[0] - plain[0] > 0.1  # the coarsest level gains most


def test_context_ranking_at_least_as_good_as_global(tiny_builder_son, ckpt_context, ckpt_global):
    """The paper's Fig. 4 claim, checked with importance = sum of per-view gradient norms.

    On the trained demo scene the context-aware order beats the global one by +0.25 dB BD-PSNR with the default
    importance (norm of the summed gradient) and +0.31 dB with per-view norms (benchmarks/SELECTION.md). On a
    scene as small and under-fitted as this one, after fine-tuning the summed gradient nearly cancels across
    views and the default's difference is noise (both signs over seeds; printed below), while with per-view
    norms context beats global on 10 of 10 tiny builds. So the claim is asserted with per-view norms.
    """
    ctx = tiny_builder_son.checkpoint(ranking="context")
    glob = tiny_builder_son.checkpoint(ranking="global")
    # same levels and fine-tuned model: only the order inside the intervals differs (the bytes of a level differ
    # slightly: the Gaussians fall into other chunks)
    assert ctx.level_sizes == glob.level_sizes
    bd = bd_psnr(glob.rd["bytes"], glob.rd["psnr"], ctx.rd["bytes"], ctx.rd["psnr"])
    bd_default = bd_psnr(ckpt_global.rd["bytes"], ckpt_global.rd["psnr"], ckpt_context.rd["bytes"],
                         ckpt_context.rd["psnr"])
    print(f"\nBD-PSNR context vs global: {bd:+.4f} dB (sum_of_norms), {bd_default:+.4f} dB (default norm_of_sum)")
    assert bd >= 0.0


def test_build_records_stage_costs(ckpt_context, ckpt_global):
    st = ckpt_context.meta["stages"]
    assert set(st) == {"levels", "finetune", "ranking", "rates", "rd"}
    assert st["levels"]["renders"] == 7 * 14  # L-1 passes over 14 training views
    assert st["ranking"]["renders"] == 8 * 14  # context: one pass per level
    assert ckpt_global.meta["stages"]["ranking"]["renders"] == 14  # global: one pass
    assert st["finetune"]["renders"] == 150
    assert ckpt_context.meta["ranking"] == "context" and ckpt_global.meta["ranking"] == "global"


def test_naive_multi_anchor_snaps_to_levels(tiny_dataset, tiny_model):
    from rave_viewer.rave.build import Builder
    from rave_viewer.rave.config import BuildConfig

    ds = tiny_dataset
    cfg = BuildConfig(anchors=12, coarsest_fraction=0.1, steps=24, chunk_size=32, rd_points=64)
    ck = Builder(tiny_model, ds.train, ds.test, cfg, scene_scale=ds.scene_scale, progress=False).checkpoint()
    assert len(ck.level_sizes) == 12 and not ck.interpolate and ck.meta["ranking"] == "anchors"
    assert ck.meta["stages"]["ranking"]["renders"] == 0  # no interval re-ranking: never used when snapping
    r = ck.level_rates
    for i in range(11):
        mid = (r[i] + r[i + 1]) / 2
        assert ck.select(rate=mid) == ck.level_sizes[i]
    assert ck.rd["count"] == ck.level_sizes  # the RD table is the staircase of the levels


def test_variant_shares_the_levels_only_when_they_do_not_change(tiny_builder):
    """An ablation that changes fine-tuning reuses the levels (no new scoring passes); one that changes the
    level structure builds its own, nested and of the new sizes."""
    base = tiny_builder.levels()
    v = tiny_builder.variant(steps=7, level_sampling="finest")
    assert v.cfg.steps == 7 and v.levels() is base and v.units.renders == 0
    assert v.stages["levels"] == tiny_builder.stages["levels"]
    w = tiny_builder.variant(num_levels=3)
    lw = w.levels()
    assert lw is not base and len(w.sizes) == 3 and w.sizes[-1] == len(tiny_builder.gaussians)
    assert w.units.renders > 0 and "levels" in w.stages


def test_default_finetuning_length_is_the_rule_build_help_states(tiny_dataset, tiny_model, capsys):
    """10 % of the run record's steps, at least 300, 3000 without a record (a 1000-step model gets 300)."""
    from rave_viewer.cli import main
    from rave_viewer.commands.build import start_line
    from rave_viewer.rave.build import Builder
    from rave_viewer.rave.config import BuildConfig

    ds = tiny_dataset
    got = {ts: Builder(tiny_model, ds.train, ds.test, BuildConfig(), progress=False, train_steps=ts)
           for ts in (1000, 4999, 30000, None)}
    assert {ts: b.cfg.steps for ts, b in got.items()} == {1000: 300, 4999: 500, 30000: 3000, None: 3000}
    assert main(["build", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 10 % of the model's training steps from its run record scene.json beside scene.ply, " \
           "rounded, at least 300; 3000 without a record)" in text
    line = start_line(got[1000], None)
    assert line.startswith(f"building from {len(tiny_model):,} Gaussians and {len(ds.train)} views at "
                           f"{ds.train.width}x{ds.train.height} ({len(ds.test)} test views): 8 levels, ")
    assert "300 fine-tuning steps (10 % of the model's 1,000 training steps, at least 300)" in line
    assert "3,000 fine-tuning steps (no run record beside the model: the default)" in start_line(got[None], None)
    assert "no fine-tuning" in start_line(got[None].variant(finetune=False), None)
