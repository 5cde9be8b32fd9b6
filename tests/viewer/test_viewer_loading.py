"""Opening a large local file shows tqdm bars on stderr (bytes read, then the loader's steps); small files do not."""

from __future__ import annotations

import re

import pytest
from tqdm import tqdm

from rave_viewer.errors import RaveError
from rave_viewer.viewer.loading import PROGRESS_MIN_BYTES
from rave_viewer.viewer.sources import LOAD_STEPS, open_source


@pytest.mark.parametrize("kind", ["ckpt", "rave", "ply"])
def test_a_file_above_the_threshold_reports_its_loading(scene_files, capsys, kind):
    path = scene_files[kind]
    size = path.stat().st_size
    assert size < PROGRESS_MIN_BYTES
    open_source(path)  # below the threshold: silent
    assert capsys.readouterr().err == ""
    src = open_source(path, progress_min_bytes=size)  # the threshold lowered to this file's size
    err = capsys.readouterr().err
    assert src.n == 1500
    # the byte bar reached the file's size, then every loader step was named and the step bar finished
    last = re.split(r"[\r\n]", err.strip())
    reads = [line for line in last if line.startswith(f"reading {path.name}")]
    assert reads and "100%" in reads[-1], err
    total = tqdm.format_sizeof(size, divisor=1000)
    assert f"{total}/{total}" in reads[-1], reads[-1]
    steps = LOAD_STEPS[kind]
    for name in steps:
        assert name in err, (name, err)
    assert re.search(rf"opening {re.escape(path.name)}: {len(steps)}/{len(steps)} steps .*done", err), err


def test_a_file_that_fails_to_load_leaves_the_bar_at_the_failed_step(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n" + b"\0" * 7)
    with pytest.raises(RaveError):
        open_source(bad, progress=True)
    err = capsys.readouterr().err
    assert "reading broken.ply" in err and "parsing the .ply" in err and "failed" in err and "done" not in err
