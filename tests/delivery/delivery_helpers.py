"""Helpers of the delivery tests: chunk offsets of a stream, quiet decoding, the server's settled byte count."""

from __future__ import annotations

import time
import warnings

from rave_viewer.codec import decode


def _ends(info):
    return [c.offset + c.length for c in info.chunks]


def _counts(info):
    out, t = [], 0
    for c in info.chunks:
        t += c.count
        out.append(t)
    return out


def sent(s, path="/scene.rave", settle=1.0):
    """Bytes the server has sent for ``path``, once its count stopped changing (it counts after each write)."""
    last, t0 = -1, time.monotonic()
    while time.monotonic() - t0 < settle:
        now = s.stats.bytes(path)
        if now == last:
            return now
        last = now
        time.sleep(0.05)
    return last


def _decoded(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode(data)
