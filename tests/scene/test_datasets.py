"""Dataset loading: COLMAP (binary/text), transforms.json, splits, downscale, axes, and every bad input."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rave_viewer.errors import RaveError
from rave_viewer.scene.colmap import qvec_to_rotmat, read_model, rotmat_to_qvec
from rave_viewer.scene.datasets import downscale_image, load_dataset
from scene_checks import raises

W, H = 16, 12


def project(viewmat: torch.Tensor, K: torch.Tensor, X) -> np.ndarray:
    """Pixel (u, v) of world point X for an OpenCV world-to-camera matrix and intrinsics."""
    Xh = torch.tensor([*X, 1.0], dtype=torch.float64)
    xc = (viewmat.double() @ Xh)[:3]
    assert xc[2] > 0, "point behind the camera"
    uv = K.double() @ (xc / xc[2])
    return uv[:2].numpy()


# -- COLMAP ---------------------------------------------------------------------------------------------


def test_colmap_binary_and_text_identical(tmp_path, make_colmap):
    make_colmap(tmp_path / "b", binary=True, seed=3)
    make_colmap(tmp_path / "t", binary=False, seed=3)
    db, dt = load_dataset(tmp_path / "b"), load_dataset(tmp_path / "t")
    for a, b in ((db.train, dt.train), (db.test, dt.test)):
        assert torch.equal(a.viewmats, b.viewmats) and torch.equal(a.Ks, b.Ks)
        assert torch.equal(a.images, b.images) and a.names == b.names
        assert (a.width, a.height) == (b.width, b.height) == (W, H)
    assert torch.equal(db.points, dt.points) and torch.equal(db.point_colors, dt.point_colors)
    assert db.scene_scale == dt.scene_scale


def test_colmap_cameras_images_and_split(tmp_path, make_colmap):
    m = make_colmap(tmp_path, n=10, seed=1)
    ds = load_dataset(tmp_path)
    names = sorted(im.name for im in m.images.values())
    assert ds.test.names == [names[0], names[8]]  # every 8th by sorted name
    assert ds.train.names == [n for i, n in enumerate(names) if i % 8]
    by_name = {im.name: im for im in m.images.values()}
    for cams in (ds.train, ds.test):
        assert cams.images.dtype == torch.float32 and cams.images.shape == (len(cams), H, W, 3)
        for i, name in enumerate(cams.names):
            png = np.asarray(Image.open(tmp_path / "images" / name), dtype=np.float32) / 255
            assert torch.equal(cams.images[i], torch.from_numpy(png))
            assert torch.allclose(cams.viewmats[i], torch.from_numpy(by_name[name].viewmat()).float())
    K = torch.tensor([[14.0, 0, 8.25], [0, 13.0, 5.75], [0, 0, 1]])
    assert torch.equal(ds.train.Ks, K.expand(len(ds.train), 3, 3))
    assert torch.allclose(ds.points, torch.from_numpy(m.points).float())
    assert torch.allclose(ds.point_colors * 255, torch.from_numpy(m.colors).float())
    centers = np.stack([np.linalg.inv(by_name[n].viewmat())[:3, 3] for n in ds.train.names])
    expect = 1.1 * np.linalg.norm(centers - centers.mean(0), axis=1).max()
    assert ds.scene_scale == pytest.approx(expect, rel=1e-12)
    assert len(load_dataset(tmp_path, test_every=0).test) == 0
    assert len(load_dataset(tmp_path, test_every=0).train) == 10


@pytest.mark.parametrize(
    "model,params,K",
    [
        ("SIMPLE_PINHOLE", [14.0, 8.0, 6.0], [14.0, 14.0, 8.0, 6.0]),
        ("PINHOLE", [14.0, 13.0, 8.25, 5.75], [14.0, 13.0, 8.25, 5.75]),
        ("SIMPLE_RADIAL", [14.0, 7.5, 6.5, 0.0], [14.0, 14.0, 7.5, 6.5]),
        ("RADIAL", [14.0, 7.5, 6.5, 0.0, 0.0], [14.0, 14.0, 7.5, 6.5]),
        ("OPENCV", [14.0, 13.0, 8.0, 6.0, 0.0, 0.0, 0.0, 0.0], [14.0, 13.0, 8.0, 6.0]),
    ],
)
def test_colmap_camera_models(tmp_path, make_colmap, model, params, K):
    make_colmap(tmp_path, n=3, model=model, params=params, binary=model != "RADIAL")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero distortion: no warning
        ds = load_dataset(tmp_path, test_every=0)
    fx, fy, cx, cy = K
    assert torch.equal(ds.train.Ks[0], torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))


def test_colmap_distortion_undistorted_and_fisheye_refused(tmp_path, make_colmap, capsys):
    make_colmap(tmp_path / "a", n=3, model="OPENCV", params=[14, 13, 8, 6, 0.1, 0.01, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undistorted: a note, no warning
        ds = load_dataset(tmp_path / "a")
    assert capsys.readouterr().err == ""  # the library prints nothing: the commands print ds.notes
    assert len(ds.notes) == 1 and "undistorted 3 photos (OPENCV k1=0.1 k2=0.01)" in ds.notes[0]
    # pincushion (k1 > 0): the undistorted camera zooms in so every pixel sees the photo
    assert (ds.train.Ks[:, 0, 0] > 14.0).all()
    assert (ds.train.Ks[:, 1, 1] / ds.train.Ks[:, 0, 0] - 13 / 14).abs().max() < 1e-6  # pixel aspect kept
    with pytest.warns(UserWarning, match="distortion .*ignored"):
        raw = load_dataset(tmp_path / "a", undistort=False)
    assert torch.equal(raw.train.Ks[0], torch.tensor([[14.0, 0, 8], [0, 13, 6], [0, 0, 1]]))
    assert not raw.notes and "note:" not in capsys.readouterr().err
    make_colmap(tmp_path / "b", n=3, model="OPENCV_FISHEYE")
    msg = raises(tmp_path / "b", load_dataset, tmp_path / "b")
    assert "OPENCV_FISHEYE" in msg


def test_colmap_projection_of_known_point(tmp_path, make_colmap):
    """A world point placed at a chosen pixel of a camera projects back to that pixel."""
    m = make_colmap(tmp_path, n=4, seed=5, sparse="sparse")  # also: model directly in sparse/
    ds = load_dataset(tmp_path, test_every=0)
    im = next(i for i in m.images.values() if i.name == ds.train.names[2])
    u, v, depth = 3.0, 9.0, 2.5
    fx, fy, cx, cy = 14.0, 13.0, 8.25, 5.75
    x_cam = np.array([(u - cx) / fx * depth, (v - cy) / fy * depth, depth])
    R, t = qvec_to_rotmat(im.qvec), im.tvec
    X = R.T @ (x_cam - t)
    np.testing.assert_allclose(project(ds.train.viewmats[2], ds.train.Ks[2], X), [u, v], atol=1e-4)


def test_colmap_quaternion_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = -q if q[0] < 0 else q
        np.testing.assert_allclose(rotmat_to_qvec(qvec_to_rotmat(q)), q, atol=1e-12)


def test_colmap_prescaled_images_folder(tmp_path, make_colmap):
    make_colmap(tmp_path, n=3)
    (tmp_path / "images_2").mkdir()
    rng = np.random.default_rng(9)
    small = {}
    for p in sorted((tmp_path / "images").iterdir()):
        small[p.name] = rng.integers(0, 256, (H // 2, W // 2, 3), dtype=np.uint8)
        Image.fromarray(small[p.name]).save(tmp_path / "images_2" / p.name)
    ds = load_dataset(tmp_path, downscale=2, test_every=0)
    assert (ds.train.width, ds.train.height) == (W // 2, H // 2)
    for i, name in enumerate(ds.train.names):
        assert torch.equal(ds.train.images[i], torch.from_numpy(small[name].astype(np.float32) / 255))
    assert torch.allclose(ds.train.Ks[0], torch.tensor([[7.0, 0, 4.125], [0, 6.5, 2.875], [0, 0, 1]]))


def test_downscale_block_mean_and_intrinsics(tmp_path, make_colmap):
    make_colmap(tmp_path, n=3)
    full = load_dataset(tmp_path, test_every=0)
    half = load_dataset(tmp_path, downscale=2, test_every=0)
    assert (half.train.width, half.train.height) == (8, 6)
    expect = full.train.images.reshape(3, 6, 2, 8, 2, 3).mean(dim=(2, 4))
    assert torch.allclose(half.train.images, expect, atol=1e-6)
    assert torch.equal(half.train.Ks[:, :2], full.train.Ks[:, :2] / 2)
    third = load_dataset(tmp_path, downscale=3, test_every=0)  # 16x12 / 3 -> round: 5x4
    assert (third.train.width, third.train.height) == (5, 4)
    assert torch.allclose(third.train.Ks[0, 0], full.train.Ks[0, 0] * 5 / 16)
    assert torch.allclose(third.train.Ks[0, 1], full.train.Ks[0, 1] * 4 / 12)
    # area averaging preserves the mean colour (up to edge weights) and stays in range
    assert third.train.images.min() >= 0 and third.train.images.max() <= 1
    assert torch.allclose(third.train.images.mean(dim=(1, 2)), full.train.images.mean(dim=(1, 2)), atol=0.02)


def test_downscale_image_constant():
    img = np.full((7, 10, 3), 0.25, dtype=np.float32)
    out = downscale_image(img, 3)
    assert out.shape == (2, 3, 3) and np.allclose(out, 0.25)


# -- transforms.json ------------------------------------------------------------------------------------


def test_transforms_single_file_opengl_axes(tmp_path, make_transforms):
    truth = make_transforms(tmp_path, n=10, ext_in_path=False)  # Blender: file_path without extension
    ds = load_dataset(tmp_path)
    names = sorted(truth["frames"])
    assert ds.test.names == [names[0], names[8]]
    f = truth["focal"]
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=torch.float32)
    assert torch.allclose(ds.train.Ks, K.expand(8, 3, 3))
    for cams in (ds.train, ds.test):
        for i, name in enumerate(cams.names):
            vm, img = truth["frames"][name]
            assert torch.allclose(cams.viewmats[i], torch.from_numpy(vm).float(), atol=1e-5)
            assert torch.equal(cams.images[i], torch.from_numpy(img.astype(np.float32) / 255))
    assert ds.points.shape == (7, 3) and ds.point_colors.shape == (7, 3)
    assert 0 <= ds.point_colors.min() and ds.point_colors.max() <= 1


def test_transforms_opengl_to_opencv_projection(tmp_path):
    """An OpenGL camera at (0, 0, 5) looking down -z: a point up-right of the axis lands up-right of centre."""
    tmp_path.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    # second camera: rotated 90 degrees about y, at (5, 0, 0), looking down -x (its -z axis)
    c2w_b = np.array([[0, 0, 1, 5], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1.0]])
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "b.png")
    meta = {
        "fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 6.0, "w": W, "h": H,
        "frames": [
            {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
            {"file_path": "b.png", "transform_matrix": c2w_b.tolist()},
        ],
    }  # fmt: skip
    meta["frames"][0]["transform_matrix"][2][3] = 5.0
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path, test_every=0)
    # camera a: point (1, 0.5, 0) is 5 in front, 1 right, 0.5 up -> u = 8 + 20/5, v = 6 - 20*0.5/5
    np.testing.assert_allclose(project(ds.train.viewmats[0], ds.train.Ks[0], [1.0, 0.5, 0.0]), [12.0, 4.0], atol=1e-5)
    # camera b at x=5 looking towards -x: its right is world -z, its up is world +y
    np.testing.assert_allclose(project(ds.train.viewmats[1], ds.train.Ks[1], [0.0, 0.5, -1.0]), [12.0, 4.0], atol=1e-5)


def test_transforms_train_test_files_and_rgba(tmp_path, make_transforms):
    truth = make_transforms(tmp_path, n=6, split=True, rgba=True, intrinsics="fl", points=False)
    bg = (0.0, 0.5, 1.0)
    ds = load_dataset(tmp_path, background=bg, test_every=2)  # test_every ignored with split files
    assert ds.train.names == [f"train/r_{i}.png" for i in (0, 2, 4)]
    assert ds.test.names == [f"test/r_{i}.png" for i in (1, 3, 5)]
    assert ds.points is None and ds.point_colors is None
    assert torch.equal(ds.train.Ks[0], torch.tensor([[15.0, 0, 8.5], [0, 14.0, 5.5], [0, 0, 1]]))
    _, rgba = truth["frames"]["test/r_3.png"]
    x = rgba.astype(np.float32) / 255
    a = x[..., 3:]
    expect = x[..., :3] * a + np.array(bg, np.float32) * (1 - a)
    assert torch.allclose(ds.test.images[1], torch.from_numpy(expect), atol=1e-7)


def test_transforms_json_size_differs_from_image(tmp_path):
    """w/h in the json refer to the original size; smaller images on disk rescale K per axis."""
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    meta = {"fl_x": 40.0, "cx": 16.0, "cy": 12.0, "w": 2 * W, "h": 2 * H,
            "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}  # fmt: skip
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="all views used for training"):
        ds = load_dataset(tmp_path / "transforms.json")  # a json file path works too; 1 view -> all train
    assert len(ds.train) == 1 and len(ds.test) == 0 and ds.scene_scale == 1.0
    assert torch.equal(ds.train.Ks[0], torch.tensor([[20.0, 0, 8.0], [0, 20.0, 6.0], [0, 0, 1]]))


def test_transforms_downscale(tmp_path, make_transforms):
    make_transforms(tmp_path, n=4)
    full, half = load_dataset(tmp_path, test_every=0), load_dataset(tmp_path, downscale=2, test_every=0)
    assert torch.allclose(half.train.images, full.train.images.reshape(4, 6, 2, 8, 2, 3).mean(dim=(2, 4)), atol=1e-6)
    assert torch.allclose(half.train.Ks[:, :2], full.train.Ks[:, :2] / 2)


# -- bad input ------------------------------------------------------------------------------------------


def test_missing_and_unrecognised_folders(tmp_path):
    raises(tmp_path / "nope", load_dataset, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    msg = raises(tmp_path / "empty", load_dataset, tmp_path / "empty")
    assert "transforms.json" in msg and "sparse" in msg
    (tmp_path / "f.txt").write_text("x")
    raises(tmp_path / "f.txt", load_dataset, tmp_path / "f.txt")


def test_bad_arguments(tmp_path, make_transforms):
    make_transforms(tmp_path, n=2, points=False)
    for kw in ({"downscale": 0}, {"downscale": 1.5}, {"test_every": -1}, {"background": (1, 2)}):
        with pytest.raises(RaveError):
            load_dataset(tmp_path, **kw)


def test_colmap_bad_inputs(tmp_path, make_colmap):
    root = tmp_path / "c"
    make_colmap(root, n=4)
    (root / "images" / "img_002.png").unlink()
    raises(root / "images" / "img_002.png", load_dataset, root)
    (root / "images" / "img_002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = raises(root / "images" / "img_002.png", load_dataset, root)
    assert "cannot read image" in msg
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(root / "images" / "img_002.png")
    msg = raises(root / "images" / "img_002.png", load_dataset, root, test_every=0)
    assert f"{W}x{H + 1}" in msg and f"{W}x{H}" in msg
    shutil.rmtree(root / "images")
    raises(root, load_dataset, root)

    root = tmp_path / "t"  # truncated binary model
    make_colmap(root, n=4)
    data = (root / "sparse/0/images.bin").read_bytes()
    (root / "sparse/0/images.bin").write_bytes(data[:-30])
    msg = raises(root / "sparse/0/images.bin", load_dataset, root)
    assert "truncated" in msg
    (root / "sparse/0/images.bin").unlink()
    raises(root / "sparse/0/images.bin", load_dataset, root)

    root = tmp_path / "x"  # malformed text model
    make_colmap(root, n=4, binary=False)
    (root / "sparse/0/cameras.txt").write_text("1 PINHOLE 16 twelve 1 2 3 4\n")
    msg = raises(root / "sparse/0/cameras.txt", load_dataset, root)
    assert "line 1" in msg
    (root / "sparse/0/cameras.txt").write_text("1 PINHOLE 16 12 1 2 3\n")
    raises(root / "sparse/0/cameras.txt", load_dataset, root)
    (root / "sparse/0/cameras.txt").write_text("2 PINHOLE 16 12 14 13 8 6\n")  # images use camera 1
    raises(root / "sparse/0/images.txt", load_dataset, root)

    root = tmp_path / "e"  # no registered images
    make_colmap(root, n=1)
    m = read_model(root / "sparse/0")
    assert len(m.images) == 1
    (root / "sparse/0/images.bin").write_bytes(b"\0" * 8)
    raises(root / "sparse/0", load_dataset, root)


def test_transforms_bad_inputs(tmp_path, make_transforms):
    make_transforms(tmp_path, n=3, points=False)
    js = tmp_path / "transforms.json"
    good = json.loads(js.read_text())

    def write(meta):
        js.write_text(json.dumps(meta) if not isinstance(meta, str) else meta)

    write('{"frames": [ ')
    assert "invalid JSON" in raises(js, load_dataset, tmp_path)
    write({"camera_angle_x": 1.0})
    assert "'frames'" in raises(js, load_dataset, tmp_path)
    write({"camera_angle_x": 1.0, "frames": []})
    raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    del bad["frames"][1]["transform_matrix"]
    write(bad)
    assert "'transform_matrix'" in raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    bad["frames"][1]["transform_matrix"] = [[1, 2], [3, 4]]
    write(bad)
    assert "'transform_matrix'" in raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    del bad["frames"][0]["file_path"]
    write(bad)
    assert "'file_path'" in raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    del bad["camera_angle_x"]
    write(bad)
    assert "'camera_angle_x'" in raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    bad["camera_angle_x"] = "wide"
    write(bad)
    assert "'camera_angle_x'" in raises(js, load_dataset, tmp_path)
    bad = json.loads(json.dumps(good))
    bad["frames"][2]["file_path"] = "./train/missing"
    write(bad)
    raises(tmp_path / "train" / "missing", load_dataset, tmp_path)
    write(good)
    (tmp_path / "points3d.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n")
    raises(tmp_path / "points3d.ply", load_dataset, tmp_path)


def test_empty_test_file_and_numpy_ints(tmp_path, make_transforms):
    make_transforms(tmp_path, n=4, split=True, points=False)
    meta = json.loads((tmp_path / "transforms_test.json").read_text())
    meta["frames"] = []
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path, downscale=np.int64(2), test_every=np.int32(8))
    assert len(ds.train) == 2 and len(ds.test) == 0
    assert ds.test.images.shape == (0, H // 2, W // 2, 3) and (ds.test.width, ds.test.height) == (8, 6)


# -- lens distortion and point-cloud colours ----------------------------------------------------------------


def test_colmap_full_opencv_and_radial_models_are_undistorted(tmp_path, make_colmap, capsys):
    params = {"FULL_OPENCV": [14, 13, 8, 6, -0.1, 0.01, 0.001, -0.001, 0.002, 0.01, 0.0, 0.0],
              "RADIAL": [14, 8, 6, -0.1, 0.01], "SIMPLE_RADIAL": [14, 8, 6, 0.08]}
    for model, p in params.items():
        make_colmap(tmp_path / model, n=3, model=model, params=p)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = load_dataset(tmp_path / model, test_every=0)
        assert len(ds.notes) == 1 and f"undistorted 3 photos ({model} k1=" in ds.notes[0]
        K = ds.train.Ks[0]
        assert (K[0, 0] < 14) == (p[3 if model != "FULL_OPENCV" else 4] < 0)  # barrel widens, pincushion crops
        assert ds.train.images.shape == (3, H, W, 3) and 0 <= ds.train.images.min() <= ds.train.images.max() <= 1


def test_transforms_lens_keys(tmp_path, make_transforms, capsys):
    make_transforms(tmp_path / "a", n=3, intrinsics="fl")
    js = tmp_path / "a" / "transforms.json"
    meta = json.loads(js.read_text())
    meta.update(k1=-0.05, p2=0.001)
    meta["frames"][1]["k1"] = 0.02  # per-frame override
    js.write_text(json.dumps(meta))
    ds = load_dataset(tmp_path / "a", test_every=0)
    assert len(ds.notes) == 1 and "undistorted 3 photos (2 lens models)" in ds.notes[0]
    names = [n.split("/")[-1] for n in ds.train.names]
    fx = {n: float(ds.train.Ks[i, 0, 0]) for i, n in enumerate(names)}
    assert fx["r_1.png"] > 15.0 > fx["r_0.png"]  # k1 > 0 crops in, k1 < 0 widens (nominal fl_x 15)
    for key, value, words in (("k4", 0.1, "'k4' is not supported"), ("camera_model", "OPENCV_FISHEYE", "not supported"),
                              ("k1", "x", "'k1' must be a finite number")):
        bad = json.loads(js.read_text())
        bad[key] = value
        js.write_text(json.dumps(bad))
        assert words in raises(js, load_dataset, tmp_path / "a")
        js.write_text(json.dumps(meta))
    meta.update(k1=0.0, p2=0.0, k4=0.0, camera_model="OPENCV")  # zero coefficients: a plain pinhole, silently
    del meta["frames"][1]["k1"]
    js.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not load_dataset(tmp_path / "a", test_every=0).notes
    assert capsys.readouterr().err == ""


def test_point_cloud_nan_colours_counted_in_one_warning(tmp_path):
    from plyfile import PlyData, PlyElement

    from rave_viewer.scene.datasets import read_points_ply

    v = np.zeros(5, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "f4"), ("green", "f4"), ("blue", "f4")])
    v["red"] = [0.5, np.nan, np.inf, 0.2, 2.0]
    v["blue"] = [0.1, 0.1, 0.1, -np.inf, 0.3]
    ply = tmp_path / "p.ply"
    PlyData([PlyElement.describe(v, "vertex")]).write(str(ply))
    with pytest.warns(UserWarning) as rec:
        _, cols = read_points_ply(ply)
    assert len(rec) == 1 and f"{ply}: 3 of 5 points have NaN/inf colours" in str(rec[0].message)
    np.testing.assert_allclose(cols[:, 0].numpy(), [0.5, 0.0, 1.0, 0.2, 1.0])
    assert float(cols[3, 2]) == 0.0
    v["red"][1:3] = 0.3
    v["blue"][3] = 0.3
    PlyData([PlyElement.describe(v, "vertex")]).write(str(ply))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite colours out of range are clipped without a word
        read_points_ply(ply)
