"""Stand-ins for a viser client (camera, scene, client) and a readout parser, shared by the viewer tests."""

from __future__ import annotations

import contextlib

import numpy as np
import viser.transforms as vtf


def readout(panel) -> dict[str, str]:
    rows = [line.strip("|").split("|") for line in panel.readout.content.splitlines()[2:]]
    return {a.strip(): b.strip() for a, b in rows}


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


class FakeScene:
    def __init__(self):
        self.backgrounds, self.splats = [], []

    def set_background_image(self, img, **kw):
        self.backgrounds.append(img)

    def add_gaussian_splats(self, name, centers, covariances, rgbs, opacities):
        self.splats.append(len(centers))
        return type("H", (), {"remove": lambda self: None})()


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
