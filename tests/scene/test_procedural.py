"""Procedural scenes: seeded byte-identical output, file layout, camera conventions, loadable by the dataset reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from rave_viewer.cli import main as cli_main
from rave_viewer.errors import RaveError
from rave_viewer.scene.procedural import build_scene, generate_scene

# OpenGL camera axes (x right, y up, z backward) -> OpenCV (x right, y down, z forward): negate y and z.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
N_VIEWS, SIZE = 10, 40  # test views 0 and 8, train views 1-7 and 9


def _read_split(root: Path, split: str) -> dict:
    return json.loads((root / f"transforms_{split}.json").read_text())


def _K(meta: dict) -> np.ndarray:
    return np.array([[meta["fl_x"], 0.0, meta["cx"]], [0.0, meta["fl_y"], meta["cy"]], [0.0, 0.0, 1.0]])


def _w2c_cv(frame: dict) -> np.ndarray:
    return np.linalg.inv(np.array(frame["transform_matrix"]) @ GL_TO_CV)


def _project(w2c: np.ndarray, K: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [N, 2] and depths [N] of world points X [N, 3] (OpenCV pinhole)."""
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    uv = Xc @ K.T
    return uv[:, :2] / uv[:, 2:3], Xc[:, 2]


@pytest.fixture(scope="module")
def objects_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("proc") / "objects"
    generate_scene(out, preset="objects", n_views=N_VIEWS, width=SIZE, height=SIZE, seed=3, n_points=900,
                   progress=False)
    return out


def test_layout_and_splits(objects_dir: Path):
    names = sorted(p.name for p in objects_dir.iterdir())
    assert names == ["images", "points3d.ply", "scene.json", "transforms_test.json", "transforms_train.json"]
    assert sorted(p.name for p in (objects_dir / "images").iterdir()) == [f"r_{i:03d}.png" for i in range(N_VIEWS)]
    train, test = _read_split(objects_dir, "train"), _read_split(objects_dir, "test")
    assert [f["file_path"] for f in test["frames"]] == ["images/r_000.png", "images/r_008.png"]
    assert [f["file_path"] for f in train["frames"]] == [f"images/r_{i:03d}.png" for i in (1, 2, 3, 4, 5, 6, 7, 9)]
    for meta in (train, test):
        assert meta["w"] == SIZE and meta["h"] == SIZE
        assert meta["fl_x"] == pytest.approx(0.5 * SIZE / np.tan(0.5 * meta["camera_angle_x"]))
        assert meta["camera_angle_x"] == pytest.approx(np.radians(50.0))
        assert (meta["cx"], meta["cy"]) == (SIZE / 2, SIZE / 2)
    recipe = json.loads((objects_dir / "scene.json").read_text())
    assert recipe["preset"] == "objects" and recipe["seed"] == 3 and recipe["generator_version"] >= 1
    assert (recipe["n_train"], recipe["n_test"], recipe["n_points"]) == (8, 2, 900)
    # No temp directories left beside the output.
    assert [p.name for p in objects_dir.parent.iterdir()] == ["objects"]
    with Image.open(objects_dir / "images" / "r_000.png") as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)


def test_camera_convention(objects_dir: Path):
    recipe = json.loads((objects_dir / "scene.json").read_text())
    center = np.array([recipe["center"]])
    above = center + [[0.0, 0.0, 0.5]]
    for split in ("train", "test"):
        meta = _read_split(objects_dir, split)
        K = _K(meta)
        for frame in meta["frames"]:
            c2w = np.array(frame["transform_matrix"])
            R = c2w[:3, :3]
            np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-6)
            assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
            assert np.linalg.norm(c2w[:3, 3] - center[0]) == pytest.approx(recipe["radius"], rel=1e-6)
            w2c = _w2c_cv(frame)
            uv, z = _project(w2c, K, center)
            assert z[0] > 0  # in front of the camera
            np.testing.assert_allclose(uv[0], [SIZE / 2, SIZE / 2], atol=1e-3)
            uv_up, _ = _project(w2c, K, above)
            assert uv_up[0, 1] < SIZE / 2 - 1  # world up is image up (z-up world, upright cameras)


