"""The range loader against a local range server that counts the bytes it sent: exact prefixes, raising and
lowering targets, hosts that ignore Range, cut connections, corrupt chunks, redirects, timeouts, auto mode."""

from __future__ import annotations

import time

import pytest

from rave_viewer.delivery.adapt import Target, auto_chunks
from rave_viewer.delivery.http import FetchError, fetch_range
from rave_viewer.delivery.loader import PROBE, StreamLoader, load
from rave_viewer.errors import RaveError

from delivery_helpers import _counts, _decoded, _ends, sent

FAST = dict(backoff=(0.01,), timeout=5.0)


def test_fetches_exactly_the_selected_prefix(stream_dir, serve):
    _, data, info = stream_dir
    ends = _ends(info)
    s = serve()
    got, p = load(s.url("scene.rave"), Target("rate", ends[2] + 10), use_manifest=False, **FAST)
    assert sent(s) == ends[2] == len(got)  # header, index and 3 chunks, not a byte more
    assert got == data[: ends[2]] and p.chunks == 3 and p.gaussians == _counts(info)[2] and p.wasted == 0
    assert [r[1] for r in s.stats.requests] == [f"bytes=0-{PROBE - 1}", f"bytes={PROBE}-{ends[2] - 1}"]
    full = _decoded(data).gaussians
    assert _decoded(got).gaussians.equal(full.prefix(p.gaussians))  # the prefix decodes to the first chunks


def test_raising_fetches_only_the_difference_and_lowering_nothing(stream_dir, serve):
    _, data, info = stream_dir
    ends, counts = _ends(info), _counts(info)
    s = serve()
    ld = StreamLoader(s.url("scene.rave"), Target("count", counts[0]), use_manifest=False, **FAST).start()
    try:
        assert ld.wait(timeout=20)
        assert sent(s) == ends[0]
        ld.set_target(Target("count", counts[3]))
        assert ld.wait(timeout=20) and ld.progress().chunks == 4
        assert sent(s) == ends[3]  # only chunks 1..3 were added
        assert all(not r[1].startswith("bytes=0-") for r in s.stats.requests[2:])
        ld.set_target(Target("count", counts[1]))  # lower: keeps everything, fetches nothing
        time.sleep(0.3)
        assert sent(s) == ends[3] and ld.progress().chunks == 4
        ld.set_target(Target("full"))
        assert ld.wait(timeout=20) and ld.progress().state in ("done", "fetching")
        prefix, n = ld.complete_prefix()
        assert prefix == data and n == len(ends) and sent(s) == len(data)
    finally:
        ld.close()


def test_server_ignoring_range_reads_only_as_far_as_needed(stream_dir, serve):
    _, data, info = stream_dir
    ends = _ends(info)
    s = serve(rate=2_000_000, ignore_range=True)  # throttled: the server notices when the client hangs up
    got, p = load(s.url("scene.rave"), Target("rate", ends[1]), use_manifest=False, **FAST)
    assert got == data[: ends[1]] and p.ranged is False and "ignores Range" in p.message
    assert all(r[2] == 200 for r in s.stats.requests)
    # two whole bodies would be 2 x len(data); the client read PROBE, then 0..ends[1], and closed each time
    assert sent(s) < PROBE + ends[1] + 64 * 1024 < 2 * len(data)
    assert p.wasted == PROBE  # the second response's first PROBE bytes were already here


def test_connection_cut_mid_chunk_keeps_the_complete_prefix(stream_dir, serve):
    _, data, info = stream_dir
    ends = _ends(info)
    cut = ends[2] + 1000  # inside chunk 3
    s = serve(cut_at=cut)
    ld = StreamLoader(s.url("scene.rave"), Target("full"), use_manifest=False, retries=0, **FAST).start()
    try:
        ld.wait(timeout=20)
        p = ld.progress()
        assert p.state == "failed" and p.chunks == 3 and p.fetched == cut
        assert "closed" in p.message and "\n" not in p.message
        prefix, n = ld.complete_prefix()
        assert prefix == data[: ends[2]] and _decoded(prefix).n_decoded == _counts(info)[2]
        ld.retry()  # asked again: resumes at the first missing byte (the partial chunk is kept)
        assert ld.wait(timeout=20) and ld.complete_prefix()[0] == data
        assert sent(s) == len(data)
    finally:
        ld.close()


