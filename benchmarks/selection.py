"""Selecting operating points: speed of rate/count/PSNR -> prefix length, and quality of the ranked orders.

Usage::

    python benchmarks/selection.py                  # speed: 1,000,000 random Gaussians, real LZMA chunk sizes
    python benchmarks/selection.py --n 200000       # smaller
    python benchmarks/selection.py --synthetic      # skip compression: synthetic chunk sizes (same code path)
    python benchmarks/selection.py --ckpt scene.ckpt  # a real checkpoint from `rave build`
    python benchmarks/selection.py scaling          # select + exact bytes, 10k..1M, vs re-encoding with LZMA
    python benchmarks/selection.py ranking --seeds 3 5 7 11        # ranking ablation on fitted procedural scenes
    python benchmarks/selection.py ranking --ply scene.ply --data DATA_DIR   # ... on a trained scene
    python benchmarks/selection.py finetune --seeds 3 5 7 11       # level sampling ablation of the fine-tuning

Speed mode also checks, for the timed target rates, that the selected prefix's exact .rave size is within one
chunk of the target and never above it by more than the prefix's last, partial chunk (the acceptance bound),
and reports how far pure Eq. 3 (levels only) would be off.

Ranking mode builds, for each importance accumulation (sum_of_norms, norm_of_sum) and with/without fine-tuning,
the context-aware and the global order from the same levels and fine-tuned model, plus a random and a reversed
order inside each interval, and reports BD-PSNR between them (PCHIP, log rate) on the test views and on every
3rd training view, the largest PSNR dip along the RD curve, and the level PSNRs. Prints markdown.

Finetune mode compares, on the same levels, the mean test PSNR over the levels after fine-tuning with levels
drawn uniformly (paper), with the authors' weights, on the finest level only (plain QAT fine-tuning of the same
length: a control), and without fine-tuning.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402
from rave_viewer.rave.checkpoint import RaveCheckpoint, chunk_rate_table, load_checkpoint  # noqa: E402
from rave_viewer.rave.levels import level_fractions, level_sizes  # noqa: E402
from rave_viewer.scene.cameras import Cameras  # noqa: E402
from rave_viewer.scene.gaussians import Gaussians  # noqa: E402


def make_checkpoint(n: int, chunk: int, synthetic: bool) -> RaveCheckpoint:
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds

    g = Gaussians.random(n, sh_degree=3, seed=0)
    q = QuantConfig()
    bounds = scene_bounds(g)
    sizes = level_sizes(n, level_fractions(8, 0.1))
    if synthetic:  # ~ 40 B per Gaussian with chunk-to-chunk variation; no compression
        rng = random.Random(0)
        m = -(-n // chunk)
        table, s = [300 + 12 * m], 300 + 12 * m
        for j in range(m):
            cnt = min(chunk, n - j * chunk)
            s += int(cnt * rng.uniform(35, 45))
            table.append(s)
        enc = None
        def rate_of(k: int) -> int:
            j = k // chunk
            return table[j] + (table[min(j + 1, m)] - table[j]) * (k % chunk) // chunk
    else:
        enc = ProgressiveEncoder(g, q, chunk_size=chunk, bounds=bounds)
        t = time.perf_counter()
        table = chunk_rate_table(enc, n, chunk)
        print(f"(compressed {n:,} Gaussians in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        rate_of = enc.size_of_prefix
    cams = Cameras(torch.eye(4)[None], torch.eye(3)[None], 16, 16, None, [])
    counts = list(range(sizes[0], n + 1, max(1, (n - sizes[0]) // 127)))
    rd = {"count": counts, "bytes": [0] * len(counts), "psnr": [20 + 8 * (k / n) ** 0.3 for k in counts],
          "ssim": [0.8] * len(counts)}
    ck = RaveCheckpoint(g, torch.arange(n), sizes, [int(rate_of(s)) for s in sizes], q, bounds, "lzma", chunk, rd,
                        cams, {}, chunk_rates=table)
    ck._encoder = enc
    return ck


def timeit(fn, args_list) -> dict:
    for a in args_list[:50]:  # warm-up
        fn(a)
    ts = []
    for a in args_list:
        t = time.perf_counter_ns()
        fn(a)
        ts.append(time.perf_counter_ns() - t)
    ts.sort()
    return {"median_us": ts[len(ts) // 2] / 1e3, "p99_us": ts[int(len(ts) * 0.99)] / 1e3, "max_us": ts[-1] / 1e3}


# -- ranking ablation ------------------------------------------------------------------------------------
def _fit_procedural(seed: int, width: int, views: int, points: int, steps: int, work: Path):
    """A procedural 'ground' scene and a quick fit (Adam, no densification, gsplat's initial lrs)."""
    from rave_viewer import metrics
    from rave_viewer.render import render_cameras
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.procedural import generate_scene

    root = work / f"ground_{width}px_{views}v_seed{seed}"
    if not root.exists():
        generate_scene(root, preset="ground", n_views=views, width=width, height=width, n_points=points,
                       samples_per_pixel=2, seed=seed, progress=False)
    ds = load_dataset(root)
    pts, cols = ds.points, ds.point_colors
    d = torch.cdist(pts, pts)
    d.fill_diagonal_(float("inf"))
    knn = d.topk(3, largest=False).values.mean(dim=1).clamp_min(1e-4)
    n = len(pts)
    g = Gaussians(pts.clone(), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.log(knn)[:, None].repeat(1, 3),
                  torch.zeros(n), ((cols - 0.5) / 0.28209479177387814)[:, None, :], torch.zeros(n, 3, 3))
    params = {k: torch.nn.Parameter(v.clone()) for k, v in g.items()}
    lrs = {"means": 1.6e-4 * ds.scene_scale, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3,
           "shN": 2.5e-3 / 20}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k]} for k in params], eps=1e-15)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        c = ds.train[int(torch.randint(len(ds.train), (1,), generator=gen))]
        img, _, _ = render_cameras(Gaussians.from_dict(params), c)
        loss = metrics.rendering_loss(img, c.images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return Gaussians.from_dict({k: v.detach() for k, v in params.items()}), ds, root.name


def _ranking_rows(g, ds, name: str, args) -> list[str]:
    from rave_viewer.eval.bjontegaard import bd_psnr
    from rave_viewer.rave.build import Builder, rd_table
    from rave_viewer.rave.config import BuildConfig

    train_eval = ds.train[list(range(0, len(ds.train), 3))]

    def reorder(ck, perm):
        c = RaveCheckpoint(ck.gaussians.subset(perm), ck.order[perm], ck.level_sizes, ck.level_rates, ck.quant,
                           ck.bounds, ck.codec, ck.chunk_size, {}, ck.test_cameras, {})
        c.chunk_rates = chunk_rate_table(c.encoder(), len(c), c.chunk_size)
        return c

    def bd(a, b):
        return bd_psnr(a["bytes"], a["psnr"], b["bytes"], b["psnr"])

    rows = []
    for imp in args.importance:
        cfg = BuildConfig(num_levels=args.levels, coarsest_fraction=0.1, steps=args.steps, chunk_size=args.chunk,
                          rd_points=args.rd_points, importance=imp)
        b = Builder(g, ds.train, ds.test, cfg, scene_scale=ds.scene_scale, progress=False)
        for ft in (True, False):
            t0 = time.perf_counter()
            ctx, glob = b.checkpoint(ranking="context", finetune_=ft), b.checkpoint(ranking="global", finetune_=ft)
            edges = [0, *ctx.level_sizes]
            gen = torch.Generator().manual_seed(0)
            rnd = reorder(ctx, torch.cat([edges[i] + torch.randperm(edges[i + 1] - edges[i], generator=gen)
                                          for i in range(len(edges) - 1)]))
            rev = reorder(ctx, torch.cat([torch.arange(edges[i + 1] - 1, edges[i] - 1, -1)
                                          for i in range(len(edges) - 1)]))
            curves = {}
            for key, ck in (("ctx", ctx), ("glob", glob), ("rnd", rnd), ("rev", rev)):
                curves[key] = (ck.rd if key in ("ctx", "glob") else rd_table(ck, ds.test, args.rd_points,
                                                                           progress=False)[0],
                               rd_table(ck, train_eval, args.rd_points, progress=False)[0])
            cells = []
            for i in (0, 1):
                cells += [bd(curves["glob"][i], curves["ctx"][i]), bd(curves["rnd"][i], curves["ctx"][i]),
                          bd(curves["rnd"][i], curves["glob"][i]), bd(curves["rnd"][i], curves["rev"][i])]
            ps = ctx.rd["psnr"]
            dip = max(ps[j - 1] - ps[j] for j in range(1, len(ps)))
            lv = [ctx.rd["psnr"][ctx.rd["count"].index(s)] for s in ctx.level_sizes]
            rows.append(f"| {name} | {imp} | {'yes' if ft else 'no'} | " + " | ".join(f"{c:+.3f}" for c in cells)
                        + f" | {dip:.3f} | {sum(lv) / len(lv):.2f} ({lv[0]:.2f}..{lv[-1]:.2f}) |")
            print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return rows


def ranking_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="selection.py ranking", description="ranking ablation (see module doc)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 11])
    ap.add_argument("--width", type=int, default=40)
    ap.add_argument("--views", type=int, default=17)
    ap.add_argument("--points", type=int, default=1200)
    ap.add_argument("--fit-steps", type=int, default=300)
    ap.add_argument("--ply", help="a trained scene instead of fitted procedural ones (needs --data)")
    ap.add_argument("--data", help="its dataset folder")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--rd-points", type=int, default=64)
    ap.add_argument("--importance", nargs="+", default=["sum_of_norms", "norm_of_sum"])
    ap.add_argument("--work", default="/tmp/rave_selection_bench", help="where generated scenes are cached")
    args = ap.parse_args(argv)
    head = ("| scene | importance | fine-tuned | ctx−glob (test) | ctx−rnd (test) | glob−rnd (test) | rev−rnd (test) "
            "| ctx−glob (train) | ctx−rnd (train) | glob−rnd (train) | rev−rnd (train) | largest dip (ctx, test) "
            "| mean level PSNR (G_1..G_L) |")
    print(f"## Ranking ablation (BD-PSNR in dB, PCHIP in log rate; {args.levels} levels, {args.steps} fine-tuning "
          f"steps, chunks of {args.chunk}, {args.rd_points} target rates)\n")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    if args.ply:
        from rave_viewer.scene.datasets import load_dataset
        from rave_viewer.scene.ply import read_ply

        ds = load_dataset(args.data)
        for r in _ranking_rows(read_ply(args.ply), ds, Path(args.ply).name, args):
            print(r, flush=True)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        g, ds, name = _fit_procedural(seed, args.width, args.views, args.points, args.fit_steps, work)
        for r in _ranking_rows(g, ds, name, args):
            print(r, flush=True)
    return 0


def finetune_main(argv: list[str]) -> int:
    from rave_viewer.rave.build import Builder
    from rave_viewer.rave.config import BuildConfig

    ap = argparse.ArgumentParser(prog="selection.py finetune", description="level sampling ablation")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 11])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--work", default="/tmp/rave_selection_bench")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    modes = ("uniform", "authors", "finest", None)
    print(f"## Fine-tuning ablation: mean test PSNR over the 8 levels (dB), {args.steps} QAT steps\n")
    print("| scene | uniform (paper) | authors' weights | finest only (control) | no fine-tuning | "
          "G_1 uniform / finest / none |\n|---|---:|---:|---:|---:|---|")
    for seed in args.seeds:
        g, ds, name = _fit_procedural(seed, 40, 17, 1200, 300, work)
        levels, res = None, {}
        for m in modes:
            cfg = BuildConfig(steps=args.steps, chunk_size=32, rd_points=64, level_sampling=m or "uniform",
                              finetune=m is not None)
            b = Builder(g, ds.train, ds.test, cfg, scene_scale=ds.scene_scale, progress=False)
            if levels is not None:
                b._levels = levels  # same levels for every variant
            ck = b.checkpoint()
            levels = b.levels()
            res[m] = [ck.rd["psnr"][ck.rd["count"].index(s)] for s in ck.level_sizes]
        mean = {m: sum(v) / len(v) for m, v in res.items()}
        print(f"| {name} | {mean['uniform']:.2f} | {mean['authors']:.2f} | {mean['finest']:.2f} | {mean[None]:.2f} | "
              f"{res['uniform'][0]:.2f} / {res['finest'][0]:.2f} / {res[None][0]:.2f} |", flush=True)
    return 0


