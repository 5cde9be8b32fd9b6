"""How much work a ``rave build`` does when not told: views, image side and fine-tuning steps by scene size.

A build's time is about (scoring views x passes + fine-tuning steps) x the cost of one render, and on a CPU a
render of a large scene costs per Gaussian (projection, SH, sorting) more than per pixel
(benchmarks/BUILD.md: one 1M render at 512 px is 0.54 s forward + backward, at 128 px 0.32 s). So up to
:data:`REFERENCE_GAUSSIANS` a build uses every view and the full fine-tuning length; above it, with
k = N / REFERENCE_GAUSSIANS, it keeps

* views (scoring and fine-tuning): 56 / sqrt(k), rounded to 8, at least 16   (1M: 32; 6M: 16)
* fine-tuning steps (cap):          3000 / sqrt(k), rounded to 100, at least 500 (1M: 1500; 6M: 600)

so the work grows about like sqrt(N) x per-render cost instead of N x it (benchmarks/BUILD.md estimates the
1M build at these defaults; target: under 60 min on 2 cores). The side stays at most 512 px at every size: at
1M a render at 384 px would save ~20 % of its time over 512 px (per-Gaussian work dominates) and the 1M
estimate ~2 of ~24 min, while building at a lower side than the views are shown at cost demo_objects about
1 dB (benchmarks/BUILD.md). The side is never larger than
the photos (after the model's training downscale, which the run record beside the PLY says), nor than the
resolution the model was trained at when the record says it; a rig build without a record starts from
rig.default_size (sqrt(N), 128..512). Views are an evenly spaced subset of the training views (all of them
when there are fewer). ``--views``, ``--max-side`` and ``--steps`` override each choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Scenes up to this many Gaussians get every view, 512 px and the full fine-tuning length.
REFERENCE_GAUSSIANS = 250_000
MAX_SIDE = 512  # the default side of small scenes (and the cap of larger ones' sides)
VIEWS = 56  # scoring views of a rig build at the reference size (64 rig views, every 8th held out)
STEPS = 3000  # = build.DEFAULT_STEPS


def _k(n: int) -> float:
    return max(1.0, n / REFERENCE_GAUSSIANS)


def view_cap(n: int) -> int | None:
    """Most scoring / fine-tuning views for ``n`` Gaussians (None: no cap, every view)."""
    k = _k(n)
    return None if k == 1 else max(16, 8 * round(VIEWS / math.sqrt(k) / 8))


def rig_views(n: int) -> int:
    """Scoring views of a rig build: :data:`VIEWS` up to the reference size, :func:`view_cap` above."""
    return view_cap(n) or VIEWS


def side_cap(n: int) -> int:
    """Largest default image side (long side, px) for ``n`` Gaussians: :data:`MAX_SIDE` at every size (the
    module docstring says why it does not shrink with N)."""
    return MAX_SIDE


def steps_cap(n: int) -> int | None:
    """Most default fine-tuning steps for ``n`` Gaussians (None: no cap)."""
    k = _k(n)
    return None if k == 1 else max(500, 100 * round(STEPS / math.sqrt(k) / 100))


def subset(count: int, keep: int) -> list[int]:
    """``keep`` indices evenly spaced over ``range(count)`` (all of them when ``keep >= count``)."""
    if keep >= count:
        return list(range(count))
    return sorted({int(round(i * (count - 1) / max(keep - 1, 1))) for i in range(keep)})


@dataclass
class Effort:
    """The build's views, image side and steps, and why each was chosen (words for the start line)."""

    n: int
    views: int
    side: int
    steps: int | None
    why: dict = field(default_factory=dict)
    size: str = ""  # the model's size in words when its units are not Gaussians ("8,550 anchors (85,500 ...)")

    def line(self, finetune: bool = True) -> str:
        """``build: 1,000,000 Gaussians -> 32 views at 512 px, 1,500 steps (...)``: what a user can change."""
        steps = f"{self.steps:,} steps" if finetune and self.steps else "no fine-tuning"
        why = "; ".join(f"{k}: {v}" for k, v in self.why.items() if v)
        return (f"build: {self.size or f'{self.n:,} Gaussians'} -> {self.views} views at {self.side} px, {steps}"
                + (f" ({why})" if why else "") + " (--views/--max-side/--steps to change)")


def choose(n: int, *, available_views: int, photo_side: int | None, trained_side: int | None = None,
           views: int | None = None, max_side: int | None = None, steps: int | None = None,
           default_steps: int | None = None, rig_side: int | None = None) -> Effort:
    """Views, side and steps for a build of ``n`` Gaussians (module docstring); explicit values win.

    ``available_views``: training views there are; ``photo_side``: their long side (None for a rig, whose
    side is ``rig_side``, the rig's own default); ``trained_side``: the long side of the images the model
    was trained on (from its run record), if known; ``default_steps``: the record-based fine-tuning length.
    """
    why = {}
    if views is not None:
        v, why["views"] = min(views, available_views), "as asked"
    else:
        cap = view_cap(n)
        v = available_views if cap is None else min(cap, available_views)
        why["views"] = ("" if cap is None or v < cap else
                        f"{v} of {available_views}, by scene size" if v < available_views else "by scene size")
    if max_side is not None:
        side, why["side"] = max_side, "as asked"
    else:
        cands = {f"the {side_cap(n)} px cap": side_cap(n)}
        if trained_side:
            cands["the model's training resolution"] = trained_side
        if photo_side:
            cands["the photos"] = photo_side
        elif rig_side:
            cands["the rig default"] = rig_side
        reason, side = min(cands.items(), key=lambda kv: kv[1])
        why["side"] = "" if reason in ("the photos", "the rig default") else reason
    if steps is not None:
        st = steps
    elif default_steps is not None:
        cap = steps_cap(n)
        st = default_steps if cap is None else min(default_steps, cap)
        if st < default_steps:
            why["steps"] = f"capped by scene size from {default_steps:,}"
    else:
        st = None
    if photo_side is not None:
        side = min(side, photo_side)  # never upsample photos
    return Effort(n, v, int(side), st, why)
