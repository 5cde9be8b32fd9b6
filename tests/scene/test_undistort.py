"""Lens undistortion: the OpenCV model and its inverse, the crop-to-valid camera, and photos that match truth.

The accuracy tests use the procedural generator: a dataset rendered through a distorting lens and its
"twin" (same scene, seed and poses, ideal pinhole) must agree once the loader has undistorted the photos.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rave_viewer.errors import RaveError
from rave_viewer.scene.colmap import read_model
from rave_viewer.scene.datasets import load_dataset
from rave_viewer.scene.procedural import build_scene, generate_scene
from rave_viewer.scene.undistort import (
    Distortion,
    DistortionError,
    Remap,
    colmap_camera,
    undistort_image,
    undistorted_K,
)

LENSES = [
    Distortion(k1=-0.25, k2=0.05, p1=0.003, p2=-0.002),  # phone-like barrel with decentring
    Distortion(k1=0.12, k2=0.02),  # pincushion
    Distortion(k1=-0.2, k2=0.04, p1=-0.001, p2=0.002, k3=-0.005),
    Distortion(k1=0.05, k2=-0.01, p1=0.001, k3=0.003, k4=0.1, k5=-0.02, k6=0.01),  # FULL_OPENCV (rational)
]
#: Barrel lens of the accuracy tests: at 70 degrees the corners move by about 9 % of the image half-width.
LENS = (-0.25, 0.05, 0.003, -0.002)
#: A textured ground fills every view (corners included); 96 px rendered, loaded at downscale 2.
SCENE = dict(preset="ground", n_views=9, width=96, height=96, seed=2, fov_deg=70.0, n_points=0,
             samples_per_pixel=4)


def _opencv(d: Distortion, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's projection model written out independently (cv::projectPoints' formula)."""
    r2 = x * x + y * y
    radial = (1 + d.k1 * r2 + d.k2 * r2**2 + d.k3 * r2**3) / (1 + d.k4 * r2 + d.k5 * r2**2 + d.k6 * r2**3)
    return (x * radial + 2 * d.p1 * x * y + d.p2 * (r2 + 2 * x * x),
            y * radial + d.p1 * (r2 + 2 * y * y) + 2 * d.p2 * x * y)


def _psnr(a, b, mask=None) -> float:
    e = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        e = e[mask]
    return 10 * math.log10(1.0 / e.mean())


