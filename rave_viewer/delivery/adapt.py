"""What to fetch next: fixed targets (bytes, Gaussians, PSNR) and throughput-driven auto mode, as pure functions.

Every selectable point of a remote stream is a range prefix that ends on a chunk boundary: ``j`` chunks,
``ends[j-1]`` bytes, ``counts[j-1]`` Gaussians. Auto mode is DASH-like buffer-free rate adaptation for a single
download: the target is the largest prefix whose missing bytes arrive within the time left of the budget at
the measured throughput (times a safety factor), re-planned before every request and never below what is
already held. The throughput estimate is bytes over seconds of the last few requests (latency included), the
harmonic-style mean DASH players use: one fast burst cannot inflate it.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

SAFETY = 0.85  # auto mode plans with this share of the measured throughput
WINDOW = 4  # requests the throughput estimate covers


@dataclass(frozen=True)
class Target:
    """A start or slider target: mode rate (bytes, a cap) | count (Gaussians) | psnr (dB) | auto (seconds) | full."""

    mode: str
    value: float = 0.0

    def __post_init__(self):
        if self.mode not in ("rate", "count", "psnr", "auto", "full"):
            raise ValueError(f"unknown target mode {self.mode!r}")


def chunks_for(target: Target, ends: list[int], counts: list[int], rd: dict | None = None) -> int:
    """Chunks a fixed target needs (at least 1, at most all): rate = the largest prefix of at most that many
    bytes; count = the largest prefix of at most that many Gaussians; psnr = the smallest prefix whose
    (running-maximum) PSNR in ``rd`` reaches it; full = all."""
    m = len(ends)
    if m == 0:
        return 0
    if target.mode == "full":
        return m
    if target.mode == "rate":
        return min(max(bisect.bisect_right(ends, target.value), 1), m)
    if target.mode == "count":
        return min(max(bisect.bisect_right(counts, target.value), 1), m)
    if target.mode == "psnr":
        if rd is None or "psnr" not in rd:
            raise ValueError("a PSNR target needs an RD table (the stream's manifest has none)")
        best, run = float("-inf"), []
        for p in rd["psnr"]:
            best = max(best, float(p))
            run.append(best)
        i = next((i for i, p in enumerate(run) if p >= target.value), len(run) - 1)
        k = int(rd["count"][i])
        return min(max(bisect.bisect_left(counts, k) + 1, 1), m)
    raise ValueError("auto targets are planned by auto_chunks()")


def auto_chunks(have: int, held_bytes: int, ends: list[int], throughput: float | None, time_left: float) -> int:
    """Auto mode: the largest chunk count whose missing bytes arrive in ``time_left`` s at ``throughput`` B/s
    (x :data:`SAFETY`); never fewer than ``have`` complete chunks, and at least 1 (the first picture)."""
    m = len(ends)
    if m == 0:
        return 0
    floor = max(have, 1)
    if throughput is None or throughput <= 0 or time_left <= 0:
        return min(floor, m)
    budget = held_bytes + throughput * SAFETY * time_left
    return min(max(bisect.bisect_right(ends, budget), floor), m)


class Throughput:
    """Bytes per second over the last :data:`WINDOW` requests (sum of bytes / sum of seconds)."""

    def __init__(self, window: int = WINDOW):
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)

    def add(self, nbytes: int, seconds: float) -> None:
        if nbytes > 0 and seconds > 0:
            self._samples.append((int(nbytes), float(seconds)))

    @property
    def estimate(self) -> float | None:
        if not self._samples:
            return None
        b = sum(s[0] for s in self._samples)
        t = sum(s[1] for s in self._samples)
        return b / t if t > 0 else None


__all__ = ["SAFETY", "Target", "Throughput", "auto_chunks", "chunks_for"]