def test_pixels_show_the_surfaces_they_project_from(objects_dir: Path, tmp_path: Path):
    # One sample per pixel at its centre: every surface point seen through pixel (u, v) must project back to
    # (u + 0.5, v + 0.5) with the JSON camera (independent pinhole maths), and the PNG holds that render.
    out = tmp_path / "spp1"
    generate_scene(out, preset="objects", n_views=3, width=SIZE, height=SIZE, seed=3, samples_per_pixel=1,
                   n_points=0, progress=False)
    meta = _read_split(out, "train")
    scene = build_scene("objects", 3)
    for frame in meta["frames"]:
        w2c, K = _w2c_cv(frame), _K(meta)
        img, rays = scene.render(w2c, K, SIZE, SIZE, samples_per_pixel=1)
        png = np.asarray(Image.open(out / frame["file_path"]))
        np.testing.assert_array_equal(png, np.round(img * 255).astype(np.uint8))
        hit = rays["hit"][:, :, 0]
        assert 0.05 < hit.mean() < 0.95  # objects and background both visible
        v, u = np.nonzero(hit)
        uv, z = _project(w2c, K, rays["points"][v, u, 0])
        assert (z > 0).all()
        np.testing.assert_allclose(uv, np.stack([u + 0.5, v + 0.5], axis=1), atol=1e-4)


def test_images_are_non_trivial(objects_dir: Path):
    imgs = np.stack([np.asarray(Image.open(p)) for p in sorted((objects_dir / "images").iterdir())])
    for img in imgs:
        assert img.std() > 12.0  # of 255
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    assert np.abs(imgs[0].astype(int) - imgs[1].astype(int)).mean() > 5  # views differ


def test_points3d(objects_dir: Path):
    v = PlyData.read(str(objects_dir / "points3d.ply"))["vertex"].data
    assert len(v) == 900
    assert {"x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"} <= set(v.dtype.names)
    assert v["red"].dtype == np.uint8
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    n = np.stack([v["nx"], v["ny"], v["nz"]], 1)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-4)
    assert xyz[:, 2].min() > -1e-4 and np.abs(xyz[:, :2]).max() < 2.0  # on the objects, which rest on z = 0
    rgb = np.stack([v["red"], v["green"], v["blue"]], 1)
    assert rgb.std() > 10 and len(np.unique(rgb, axis=0)) > 50
    # Each point lies on some primitive's surface: the ray from a training camera to it hits it first.
    scene = build_scene("objects", 3)
    eye = np.linalg.inv(_w2c_cv(_read_split(objects_dir, "train")["frames"][0]))[:3, 3]
    d = xyz.astype(np.float64) - eye
    dist = np.linalg.norm(d, axis=1)
    t, k = scene.trace(np.broadcast_to(eye, d.shape), d / dist[:, None])
    on_surface = np.abs(t - dist) < 1e-3
    assert on_surface.mean() > 0.4  # the rest is hidden behind other objects from this camera
    assert (t[~on_surface] < dist[~on_surface]).all()  # never seen through: points are on surfaces