@pytest.mark.parametrize("lens", LENSES, ids=lambda d: d.describe())
def test_model_and_inverse(lens: Distortion):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.8, 0.8, (2, 2000))
    xd, yd = lens.distort(x, y)
    np.testing.assert_allclose(np.stack([xd, yd]), np.stack(_opencv(lens, x, y)), rtol=0, atol=1e-14)
    xu, yu, ok = lens.undistort_points(xd, yd)
    assert ok.all()
    np.testing.assert_allclose(xu, x, atol=1e-12)
    np.testing.assert_allclose(yu, y, atol=1e-12)
    # The analytic Jacobian (Newton's steps) agrees with finite differences.
    h = 1e-6
    _, _, a, b, c, d, _ = lens._distort_jacobian(x, y)
    fx1, fy1 = lens.distort(x + h, y)
    fx0, fy0 = lens.distort(x - h, y)
    np.testing.assert_allclose(a, (fx1 - fx0) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(c, (fy1 - fy0) / (2 * h), atol=1e-7)
    fx1, fy1 = lens.distort(x, y + h)
    fx0, fy0 = lens.distort(x, y - h)
    np.testing.assert_allclose(b, (fx1 - fx0) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(d, (fy1 - fy0) / (2 * h), atol=1e-7)


def test_inverse_refuses_the_folded_part():
    lens = Distortion(k1=-0.6)  # r_d = r (1 - 0.6 r^2) peaks at r = 0.745 (r_d = 0.497)
    _, _, ok = lens.undistort_points(np.array([0.3, 0.45, 0.55, 0.7]), np.zeros(4))
    assert ok.tolist() == [True, True, False, False]  # beyond the peak no undistorted point maps there
    with pytest.raises(DistortionError, match="cannot be inverted"):
        undistorted_K(np.array([[20.0, 0, 32], [0, 20, 32], [0, 0, 1]]), lens, 64, 64)
    with pytest.raises(DistortionError, match="non-finite"):
        undistorted_K(np.eye(3), Distortion(k1=math.nan), 8, 8)


@pytest.mark.parametrize("lens", LENSES, ids=lambda d: d.describe())
def test_undistorted_camera_sees_only_the_photo_and_is_the_widest(lens: Distortion):
    W, H = 120, 80
    K = np.array([[70.0, 0, 61.0], [0, 72.0, 39.0], [0, 0, 1]])
    Kn = undistorted_K(K, lens, W, H)
    assert Kn[1, 1] / Kn[0, 0] == pytest.approx(K[1, 1] / K[0, 0], rel=1e-12)  # pixel aspect kept
    assert Remap(K, lens, Kn, W, H).coverage == 1.0  # every pixel samples the photo: no border to fill
    wider = Kn.copy()
    wider[:2, :2] *= 0.98
    wider[:2, 2] = [W / 2 - (W / 2 - Kn[0, 2]) * 0.98, H / 2 - (H / 2 - Kn[1, 2]) * 0.98]
    assert Remap(K, lens, wider, W, H).coverage < 1.0  # 2 % more field of view would see outside the photo
    if lens.k1 < 0 and not lens.k4:
        assert Kn[0, 0] < K[0, 0]  # barrel: the photo holds more than its nominal field of view
    elif lens.k1 > 0 and not lens.k4:
        assert Kn[0, 0] > K[0, 0]  # pincushion: crop in
    assert np.array_equal(undistorted_K(K, Distortion(), W, H), K)


def test_remap_is_exact_where_it_should_be():
    rng = np.random.default_rng(1)
    img = rng.random((30, 40, 3)).astype(np.float32)
    K = np.array([[35.0, 0, 20], [0, 35.0, 15], [0, 0, 1]])
    out, valid = undistort_image(img, K, Distortion(), K)  # no lens, same camera: the identity
    assert valid.all() and np.abs(out - img).max() < 1e-6
    # A linear ramp is reproduced exactly by bilinear sampling at the model's positions.
    lens = Distortion(k1=0.1, p1=0.004)
    u = np.arange(40) + 0.5
    ramp = np.broadcast_to((0.2 + 0.01 * u)[None, :, None], (30, 40, 3)).astype(np.float32)
    out, valid = undistort_image(ramp, K, lens, K)  # pincushion with the same K: the border sees outside
    assert 0.5 < valid.mean() < 1.0
    vv, uu = np.mgrid[0:30, 0:40] + 0.5
    xd, _ = _opencv(lens, (uu - 20) / 35.0, (vv - 15) / 35.0)
    us = np.clip(xd * 35.0 + 20, 0.5, 39.5)  # outside the photo: its border pixel repeated
    np.testing.assert_allclose(out[..., 0], 0.2 + 0.01 * us, atol=1e-5)


def test_colmap_camera_model_choice():
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    K2 = np.array([[50.0, 0, 32], [0, 51.0, 24], [0, 0, 1]])
    cases = [
        (K, None, "PINHOLE", 4), (K, Distortion(k1=0.1), "SIMPLE_RADIAL", 4),
        (K, Distortion(k1=0.1, k2=-0.02), "RADIAL", 5), (K2, Distortion(k1=0.1), "OPENCV", 8),
        (K, Distortion(k1=0.1, p2=0.001), "OPENCV", 8), (K, Distortion(k1=0.1, k3=0.01), "FULL_OPENCV", 12),
    ]  # fmt: skip
    for k, lens, model, n in cases:
        name, params = colmap_camera(k, lens)
        assert (name, len(params)) == (model, n)
        back = Distortion.from_colmap(name, params)
        assert (back is None) if lens is None else back == lens


# -- accuracy on rendered photos (acceptance) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """(distorted dataset with transforms and a COLMAP model, its undistorted twin)."""
    base = tmp_path_factory.mktemp("undistort")
    d = generate_scene(base / "distorted", distortion=LENS, colmap=True, progress=False, **SCENE)
    t = generate_scene(base / "twin", progress=False, **SCENE)
    return d, t


def _box(img: np.ndarray, f: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img.reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3))


def test_undistorted_photos_match_the_twin(pair):
    """Undistorting with the photo's own K reproduces the twin's pinhole photos (valid pixels: all, barrel)."""
    dist_dir, twin_dir = pair
    meta = json.loads((twin_dir / "transforms_train.json").read_text())
    K = np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]])
    lens = Distortion.opencv(LENS)
    for frame in meta["frames"]:
        photo = np.asarray(Image.open(dist_dir / frame["file_path"]), np.float32) / 255
        truth = np.asarray(Image.open(twin_dir / frame["file_path"]), np.float32) / 255
        und, valid = undistort_image(photo, K, lens, K)
        assert valid.all()
        got, raw = _psnr(_box(und, 2), _box(truth, 2)), _psnr(_box(photo, 2), _box(truth, 2))
        assert got > 30.0 and got > raw + 8.0, (frame["file_path"], got, raw)


