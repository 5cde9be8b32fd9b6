"""Stand-ins for a viser client (camera, scene, client) and a readout parser, shared by the viewer tests."""

from __future__ import annotations

import contextlib

import numpy as np
import viser.transforms as vtf


def readout(panel) -> dict[str, str]:
    rows = [line.strip("|").split("|") for line in panel.readout.content.splitlines()[2:]]
    return {a.strip(): b.replace("\u00a0", " ").strip() for a, b in rows}


class FakeCamera:
    def __init__(self, c2w, fov, w=160, h=120):
        self.fov, self.image_width, self.image_height = fov, w, h
        self.set_c2w(c2w)
        self.up_direction = np.array([0.0, 0.0, 1.0])

    def set_c2w(self, c2w):
        self.wxyz = vtf.SO3.from_matrix(c2w[:3, :3]).wxyz
        self.position = c2w[:3, 3].copy()
        self.look_at = self.position + c2w[:3, 2]

    @property
    def aspect(self):
        return self.image_width / self.image_height

    def on_update(self, cb):
        pass


class FakeSplatNode:
    """A splat node as the browser holds it: its arrays, shown or hidden, removed or not."""

    def __init__(self, scene, name, centers, rgbs):
        self.scene, self.name, self.centers, self.rgbs, self.visible, self.removed = scene, name, centers, rgbs, True, False

    def remove(self):
        self.removed = True


class FakeScene:
    def __init__(self):
        self.backgrounds, self.splats, self.nodes = [], [], {}

    def set_background_image(self, img, **kw):
        self.backgrounds.append(img)

    def add_gaussian_splats(self, name, centers, covariances, rgbs, opacities):
        self.splats.append(len(centers))
        self.nodes[name] = FakeSplatNode(self, name, centers, rgbs)
        return self.nodes[name]

    def shown_centers(self):
        """Centres of every visible, not removed node, in node-name order (blocks, then the tail)."""
        import numpy as np

        live = [n for _, n in sorted(self.nodes.items()) if n.visible and not n.removed]
        return np.concatenate([n.centers for n in live]) if live else np.zeros((0, 3))


class FakeClient:
    client_id = 1

    def __init__(self, gui, camera):
        self.gui, self.camera, self.scene = gui, camera, FakeScene()
        self.files, self.notes = [], []

    def atomic(self):
        return contextlib.nullcontext()

    def send_file_download(self, name, data, save_immediately=False):
        self.files.append((name, data))

    def add_notification(self, title, body, **kw):
        self.notes.append((title, body))


# -- rave-view as a user starts it -------------------------------------------------------------------------
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import rave_viewer  # noqa: E402

_ROOT = os.pathsep.join([os.path.dirname(os.path.dirname(rave_viewer.__file__)), os.environ.get("PYTHONPATH", "")])
_VIEW = "import sys; from rave_viewer.cli import view_main; sys.exit(view_main())"


def spawn_view(args: list[str], cwd) -> subprocess.Popen:
    """``rave-view ARGS`` in a child process (its console entry point), stdout and stderr merged."""
    return subprocess.Popen(
        [sys.executable, "-c", _VIEW, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _ROOT},
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> tuple[re.Match | None, str]:
    """The first match of ``pattern`` in the child's output lines, and all the output read so far."""
    lines, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(pattern, line):
            return m, "".join(lines)
    return None, "".join(lines)


def stop_view(proc: subprocess.Popen, timeout: float = 30) -> int:
    """Ctrl+C, then the exit code (killed if it does not stop)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def one_line_error(capsys) -> str:
    """stderr of a command that failed cleanly: exactly one ``error:`` line (returned)."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err