def test_same_seed_byte_identical_other_seed_differs(objects_dir: Path, tmp_path: Path):
    again = generate_scene(tmp_path / "again", preset="objects", n_views=N_VIEWS, width=SIZE, height=SIZE, seed=3,
                           n_points=900, progress=False)
    for p in sorted(objects_dir.rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (again / p.relative_to(objects_dir)).read_bytes(), p.name
    other = generate_scene(tmp_path / "other", preset="objects", n_views=2, width=SIZE, height=SIZE, seed=4,
                           n_points=10, progress=False)
    for name in ("r_000.png", "r_001.png"):
        a = np.asarray(Image.open(objects_dir / "images" / name), dtype=int)
        b = np.asarray(Image.open(other / "images" / name), dtype=int)
        assert np.abs(a - b).mean() > 5


def test_ground_preset(tmp_path: Path):
    out = generate_scene(tmp_path / "g", preset="ground", n_views=4, width=48, height=32, seed=1, n_points=300,
                         progress=False)
    recipe = json.loads((out / "scene.json").read_text())
    types = [o["type"] for o in recipe["objects"]]
    assert types[0] == "ground" and "wire_ring" in types and "fence" in types and "pole" in types
    assert {"sphere", "box"} & set(types)
    img = np.asarray(Image.open(out / "images" / "r_001.png"))
    assert img.shape == (32, 48, 3) and img.std() > 12.0
    assert len(PlyData.read(str(out / "points3d.ply"))["vertex"].data) == 300


def test_refuses_non_empty_dir_and_overwrites_on_request(tmp_path: Path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(RaveError, match="not empty"):
        generate_scene(out, n_views=2, width=16, height=16, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    generate_scene(out, n_views=2, width=16, height=16, n_points=5, overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "images" / "r_001.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_scene(empty, n_views=2, width=16, height=16, n_points=5, progress=False)  # empty dir: fine
    assert (empty / "scene.json").is_file()


@pytest.mark.parametrize("kw", [{"preset": "nope"}, {"n_views": 1}, {"width": 8}, {"samples_per_pixel": 0},
                                {"fov_deg": 0.0}, {"radius": -1.0}])
def test_bad_arguments_raise_rave_error(tmp_path: Path, kw):
    with pytest.raises(RaveError):
        generate_scene(tmp_path / "x", **{"n_views": 2, "width": 16, "height": 16, "progress": False, **kw})
    assert not (tmp_path / "x").exists()


def test_cli_generate(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["generate", str(out), "--preset", "ground", "--views", "3", "--size", "24", "--seed", "2",
                   "--points", "50"])
    assert rc == 0
    assert "3 views 24x24 (2 train, 1 test)" in capsys.readouterr().out
    assert json.loads((out / "scene.json").read_text())["seed"] == 2
    rc = cli_main(["generate", str(out), "--views", "3", "--size", "24"])
    err = capsys.readouterr().err
    assert rc == 2 and "not empty" in err and len(err.strip().splitlines()) == 1


def test_load_dataset_reads_generated_scene(objects_dir: Path):
    from rave_viewer.scene.datasets import load_dataset

    ds = load_dataset(objects_dir)
    assert (len(ds.train), len(ds.test)) == (8, 2)
    assert ds.train.images.shape == (8, SIZE, SIZE, 3) and ds.test.images.shape == (2, SIZE, SIZE, 3)
    assert ds.points.shape == (900, 3) and ds.point_colors.shape == (900, 3)
    png = np.asarray(Image.open(objects_dir / "images" / "r_001.png"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(ds.train.images[0].numpy(), png, atol=1e-6)
    # Its cameras match ours: the scene centre projects to the image centre.
    recipe = json.loads((objects_dir / "scene.json").read_text())
    uv, _ = _project(ds.test.viewmats[1].double().numpy(), ds.test.Ks[1].double().numpy(), np.array([recipe["center"]]))
    np.testing.assert_allclose(uv[0], [SIZE / 2, SIZE / 2], atol=1e-3)


# -- hard captures: lens distortion, photo noise, no point cloud, COLMAP model ------------------------------

LENS = (-0.12, 0.03, 0.002, -0.0015)


def _opencv_distort(x: np.ndarray, y: np.ndarray, k1, k2, p1, p2, k3=0.0) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's lens model written out here (independent of rave_viewer.scene.undistort)."""
    r2 = x * x + y * y
    g = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    return x * g + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * g + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def test_distorted_pixels_show_what_the_lens_projects(tmp_path: Path):
    """spp=1: each surface point seen through pixel (u, v) projects through the OpenCV lens to its centre."""
    out = generate_scene(tmp_path / "lens", preset="ground", n_views=3, width=SIZE, height=SIZE, seed=3,
                         samples_per_pixel=1, n_points=0, fov_deg=70.0, distortion=LENS, progress=False)
    meta = _read_split(out, "train")
    assert meta["camera_model"] == "OPENCV"
    assert [meta[k] for k in ("k1", "k2", "p1", "p2", "k3")] == [*LENS, 0.0]
    from rave_viewer.scene.undistort import Distortion

    scene = build_scene("ground", 3)
    frame = meta["frames"][0]
    w2c, K = _w2c_cv(frame), _K(meta)
    img, rays = scene.render(w2c, K, SIZE, SIZE, samples_per_pixel=1, distortion=Distortion.opencv(LENS))
    png = np.asarray(Image.open(out / frame["file_path"]))
    np.testing.assert_array_equal(png, np.round(img * 255).astype(np.uint8))
    v, u = np.nonzero(rays["hit"][:, :, 0])
    assert len(u) > 0.5 * SIZE * SIZE
    X = rays["points"][v, u, 0]
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    xd, yd = _opencv_distort(Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2], *LENS)
    np.testing.assert_allclose(np.stack([xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]], 1),
                               np.stack([u + 0.5, v + 0.5], 1), atol=1e-4)
    # ... and not to where a pinhole would put it (the corners move by pixels).
    uv, _ = _project(w2c, K, X)
    assert np.abs(uv - np.stack([u + 0.5, v + 0.5], 1)).max() > 2.0
    recipe = json.loads((out / "scene.json").read_text())
    assert recipe["distortion"] == {"k1": LENS[0], "k2": LENS[1], "k3": 0.0, "p1": LENS[2], "p2": LENS[3]}


@pytest.mark.parametrize("lens,model", [((0.1, 0, 0, 0), "SIMPLE_RADIAL"), ((0.1, -0.02, 0, 0), "RADIAL"),
                                        (LENS, "OPENCV"), ((0.1, 0, 0, 0, 0.01), "FULL_OPENCV"), (None, "PINHOLE")])
def test_colmap_model_is_written_and_preferred(tmp_path: Path, lens, model):
    from rave_viewer.scene.colmap import read_model
    from rave_viewer.scene.datasets import load_dataset
    from rave_viewer.scene.undistort import Distortion

    out = generate_scene(tmp_path / "c", n_views=9, width=32, height=32, seed=1, n_points=50, distortion=lens,
                         colmap=True, progress=False)
    m = read_model(out / "sparse" / "0")
    cam = m.cameras[1]
    assert (cam.model, cam.width, cam.height) == (model, 32, 32)
    assert Distortion.from_colmap(cam.model, cam.params) == (None if lens is None else Distortion.opencv(lens))
    assert sorted(im.name for im in m.images.values()) == [f"r_{i:03d}.png" for i in range(9)]
    assert m.points.shape == (50, 3)
    ds = load_dataset(out)  # the COLMAP model (preferred) gives the same split and poses as the transforms
    tr = json.loads((out / "transforms_test.json").read_text())
    assert ds.test.names == ["r_000.png", "r_008.png"] and len(ds.train) == 7
    np.testing.assert_allclose(ds.test.viewmats[1].numpy(), _w2c_cv(tr["frames"][1]), atol=1e-5)


def test_noise_and_no_point_cloud(tmp_path: Path):
    kw = dict(n_views=3, width=SIZE, height=SIZE, seed=5, n_points=0, progress=False)
    clean = generate_scene(tmp_path / "clean", **kw)
    noisy = generate_scene(tmp_path / "noisy", noise=0.05, **kw)
    again = generate_scene(tmp_path / "again", noise=0.05, **kw)
    assert not (clean / "points3d.ply").exists()  # a capture without a point cloud
    recipe = json.loads((noisy / "scene.json").read_text())
    assert recipe["noise"] == 0.05 and recipe["point_cloud"] is False and recipe["n_points"] == 0
    for i in range(3):
        name = f"images/r_{i:03d}.png"
        a = np.asarray(Image.open(clean / name), dtype=np.float64) / 255
        b = np.asarray(Image.open(noisy / name), dtype=np.float64) / 255
        assert (noisy / name).read_bytes() == (again / name).read_bytes()  # seeded
        mid = (a > 0.2) & (a < 0.8)  # away from the clip at 0 and 1
        assert np.std((b - a)[mid]) == pytest.approx(0.05, rel=0.15)
    from rave_viewer.scene.datasets import load_dataset

    assert load_dataset(clean).points is None


def test_hard_capture_preset(tmp_path: Path, capsys):
    from rave_viewer.scene.procedural import HARD_CAPTURE

    assert HARD_CAPTURE["n_views"] <= 40 and HARD_CAPTURE["n_points"] == 0 and HARD_CAPTURE["noise"] > 0
    out = tmp_path / "hard"
    assert cli_main(["generate", str(out), "--capture", "hard", "--size", "24", "--views", "9", "--colmap"]) == 0
    line = capsys.readouterr().out
    assert "9 views 24x24 (7 train, 2 test), no point cloud, lens k1=-0.12" in line and "noise 0.02" in line
    recipe = json.loads((out / "scene.json").read_text())
    assert recipe["n_views"] == 9 and recipe["fov_deg"] == HARD_CAPTURE["fov_deg"] and recipe["colmap"] is True
    assert (out / "sparse" / "0" / "cameras.bin").is_file() and not (out / "points3d.ply").exists()
    out2 = tmp_path / "hard2"
    assert cli_main(["generate", str(out2), "--capture", "hard", "--size", "24", "--views", "2",
                     "--distortion=0,0,0,0", "--noise", "0", "--points", "20"]) == 0
    capsys.readouterr()
    recipe = json.loads((out2 / "scene.json").read_text())
    assert recipe["distortion"] is None and recipe["noise"] == 0.0 and recipe["n_points"] == 20
    assert "camera_model" not in json.loads((out2 / "transforms_train.json").read_text())
    for bad in (["--distortion", "0.1,0.2"], ["--distortion", "a,b,c,d"], ["--distortion=nan,0,0,0"],
                ["--noise", "2"], ["--distortion=-2,0,0,0"]):
        assert cli_main(["generate", str(tmp_path / "bad"), "--size", "24", "--views", "2", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("kw", [{"distortion": (0.1, 0.2)}, {"distortion": (math.nan, 0, 0, 0)},
                                {"distortion": (-2.0, 0, 0, 0)}, {"noise": -0.1}, {"noise": math.inf}])
def test_bad_lens_or_noise_raise_rave_error(tmp_path: Path, kw):
    with pytest.raises(RaveError):
        generate_scene(tmp_path / "x", **{"n_views": 2, "width": 16, "height": 16, "progress": False, **kw})
    assert list(tmp_path.iterdir()) == []


def test_long_output_name(tmp_path: Path):
    """The temp folder beside the output has a short name: a 250-character output name works."""
    out = tmp_path / ("d" * 250)
    generate_scene(out, n_views=2, width=16, height=16, n_points=5, progress=False)
    generate_scene(out, n_views=2, width=16, height=16, n_points=5, overwrite=True, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [out.name] and (out / "scene.json").is_file()


def test_an_error_cancels_the_queued_views(tmp_path: Path, monkeypatch):
    """A failure (or a signal) while writing stops the rendering: queued views are not rendered first."""
    import threading
    import time

    import rave_viewer.scene.procedural as proc

    real, calls, lock = proc.ProceduralScene.render, [], threading.Lock()

    def slow_render(self, *a, **k):
        with lock:
            calls.append(1)
        time.sleep(0.05)
        return real(self, *a, **k)

    def failing_save(path, img):
        raise KeyboardInterrupt  # what SIGTERM becomes under errors.signals_as_exceptions

    monkeypatch.setattr(proc.ProceduralScene, "render", slow_render)
    monkeypatch.setattr(proc, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        # (with the progress bar on, the bar holds the map's iterator: only an explicit cancel stops it)
        generate_scene(tmp_path / "x", n_views=60, width=16, height=16, n_points=0, progress=True)
    assert len(calls) <= 12, len(calls)  # the workers in flight finish, the other ~50 views are cancelled
    assert list(tmp_path.iterdir()) == []


def _detail(img: np.ndarray) -> float:
    """Mean absolute difference between horizontally and vertically adjacent pixels (of 255): texture."""
    a = img.astype(float)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


def test_garden_preset_is_textured_wherever_a_camera_looks(tmp_path: Path):
    out = generate_scene(tmp_path / "garden", preset="garden", n_views=4, width=96, height=54, seed=0, n_points=400,
                         fov_deg=60.0, progress=False)
    again = generate_scene(tmp_path / "again", preset="garden", n_views=4, width=96, height=54, seed=0, n_points=400,
                           fov_deg=60.0, progress=False)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (again / p.relative_to(out)).read_bytes(), p.name
    recipe = json.loads((out / "scene.json").read_text())
    objs = recipe["objects"]
    kinds = [o["texture"]["kind"] for o in objs]
    types = [o["type"] for o in objs]
    assert types[0] == "ground" and kinds[0] == "lawn" and kinds.count("bricks") == 4  # lawn, four brick walls
    assert types.count("trunk") >= 5 and "fence" in types and "pole" in types
    assert sum(t in ("sphere", "box") for t in types) >= 4 + 9 + 5  # plaza, walls, solids, tree crowns
    assert {"checker", "stripes", "marble", "noise", "tiles"} <= set(kinds)
    # Cameras are inside the walls and outside every tree crown.
    for o in objs:
        if o["type"] == "sphere" and o["texture"]["kind"] == "lawn":
            assert math.hypot(*o["center"][:2]) - o["radius"] > recipe["radius"]
    # Every view sees geometry nearly everywhere (a lawn, not an empty backdrop) and far more texture than the
    # objects preset at the same size.
    scene = build_scene("garden", 0)
    ref = generate_scene(tmp_path / "objects", preset="objects", n_views=4, width=96, height=54, seed=0, n_points=0,
                         fov_deg=60.0, progress=False)
    meta = _read_split(out, "train")
    for frame in meta["frames"]:
        w2c = _w2c_cv(frame)
        _, rays = scene.render(w2c, _K(meta), 96, 54, samples_per_pixel=1)
        assert rays["hit"].mean() > 0.85
        img = np.asarray(Image.open(out / frame["file_path"]))
        base = np.asarray(Image.open(ref / frame["file_path"]))
        assert _detail(img) > 1.5 * _detail(base)


def test_garden_textures_and_sky():
    from rave_viewer.scene.procedural import Texture, ValueNoise

    rng = np.random.default_rng(0)
    noise = ValueNoise(np.random.default_rng(1))
    # A wall face (local x-z plane): brick colours vary brick to brick, grey mortar between them.
    xz = np.stack([rng.uniform(-1, 1, 4000), np.zeros(4000), rng.uniform(0, 1, 4000)], axis=1)
    bricks = Texture("bricks", (0.7, 0.3, 0.2), (0.4, 0.15, 0.1), 7.0).albedo(xz, noise)
    assert bricks.shape == (4000, 3) and 0.0 <= bricks.min() and bricks.max() <= 1.0
    mortar = np.all(np.isclose(bricks, [0.72, 0.7, 0.66]), axis=1)
    assert 0.05 < mortar.mean() < 0.35 and bricks[~mortar].std(axis=0).min() > 0.02
    lawn = Texture("lawn", (0.32, 0.55, 0.18), (0.12, 0.3, 0.08), 2.0).albedo(xz, noise)
    assert lawn[:, 1].mean() > lawn[:, 0].mean() and lawn.std(axis=0).min() > 0.02  # green, varied
    # The garden sky has clouds: more variation across directions than the plain gradient.
    garden = build_scene("garden", 0)
    d = np.stack([rng.normal(size=2000), rng.normal(size=2000), np.abs(rng.normal(size=2000)) + 0.3], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cloudy = garden.environment(d)
    garden.clouds = 0.0
    assert np.abs(cloudy - garden.environment(d)).max() > 0.2 and cloudy.min() >= 0.0


def test_demo_garden_recipe_is_valid():
    from rave_viewer.train.demo import load_recipe

    r = load_recipe(Path(__file__).parents[2] / "assets" / "demo_garden.yaml")
    assert r.scene["preset"] == "garden" and max(r.scene["width"], r.scene["height"]) >= 512


def test_bundled_garden_demo_is_the_default_and_fits():
    """trained_scenes/demo_garden: >= 512 px training views, >= 100k Gaussians, opened by rave-view with no
    argument, and the whole folder under 60 MB."""
    from rave_viewer.commands.view import DEFAULT_DEMO
    from rave_viewer.viewer.sources import find_demo_scene

    folder = Path(__file__).parents[2] / "trained_scenes"
    record = json.loads((folder / "demo_garden.json").read_text())
    assert record["scene"]["preset"] == "garden" and not record["interrupted"]
    assert max(record["scene"]["width"], record["scene"]["height"]) >= 512
    with open(folder / "demo_garden.ply", "rb") as f:
        header = f.read(400).decode("ascii", "replace")
    n = int(header.split("element vertex ")[1].split()[0])
    assert n >= 100_000 and n == record["num_gaussians"]
    assert record["metrics"]["test_psnr"] > 25.0
    path, _ = find_demo_scene(folder.parent)
    assert DEFAULT_DEMO == "demo_garden.ckpt" and (path.parent / DEFAULT_DEMO).is_file()
    assert sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) < 60e6