@pytest.mark.parametrize("layout", ["colmap", "transforms"])
def test_loader_undistorts_to_the_truth(pair, tmp_path, layout, capsys):
    """load_dataset's photos equal the scene rendered through the loader's (pinhole) cameras: PSNR > 30 dB,
    also at the image corners, where ignoring the lens (undistort=False vs the twin) is > 10 dB worse."""
    dist_dir, twin_dir = pair
    root = dist_dir
    if layout == "transforms":  # the same dataset without its COLMAP model
        import shutil

        root = tmp_path / "t"
        shutil.copytree(dist_dir, root, ignore=shutil.ignore_patterns("sparse"))
    ds = load_dataset(root, downscale=2)
    assert capsys.readouterr().err == ""  # the library prints nothing: the commands print ds.notes
    assert len(ds.notes) == 1 and "undistorted 9 photos (OPENCV k1=-0.25" in ds.notes[0]
    with pytest.warns(UserWarning, match="ignored"):
        raw = load_dataset(root, downscale=2, undistort=False)
    twin = load_dataset(twin_dir, downscale=2)
    assert torch.equal(raw.train.Ks, twin.train.Ks)
    assert torch.allclose(ds.train.viewmats, twin.train.viewmats, atol=1e-5)
    scene = build_scene(SCENE["preset"], SCENE["seed"])
    size, corner = SCENE["width"], np.zeros((48, 48), bool)
    corner[:12, :12] = corner[:12, -12:] = corner[-12:, :12] = corner[-12:, -12:] = True
    for cams, raw_c, twin_c in ((ds.train, raw.train, twin.train), (ds.test, raw.test, twin.test)):
        for i in range(len(cams)):
            K = cams.Ks[i].double().numpy().copy()
            K[:2] *= 2  # the loader's camera at the photo's resolution
            img, _ = scene.render(cams.viewmats[i].double().numpy(), K, size, size, 4, np.random.default_rng(i))
            truth = _box(np.round(np.clip(img, 0, 1) * 255) / 255, 2)
            got = cams.images[i].numpy()
            assert _psnr(got, truth) > 30.0 and _psnr(got, truth, corner) > 30.0
            assert _psnr(raw_c.images[i].numpy(), twin_c.images[i].numpy(), corner) < _psnr(got, truth, corner) - 10
    if layout == "colmap":
        assert read_model(dist_dir / "sparse" / "0").cameras[1].model == "OPENCV"


def test_per_frame_lenses_and_downscale_consistency(pair, tmp_path, capsys):
    """Per-frame k1..p2 override the global ones; undistorting at full resolution then downscaling gives
    the camera the loader reports at every downscale."""
    dist_dir, _ = pair
    root = tmp_path / "pf"
    import shutil

    shutil.copytree(dist_dir, root, ignore=shutil.ignore_patterns("sparse"))
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["frames"][0].update(k1=0.0, k2=0.0, p1=0.0, p2=0.0)  # this one photo is declared undistorted
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full, half = load_dataset(root), load_dataset(root, downscale=2)
    assert "undistorted 8 photos" in full.notes[0]
    fl = meta["fl_x"]
    assert float(full.train.Ks[0, 0, 0]) == pytest.approx(fl)  # untouched
    assert float(full.train.Ks[1, 0, 0]) < fl  # barrel: a wider undistorted camera
    np.testing.assert_allclose(half.train.Ks[:, :2].numpy(), full.train.Ks[:, :2].numpy() / 2, rtol=1e-6)
    np.testing.assert_allclose(half.train.images.numpy(), _box_t(full.train.images.numpy(), 2), atol=1e-5)


def _box_t(imgs: np.ndarray, f: int) -> np.ndarray:
    return np.stack([_box(im, f) for im in imgs])


def test_too_strong_a_lens_fails_in_one_line(pair, tmp_path):
    dist_dir, _ = pair
    import shutil

    root = tmp_path / "strong"
    shutil.copytree(dist_dir, root, ignore=shutil.ignore_patterns("sparse"))
    for name in ("transforms_train.json", "transforms_test.json"):
        meta = json.loads((root / name).read_text())
        meta["k1"] = -2.0
        (root / name).write_text(json.dumps(meta))
    with pytest.raises(RaveError) as e:
        load_dataset(root)
    msg = str(e.value)
    assert "\n" not in msg and "transforms_train.json" in msg and "k1=-2" in msg and "cannot be inverted" in msg
    with pytest.warns(UserWarning, match="ignored"):
        assert len(load_dataset(root, undistort=False).train) == 7  # the pinhole fit still loads