def test_drops_and_server_errors_are_retried_with_backoff(stream_dir, serve):
    _, data, info = stream_dir
    s = serve(cut_at=_ends(info)[1] + 10, status={"/scene.rave": 503})
    got, p = load(s.url("scene.rave"), Target("full"), use_manifest=False, **FAST)
    assert got == data and p.state == "done" and p.message is None and p.retries == 2
    assert [r[2] for r in s.stats.requests][0] == 503
    assert sent(s) == len(data)  # the bytes before the cut were kept, not fetched again


def test_stalled_server_times_out_and_resumes(stream_dir, serve):
    _, data, info = stream_dir
    s = serve(stall_at=_ends(info)[0] + 100)
    got, p = load(s.url("scene.rave"), Target("full"), use_manifest=False, backoff=(0.01,), timeout=0.5)
    assert got == data and p.state == "done"


@pytest.mark.parametrize("times,ok", [(1, True), (2, False)])
def test_corrupt_chunk_is_refetched_once_then_reported(stream_dir, serve, times, ok):
    _, data, info = stream_dir
    ends = _ends(info)
    s = serve(corrupt_offset=ends[1] + 50, corrupt_times=times)  # a byte of chunk 2
    ld = StreamLoader(s.url("scene.rave"), Target("full"), use_manifest=False, **FAST).start()
    try:
        ld.wait(timeout=20)
        time.sleep(0.1)
        p = ld.progress()
        prefix, n = ld.complete_prefix()
        if ok:
            assert prefix == data and p.state == "done" and "corrupt" in p.message
        else:
            assert p.state == "failed" and n == 2 and prefix == data[: ends[1]]
            assert "chunk 2 is corrupt" in p.message and "again" in p.message
    finally:
        ld.close()


def test_redirect_is_followed_and_416_is_one_line(stream_dir, serve):
    _, data, info = stream_dir
    s = serve(redirect={"/moved.rave": "/scene.rave"})
    got, p = load(s.url("moved.rave"), Target("full"), use_manifest=False, **FAST)
    assert got == data
    with pytest.raises(FetchError) as e:
        fetch_range(s.url("scene.rave"), len(data) + 10, len(data) + 20, lambda b: None)
    assert e.value.kind == "range" and str(len(data)) in str(e.value)


def test_not_a_stream_and_missing_are_one_error_line(stream_dir, serve, tmp_path):
    s = serve()
    with pytest.raises(RaveError, match="HTTP 404"):
        StreamLoader(s.url("nothing.rave"), use_manifest=False, **FAST).open()
    (stream_dir[0] / "text.rave").write_bytes(b"hello, this is not a stream" * 10)
    with pytest.raises(RaveError, match="bad magic"):
        StreamLoader(s.url("text.rave"), use_manifest=False, **FAST).open()


def _auto(s, budget):
    ld = StreamLoader(s.url("scene.rave"), Target("auto", budget), use_manifest=False, **FAST).start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < budget + 5:
            p = ld.progress()
            if p.elapsed > budget and p.state in ("idle", "done"):
                break
            time.sleep(0.05)
        return ld.progress()
    finally:
        ld.close()


def test_auto_mode_picks_a_larger_prefix_on_a_faster_link(stream_dir, serve):
    _, data, info = stream_dir
    slow = _auto(serve(rate=len(data) / 6), 1.5)  # the whole file would take 6 s
    fast = _auto(serve(rate=len(data) / 0.5), 1.5)  # 0.5 s
    assert 1 <= slow.chunks < fast.chunks
    assert fast.chunks == len(info.chunks) and slow.chunks <= 3


def test_auto_plan_is_monotone_and_bounded():
    ends = [100, 200, 300, 400]
    assert auto_chunks(0, 50, ends, None, 5.0) == 1  # no measurement yet: the first chunk
    assert auto_chunks(2, 200, ends, 100.0, 0.0) == 2  # out of time: keep what is here
    assert auto_chunks(1, 100, ends, 100.0, 1.0 / 0.85 + 1e-9) == 2
    assert auto_chunks(1, 100, ends, 1e9, 1.0) == 4
