"""``rave-view https://...`` from the command line: start targets fetch only their prefix; unreachable or
unusable streams are one error line (exit 2)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from rave_viewer.cli import view_main

from delivery_helpers import _counts, _ends, sent

_VIEW = "import sys; from rave_viewer.cli import view_main; sys.exit(view_main())"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [x for x in err.splitlines() if x.strip() and "first chunk" not in x]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_missing_stream_and_psnr_without_manifest_are_one_line(serve, capsys):
    s = serve()
    assert view_main([s.url("nothing.rave"), "--port", "0"]) == 2
    err = _one_line_error(capsys)
    assert "nothing.rave" in err and "HTTP 404" in err
    assert view_main([s.url("scene.rave"), "--port", "0", "--psnr", "30"]) == 2
    assert "RD table" in _one_line_error(capsys)


def test_rave_view_url_with_a_start_count_fetches_only_that_prefix(stream_dir, serve, tmp_path):
    _, data, info = stream_dir
    ends, counts = _ends(info), _counts(info)
    s = serve()
    proc = subprocess.Popen(
        [sys.executable, "-c", _VIEW, s.url("scene.rave"), "--count", str(counts[1]), "--port", "0"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        lines, t0, url = [], time.monotonic(), None
        while time.monotonic() - t0 < 120:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
                break
        text = "".join(lines)
        assert url is not None, text
        assert f"{info.n_gaussians:,} Gaussians, rave" in text and "range requests" in text
        time.sleep(0.5)
        assert sent(s) == ends[1]  # --count: header, index and the two chunks it needs, nothing more
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc == 130