# -- scaling: selection + exact size vs re-encoding -------------------------------------------------------
def scaling_main(argv) -> int:
    """Selection + exact byte size on a freshly loaded .ckpt for growing N, against re-encoding with LZMA."""
    import tempfile

    from rave_viewer.codec import ProgressiveEncoder
    from rave_viewer.rave.checkpoint import save_checkpoint

    ap = argparse.ArgumentParser(prog="selection.py scaling", description=scaling_main.__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--targets", type=int, default=300, help="random target rates timed per size")
    ap.add_argument("--reencode", type=int, default=5, help="of those, how many are also re-encoded")
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        ck = make_checkpoint(n, args.chunk, synthetic=False)  # what `rave build` does once, at build time
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "scene.ckpt"
            save_checkpoint(ck, path)
            t = time.perf_counter()
            lk = load_checkpoint(path)  # cold: no chunk compressed, as the viewer / `rave encode` open it
            t_load = time.perf_counter() - t
        r0, r1 = lk.rate_range()
        rng = random.Random(n)
        rates = [rng.uniform(r0, r1) for _ in range(args.targets)]
        t = time.perf_counter()
        lk.prefix_bytes(lk.select(rate=rates[0]))  # first call also quantizes the scene once for the encoder
        t_first = time.perf_counter() - t
        sel = timeit(lambda r: lk.select(rate=r), rates * max(1, 10_000 // len(rates)))["median_us"]  # warm loop
        both = []
        for r in rates[1:]:
            t = time.perf_counter_ns()
            lk.prefix_bytes(lk.select(rate=r))
            both.append(time.perf_counter_ns() - t)
        re_t, exact = [], True
        grid = lk.encoder().cfg  # the stream's grid (SH ranges fitted to the whole scene), as the receiver has it
        for r in rates[1:1 + args.reencode]:
            k = lk.select(rate=r)
            t = time.perf_counter()
            size = ProgressiveEncoder(lk.gaussians.prefix(k), grid, codec=lk.codec, chunk_size=lk.chunk_size,
                                      bounds=lk.bounds, progress=False).size_of_prefix(k)
            re_t.append(time.perf_counter() - t)
            exact &= size == lk.prefix_bytes(k)
        med = statistics.median
        p99 = lambda xs: sorted(xs)[int(0.99 * (len(xs) - 1))]  # noqa: E731
        rows.append((n, t_load, t_first, sel, med(both) / 1e6, p99(both) / 1e6, med(re_t), exact))
        print(f"  {n:,}: select+size {med(both) / 1e6:.1f} ms, re-encode {med(re_t):.2f} s", file=sys.stderr)
    print(f"## Selection + exact size vs re-encoding (LZMA)\n\n{machine_line()}; chunks of {args.chunk}; random "
          f"Gaussians (SH 3); {args.targets - 1} random target rates per size, {args.reencode} of them re-encoded.\n")
    print("| Gaussians | load .ckpt | first call (quantizes once) | `select(rate=R)` median | select + exact bytes "
          "median / p99 | re-encode the prefix (LZMA) median | ratio | sizes equal |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, tl, tf, ts, tb, tb99, tr, ok in rows:
        print(f"| {n:,} | {tl:.2f} s | {tf:.2f} s | {ts:.1f} µs | {tb:.1f} / {tb99:.1f} ms | {tr:.2f} s | "
              f"{tr / (tb / 1e3):,.0f}x | {'yes' if ok else 'NO'} |")
    return 0 if all(r[-1] for r in rows) else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "scaling":
        return scaling_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "ranking":
        return ranking_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "finetune":
        return finetune_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--ckpt", help="benchmark a real checkpoint instead of random Gaussians")
    ap.add_argument("--check", type=int, default=300, help="targets whose exact size is verified (compresses one "
                    "partial chunk each)")
    args = ap.parse_args()

    if args.ckpt:
        ck = load_checkpoint(args.ckpt)
        what = f"{args.ckpt} ({len(ck):,} Gaussians, chunks of {ck.chunk_size})"
    else:
        ck = make_checkpoint(args.n, args.chunk, args.synthetic)
        what = (f"{args.n:,} random Gaussians (SH 3), chunks of {args.chunk}, "
                f"{'synthetic' if args.synthetic else 'real LZMA'} chunk sizes")
    r0, r1 = ck.rate_range()
    rng = random.Random(1)
    rates = [rng.uniform(r0, r1) for _ in range(args.targets)]
    counts = [rng.randint(1, len(ck)) for _ in range(args.targets)]
    p_lo, p_hi = ck.rd["psnr"][0], max(ck.rd["psnr"])
    psnrs = [rng.uniform(p_lo, p_hi) for _ in range(args.targets)]
    rows = [
        ("ckpt.select(rate=R) (exact: Eq. 3 between chunk boundaries)", timeit(lambda r: ck.select(rate=r), rates)),
        ("ckpt.select(rate=R, exact=False) (pure Eq. 3 on the levels)",
         timeit(lambda r: ck.select(rate=r, exact=False), rates)),
        ("ckpt.select(rate='2.5MB'-style string)", timeit(lambda r: ck.select(rate=f"{r / 1e6:.6f}MB"), rates)),
        ("ckpt.select(count=k)", timeit(lambda k: ck.select(count=k), counts)),
        ("ckpt.select(psnr=p)", timeit(lambda p: ck.select(psnr=p), psnrs)),
        ("ckpt.level_of(k)", timeit(ck.level_of, counts)),
    ]
    print(f"## Selection speed\n\n{what}; {args.targets:,} random targets per row; {machine_line()}\n")
    print("| operation | median | p99 | max |\n|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t['median_us']:.1f} µs | {t['p99_us']:.1f} µs | {t['max_us']:.1f} µs |")

    if ck._encoder is not None or args.ckpt:
        enc = ck.encoder()
        one_chunk = max(b - a for a, b in zip(ck.chunk_rates, ck.chunk_rates[1:]))
        worst_above = worst_abs = worst_eq3 = 0
        ok = True
        for r in rates[: args.check]:
            k = ck.select(rate=r)
            s = enc.size_of_prefix(k)
            partial = s - ck.chunk_rates[k // ck.chunk_size] if k % ck.chunk_size else 0
            ok &= s <= r + partial and abs(s - r) <= one_chunk
            worst_above = max(worst_above, s - r)
            worst_abs = max(worst_abs, abs(s - r))
            worst_eq3 = max(worst_eq3, abs(enc.size_of_prefix(ck.select(rate=r, exact=False)) - r))
        print(f"\nExact sizes of {args.check} selected prefixes: bound {'holds' if ok else 'VIOLATED'} "
              f"(largest chunk incl. index entry {one_chunk:,} B; worst |size - R| {worst_abs:,.0f} B, "
              f"worst size - R {worst_above:,.0f} B); pure Eq. 3 on the levels would be off by up to "
              f"{worst_eq3:,.0f} B.")
    med = statistics.median([t["median_us"] for _, t in rows[:2]])
    print(f"\nGoal < 1 ms per selection: {'met' if med < 1000 else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
