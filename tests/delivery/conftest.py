"""Fixtures of the delivery tests: a built stream in a folder, and range servers on 127.0.0.1 serving it."""

from __future__ import annotations

import pytest

from rave_viewer.codec import ProgressiveEncoder, read_info
from rave_viewer.delivery.serve import Faults, RangeServer
from rave_viewer.scene.gaussians import Gaussians

N, CHUNK = 6000, 1024  # 6 chunks of ~20-30 KB: every chunk is larger than the loader's 4 KB header probe


@pytest.fixture(scope="session")
def stream_dir(tmp_path_factory):
    """A folder with scene.rave (zstd, 6 chunks); yields (folder, bytes, StreamInfo)."""
    d = tmp_path_factory.mktemp("site")
    g = Gaussians.random(N, 1, seed=3)
    enc = ProgressiveEncoder(g, codec="zstd", chunk_size=CHUNK, progress=False)
    data = enc.encode()
    (d / "scene.rave").write_bytes(data)
    return d, data, read_info(data)


@pytest.fixture
def serve(stream_dir):
    """serve(rate=None, latency=0, **faults) -> a started RangeServer over the stream folder (stopped after)."""
    servers = []

    def start(rate=None, latency=0.0, **faults):
        s = RangeServer(stream_dir[0], rate=rate, latency=latency, faults=Faults(**faults)).start()
        s.stall_seconds = 3.0
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
