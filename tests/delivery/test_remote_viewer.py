"""rave-view's remote source: a stream on a local range server grows in the viewer as its chunks arrive;
selections become the loader's target; a cut connection leaves the last complete prefix on screen."""

from __future__ import annotations

import argparse
import time

import pytest

from rave_viewer.delivery.adapt import Target
from rave_viewer.viewer.remote import RemoteSource, open_remote, progress_line, remote_target
from rave_viewer.viewer.session import Session
from rave_viewer.viewer.sources import open_source

from delivery_helpers import _counts, _decoded, _ends, sent

FAST = dict(backoff=(0.01,), timeout=5.0)


def _until(cond, timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_selection_fetches_and_the_source_grows(stream_dir, serve):
    _, data, info = stream_dir
    ends, counts = _ends(info), _counts(info)
    s = serve()
    src = open_remote(s.url("scene.rave"), Target("count", counts[0]), use_manifest=False, **FAST)
    try:
        assert isinstance(src, RemoteSource) and src.n == info.n_gaussians and src.stops == counts
        assert src.n_loaded == counts[0] and src.modes == ("rate", "count") and src.stop_bytes == ends
        assert sent(s) == ends[0]
        session = Session(src, ("rate", float(ends[3])))  # a tab opened at a higher rate: fetches up to it
        assert session.selection().k == counts[3] and session.selection().nbytes == ends[3]
        assert _until(lambda: src.n_loaded == counts[3])
        assert sent(s) == ends[3]
        full = _decoded(data).gaussians
        assert src.gaussians.equal(full.prefix(counts[3]))
        session.set_target(float(ends[1]))  # the slider down: nothing is fetched or dropped
        time.sleep(0.3)
        assert sent(s) == ends[3] and src.n_loaded == counts[3]
        line = progress_line(src.loader.progress())
        assert f"{counts[3]:,} of {info.n_gaussians:,} Gaussians" in line and "\n" not in line
        with pytest.raises(Exception, match="only"):
            src.encode_prefix(counts[5])  # not arrived yet: one line
        assert src.encode_prefix(counts[2]) == _cut(data, counts[2])
    finally:
        src.close()


def _cut(data, k):
    from rave_viewer.codec import cut_stream

    return cut_stream(data, k)


def test_cut_connection_keeps_the_last_complete_prefix_displayed(stream_dir, serve):
    _, data, info = stream_dir
    ends, counts = _ends(info), _counts(info)
    s = serve(cut_at=ends[2] + 500)
    src = open_remote(s.url("scene.rave"), Target("full"), use_manifest=False, retries=0, **FAST)
    try:
        assert _until(lambda: src.loader.progress().state == "failed")
        assert _until(lambda: src.n_loaded == counts[2])
        time.sleep(0.2)
        assert src.n_loaded == counts[2] and src.gaussians.equal(_decoded(data).gaussians.prefix(counts[2]))
        assert "closed" in src.loader.progress().message
        Session(src, ("count", float(info.n_gaussians)))  # asking again resumes from the first missing byte
        assert _until(lambda: src.n_loaded == info.n_gaussians)
        assert sent(s) == len(data)
    finally:
        src.close()


def test_auto_start_and_cli_targets(stream_dir, serve):
    ns = argparse.Namespace(auto=2.0, rate=None, count=None, psnr=None)
    assert remote_target(ns) == Target("auto", 2.0)
    ns = argparse.Namespace(auto=None, rate="20KB", count=None, psnr=None)
    assert remote_target(ns) == Target("rate", 20_000.0)
    s = serve()
    src = open_source(s.url("scene.rave"))  # the sources.py hook: a URL opens remotely
    try:
        assert isinstance(src, RemoteSource) and src.kind == "rave" and "range requests" in src.note
    finally:
        src.close()


def test_viewer_app_renders_the_growing_prefix(stream_dir, serve):
    from rave_viewer.viewer.app import ViewerApp
    from rave_viewer.viewer.remote import attach

    _, data, info = stream_dir
    counts = _counts(info)
    s = serve(rate=len(data) / 1.5)  # the stream takes ~1.5 s
    src = open_remote(s.url("scene.rave"), Target("full"), use_manifest=False, **FAST)
    app = ViewerApp(src, port=0)
    try:
        attach(app, src)
        first = len(app.frames.gaussians)
        assert first < info.n_gaussians
        assert _until(lambda: len(app.frames.gaussians) == info.n_gaussians)
        assert first in counts
    finally:
        app.stop()
        src.close()


def test_auto_mode_tabs_follow_what_arrives_until_the_user_picks(stream_dir, serve):
    _, data, info = stream_dir
    counts = _counts(info)
    s = serve(rate=len(data) / 1.0)  # the whole stream in ~1 s: a 30 s budget takes all of it
    src = open_remote(s.url("scene.rave"), Target("auto", 30.0), use_manifest=False, **FAST)
    try:
        session = Session(src)  # a tab without a start target: the loader's plan
        assert session.selection().k in counts
        assert _until(lambda: src.n_loaded == info.n_gaussians)
        src.follow_auto(session)  # what the app's listener does after each growth
        assert session.selection().k == info.n_gaussians and src._auto  # still auto: not the user's choice
        session.set_target(float(_ends(info)[1]))  # the user moves the (rate) slider: auto mode ends there
        assert session.selection().k == counts[1]
        assert not src._auto and src.loader.target == Target("count", counts[1])
    finally:
        src.close()
