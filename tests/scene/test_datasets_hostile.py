"""Hostile dataset inputs, each the exact input of a reported failure: one RaveError line naming the file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rave_viewer.errors import RaveError
from rave_viewer.scene import datasets
from rave_viewer.scene.colmap import read_model, write_colmap_binary, write_colmap_text
from rave_viewer.scene.datasets import MAX_DOWNSCALE, MAX_IMAGE_PIXELS, load_dataset, load_image, read_points_ply
from scene_checks import raises

W, H = 16, 12


def _png(path: Path, w: int, h: int, full: bool = True) -> Path:
    """A grayscale w x h PNG of zeros written without holding the pixels (``full=False``: header only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    if full:
        row = bytes(w + 1)  # filter byte 0 + w zero pixels
        idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    else:
        idat = comp.compress(bytes(w + 1)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def _peak_mb() -> float:
    return tracemalloc.get_traced_memory()[1] / 1e6


# -- COLMAP: sizes, counts, numbers -------------------------------------------------------------------------


def test_colmap_zero_width_or_height(tmp_path, make_colmap):
    for binary in (True, False):
        for attr in ("width", "height"):
            root = tmp_path / f"{binary}{attr}"
            m = make_colmap(root, n=3, binary=binary)
            setattr(m.cameras[1], attr, 0)
            (write_colmap_binary if binary else write_colmap_text)(m, root / "sparse/0")
            cams = root / "sparse/0" / ("cameras.bin" if binary else "cameras.txt")
            msg = raises(cams, load_dataset, root)  # was ZeroDivisionError
            assert "width and height" in msg and ("0x12" in msg or "16x0" in msg)


def _patch(path: Path, offset: int, fmt: str, value) -> None:
    b = bytearray(path.read_bytes())
    struct.pack_into("<" + fmt, b, offset, value)
    path.write_bytes(bytes(b))


def test_colmap_points_count_2_pow_40(tmp_path, make_colmap, traced):
    make_colmap(tmp_path, n=3)
    pts = tmp_path / "sparse/0/points3D.bin"
    _patch(pts, 0, "Q", 2**40)  # was MemoryError: np.empty((2**40, 3)) is 24 TiB
    msg = raises(pts, load_dataset, tmp_path)
    assert f"declares {2**40} 3D points" in msg and "bytes follow" in msg
    assert _peak_mb() < 20


def test_colmap_counts_beyond_the_payload(tmp_path, make_colmap, traced):
    root = tmp_path / "c"
    make_colmap(root, n=2, n_points=2)
    sparse = root / "sparse/0"
    pristine = {f: (sparse / f).read_bytes() for f in ("cameras.bin", "images.bin", "points3D.bin")}
    name_end = pristine["images.bin"].index(b"\0", 8 + 64) + 1  # after the first image's name
    point_track = 8 + 8 + 24 + 3 + 8  # count, id, xyz, rgb, error -> the first track length
    cases = [
        ("cameras.bin", 0, 2**64 - 1, "cameras"),
        ("images.bin", 0, 2**40, "images"),
        ("images.bin", name_end, 2**60, "2D points for image"),
        ("points3D.bin", point_track, 2**61, "track of"),
    ]
    for fname, offset, value, words in cases:
        for f, b in pristine.items():
            (sparse / f).write_bytes(b)
        _patch(sparse / fname, offset, "Q", value)
        msg = raises(sparse / fname, load_dataset, root)
        assert words in msg and str(value) in msg and "bytes follow" in msg
    assert _peak_mb() < 20


def test_colmap_unknown_model_id(tmp_path, make_colmap):
    make_colmap(tmp_path, n=2)
    cams = tmp_path / "sparse/0/cameras.bin"
    _patch(cams, 8 + 4, "i", 99)
    assert "unknown COLMAP model id 99" in raises(cams, load_dataset, tmp_path)


def test_colmap_text_colour_300(tmp_path, make_colmap):
    make_colmap(tmp_path, n=2, binary=False)
    pts = tmp_path / "sparse/0/points3D.txt"
    lines = pts.read_text().splitlines()
    e = lines[1].split()
    e[4] = "300"  # was OverflowError from np.array(..., dtype=np.uint8)
    lines[1] = " ".join(e)
    pts.write_text("\n".join(lines) + "\n")
    msg = raises(pts, load_dataset, tmp_path)
    assert "line 2" in msg and "300" in msg and "0..255" in msg


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    "what,edit,file,words",
    [
        ("focal nan", lambda m: m.cameras[1].params.__setitem__(0, np.nan), "cameras", "non-finite parameters"),
        ("cx inf", lambda m: m.cameras[1].params.__setitem__(2, np.inf), "cameras", "non-finite parameters"),
        ("focal negative", lambda m: m.cameras[1].params.__setitem__(1, -13.0), "cameras", "positive focal"),
        ("qvec nan", lambda m: m.images[2].qvec.__setitem__(1, np.nan), "images", "non-finite pose"),
        ("tvec -inf", lambda m: m.images[1].tvec.__setitem__(0, -np.inf), "images", "non-finite pose"),
        ("qvec zero", lambda m: setattr(m.images[1], "qvec", np.zeros(4)), "images", "zero quaternion"),
        ("tvec 1e300", lambda m: m.images[1].tvec.__setitem__(0, 1e300), "images", "too large for float32"),
        ("point nan", lambda m: m.points.__setitem__((3, 1), np.nan), "points3D", "non-finite coordinates"),
        ("point 1e300", lambda m: m.points.__setitem__((0, 0), 1e300), "points3D", "too large for float32"),
    ],
)
def test_colmap_non_finite_numbers_refused(tmp_path, make_colmap, binary, what, edit, file, words):
    m = make_colmap(tmp_path, n=3, binary=binary)
    edit(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the writers' own arithmetic on NaN
        (write_colmap_binary if binary else write_colmap_text)(m, tmp_path / "sparse/0")
    path = tmp_path / "sparse/0" / (file + (".bin" if binary else ".txt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused without numpy warnings on the way
        assert words in raises(path, load_dataset, tmp_path)


def test_colmap_huge_but_valid_quaternion_loads(tmp_path, make_colmap):
    """A quaternion is normalised without overflow: 1e300 x q is the same rotation as q."""
    m = make_colmap(tmp_path / "a", n=3, seed=4)
    ref = load_dataset(tmp_path / "a", test_every=0)
    for im in m.images.values():
        im.qvec = im.qvec * 1e300
    write_colmap_binary(m, tmp_path / "a/sparse/0")
    big = load_dataset(tmp_path / "a", test_every=0)
    assert torch.allclose(big.train.viewmats, ref.train.viewmats, atol=1e-6)


def test_colmap_truncated_at_every_byte(tmp_path, make_colmap):
    make_colmap(tmp_path, n=1, n_points=2)
    sparse = tmp_path / "sparse/0"
    pristine = {f: (sparse / f).read_bytes() for f in ("cameras.bin", "images.bin", "points3D.bin")}
    outcomes = {"ok": 0, "error": 0}
    for fname, data in pristine.items():
        for cut in range(len(data)):
            (sparse / fname).write_bytes(data[:cut])
            try:
                read_model(sparse)
                outcomes["ok"] += 1
            except RaveError as e:
                assert "\n" not in str(e) and str(sparse / fname) in str(e)
                outcomes["error"] += 1
        (sparse / fname).write_bytes(data)
    assert outcomes["ok"] == 0  # every proper prefix of these files is refused
    assert outcomes["error"] == sum(map(len, pristine.values()))


# -- paths outside the dataset folder ------------------------------------------------------------------------


@pytest.fixture
def secret(tmp_path) -> Path:
    """A W x H image outside every dataset folder of the test, magenta so a leak is visible."""
    p = tmp_path / "private" / "secret.png"
    p.parent.mkdir()
    Image.fromarray(np.full((H, W, 3), (255, 0, 255), np.uint8)).save(p)
    return p


def _has_secret(ds) -> bool:
    magenta = torch.tensor([1.0, 0.0, 1.0])
    return any(torch.equal(img, magenta.expand_as(img)) for img in torch.cat([ds.train.images, ds.test.images]))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked_folder"])
def test_colmap_image_outside_the_folder(tmp_path, make_colmap, secret, how):
    root = tmp_path / "ds"
    m = make_colmap(root, n=3)
    im = m.images[2]
    if how == "absolute":
        im.name = str(secret)
    elif how == "dotdot":
        im.name = "../../private/secret.png"
    elif how == "symlink":
        (root / "images" / im.name).unlink()
        (root / "images" / im.name).symlink_to(secret)
    else:
        im.name = "photos/secret.png"
        (root / "images" / "photos").symlink_to(secret.parent, target_is_directory=True)
    write_colmap_binary(m, root / "sparse/0")
    msg = raises(root / "sparse/0/images.bin", load_dataset, root)
    assert "outside the dataset folder" in msg and str(root) in msg and "--allow-outside-paths" in msg
    if how in ("absolute", "dotdot"):
        assert im.name in msg  # the offending path as written
    ds = load_dataset(root, allow_outside_paths=True)  # the opt-out reads it
    assert _has_secret(ds)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "no_extension"])
def test_transforms_image_outside_the_folder(tmp_path, make_transforms, secret, how):
    root = tmp_path / "ds"
    make_transforms(root, n=3, points=False)
    js = root / "transforms.json"
    meta = json.loads(js.read_text())
    fp = {"absolute": str(secret), "dotdot": "../private/secret.png", "no_extension": "../private/secret"}.get(how)
    if how == "symlink":
        (root / "train" / "r_1.png").unlink()
        (root / "train" / "r_1.png").symlink_to(secret)
    else:
        meta["frames"][1]["file_path"] = fp
    js.write_text(json.dumps(meta))
    msg = raises(js, load_dataset, root)
    assert "frame 1" in msg and "outside the dataset folder" in msg
    if fp is not None:
        assert fp in msg
    assert _has_secret(load_dataset(root, allow_outside_paths=True, test_every=0))


def test_transforms_point_cloud_outside_the_folder(tmp_path, make_transforms):
    root = tmp_path / "ds"
    make_transforms(root, n=3, points=True)
    outside = tmp_path / "elsewhere.ply"
    (root / "points3d.ply").rename(outside)
    js = root / "transforms.json"
    meta = json.loads(js.read_text())
    meta["ply_file_path"] = "../elsewhere.ply"
    js.write_text(json.dumps(meta))
    assert "'ply_file_path'" in raises(js, load_dataset, root)
    assert load_dataset(root, allow_outside_paths=True).points.shape == (7, 3)
    del meta["ply_file_path"]
    js.write_text(json.dumps(meta))
    (root / "points3d.ply").symlink_to(outside)
    assert "outside the dataset folder" in raises(root / "points3d.ply", load_dataset, root)


def test_nul_and_duplicate_image_paths(tmp_path, make_transforms, make_colmap):
    root = tmp_path / "t"
    make_transforms(root, n=3, points=False)
    js = root / "transforms.json"
    meta = json.loads(js.read_text())
    meta["frames"][0]["file_path"] = "./train/r_0\0.png"  # was ValueError: embedded null byte
    js.write_text(json.dumps(meta))
    assert "NUL" in raises(js, load_dataset, root)
    meta["frames"][0]["file_path"] = meta["frames"][2]["file_path"].removesuffix(".png")  # same file, other text
    js.write_text(json.dumps(meta))
    msg = raises(js, load_dataset, root)
    assert "frame 2" in msg and "frame 0" in msg and "same image file" in msg

    root = tmp_path / "c"
    m = make_colmap(root, n=3)
    m.images[3].name = m.images[1].name
    write_colmap_binary(m, root / "sparse/0")
    assert "same image file" in raises(root / "sparse/0/images.bin", load_dataset, root)


# -- transforms.json: numbers, nesting, types ----------------------------------------------------------------


def _transforms(tmp_path, make_transforms) -> tuple[Path, dict]:
    make_transforms(tmp_path, n=3, points=False)
    js = tmp_path / "transforms.json"
    return js, json.loads(js.read_text())


@pytest.mark.parametrize(
    "text,words",
    [
        ('"fl_x": ' + "9" * 400, "400 digits"),  # was OverflowError (int too large to convert to float)
        ('"fl_x": ' + "9" * 5000, "5000 digits"),  # was ValueError (int max str digits)
        ('"fl_x": 1e400', "1e400 does not fit a float"),  # the shared strict reader (jsonio.py)
        ('"fl_x": -1e400', "-1e400 does not fit a float"),
        ('"fl_x": NaN', "NaN is not a finite number"),
        ('"camera_angle_x": Infinity', "Infinity is not a finite number"),
        ('"camera_angle_x": -Infinity', "-Infinity is not a finite number"),
        ('"camera_angle_x": 3.2', "below pi"),
        ('"fl_x": "20"', "'fl_x' must be a positive number"),
        ('"fl_x": [20]', "'fl_x' must be a positive number"),
        ('"fl_x": true', "'fl_x' must be a positive number"),
        ('"w": 0', "'w' must be a positive number"),
        ('"h": -12', "'h' must be a positive number"),
        ('"cx": {"a": 1}', "'cx' must be a finite number"),
        ('"ply_file_path": 7', "'ply_file_path' must be a string"),
    ],
)
def test_transforms_bad_numbers_and_types(tmp_path, make_transforms, text, words):
    js, meta = _transforms(tmp_path, make_transforms)
    raw = json.dumps(meta)
    if "camera_angle_x" in text:
        js.write_text(raw.replace('"camera_angle_x": 0.9', text))
    else:
        js.write_text(raw[:-1] + ", " + text + "}")
    assert words in raises(js, load_dataset, tmp_path)


@pytest.mark.parametrize(
    "matrix",
    ["NaN", "[[1, 0, 0, Infinity], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]",
     "[[1e400, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]", "[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]",
     '"eye"', '{"a": 1}', "[[1e300, 0, 0, 0], [0, 1e300, 0, 0], [0, 0, 1e300, 0], [0, 0, 0, 1]]",
     "[[1, 0, 0, 1e39], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]", "[" * 100 + "]" * 100, "[[" + "9" * 300 + "]]"],
)  # fmt: skip
def test_transforms_bad_matrix(tmp_path, make_transforms, matrix):
    js, meta = _transforms(tmp_path, make_transforms)
    meta["frames"][1]["transform_matrix"] = "@@M@@"
    js.write_text(json.dumps(meta).replace('"@@M@@"', matrix))
    msg = raises(js, load_dataset, tmp_path)
    assert any(w in msg for w in ("frame 1", "not a finite number", "does not fit a float", "digits", "nested deeper"))


@pytest.mark.parametrize(
    "doc,words",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # was RecursionError
        ('{"frames": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"camera_angle_x": 0.9}', "missing key 'frames'"),
        ('{"frames": {"0": {}}}', "'frames' must be a list"),
        ('{"frames": "r_0.png"}', "'frames' must be a list"),
        ('{"frames": [["./train/r_0.png"]]}', "frame 0: expected an object"),
        ('{"frames": [{"file_path": 5}]}', "'file_path'"),
        ("[1, 2]", "expected a JSON object"),
        ("\udcff", "not UTF-8"),
    ],
)
def test_transforms_bad_documents(tmp_path, make_transforms, doc, words):
    js, _ = _transforms(tmp_path, make_transforms)
    js.write_text(doc, errors="surrogateescape")
    assert words in raises(js, load_dataset, tmp_path)


# -- points3d.ply -----------------------------------------------------------------------------------------


def test_ply_element_bomb_refused_before_allocation(tmp_path, traced):
    ply = tmp_path / "points3d.ply"
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
    header += "property float z\nelement face 300000000\nproperty list uchar int vertex_indices\nend_header\n"
    ply.write_bytes(header.encode() + struct.pack("<3f", 1, 2, 3))
    msg = raises(ply, read_points_ply, ply)
    assert "'face'" in msg and "300000000" in msg and _peak_mb() < 10
    ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 300000000\nproperty float x\nproperty float y\n"
                    b"property float z\nend_header\n1 2 3\n")  # fmt: skip
    msg = raises(ply, read_points_ply, ply)
    assert "'vertex'" in msg and "300000000" in msg
    assert _peak_mb() < 10


def test_ply_list_property_and_endless_header(tmp_path):
    ply = tmp_path / "points3d.ply"
    ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\nproperty float y\n"
                    b"property float z\nend_header\n2 1 2 3 4\n")  # fmt: skip
    assert "list property 'x'" in raises(ply, read_points_ply, ply)  # was ValueError from np.asarray
    ply.write_bytes(b"ply\nformat ascii 1.0\n" + b"comment " + b"x" * (2 << 20))
    assert "end_header" in raises(ply, read_points_ply, ply)
    ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                    b"property float z\nend_header\n1 2 3\n4 5 6\n")  # fmt: skip
    points, colors = read_points_ply(ply)
    assert points.tolist() == [[1, 2, 3], [4, 5, 6]] and torch.all(colors == 0.5)


# -- images: size from the header, memory ------------------------------------------------------------------


_BOMB_CHILD = r"""
import resource, sys, warnings
import numpy as np
from pathlib import Path
from rave_viewer.errors import RaveError
from rave_viewer.scene.datasets import load_dataset, load_image

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

warnings.simplefilter("error")  # no DecompressionBombWarning (or any other) on the way
png, root = Path(sys.argv[1]), Path(sys.argv[2])
before = rss_mb()
for fn in (lambda: load_image(png, np.zeros(3, np.float32)), lambda: load_dataset(root)):
    try:
        fn()
        print("LOADED")
    except RaveError as e:
        print("ERROR", e)
print("RSS_DELTA_MB", rss_mb() - before)
"""


def test_decompression_bomb_png_refused_small(tmp_path, make_transforms):
    root = tmp_path / "ds"
    make_transforms(root, n=3, points=False)
    big = _png(root / "train" / "r_1.png", 12000, 12000)  # 144 megapixels: 3.7 GB decoded before
    assert big.stat().st_size < 200_000
    env = dict(os.environ, PYTHONPATH=str(Path(datasets.__file__).parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, str(big), str(root)], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 2, out.stdout + out.stderr[-2000:]
    for line in errors:
        msg = line.split(" ", 1)[1]
        assert str(big) in msg and "12000x12000" in msg and "megapixels" in msg, msg
    rss_delta = float(lines[-1].split()[1])
    assert rss_delta < 100, f"refusing the image raised peak memory by {rss_delta:.0f} MB"


def test_image_above_pillow_bomb_limit_is_one_line(tmp_path):
    """Pillow raises DecompressionBombError above 2 x its limit; that is a RaveError too, header only."""
    png = _png(tmp_path / "huge.png", 30000, 30000, full=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = raises(png, load_image, png, np.zeros(3, np.float32))
        assert "30000x30000" in msg or "too large" in msg
        msg = raises(png, datasets.image_size, png)


def test_image_limit_and_legit_large_image(tmp_path):
    assert 64e6 <= MAX_IMAGE_PIXELS <= 100e6  # room for 8k x 8k, far from gigabytes per image
    assert MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS  # Pillow never warns about an accepted image
    ok = _png(tmp_path / "ok.png", 4000, 3000)  # a 12 MP phone photo
    assert datasets.image_size(ok) == (4000, 3000)
    assert "megapixels" in raises(ok, load_image, ok, np.zeros(3, np.float32), max_pixels=4000 * 3000 - 1)


def test_sizes_checked_before_any_decode(tmp_path, make_transforms, monkeypatch):
    make_transforms(tmp_path, n=4, points=False)
    Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(tmp_path / "train" / "r_3.png")
    decoded = []
    real = datasets.load_image
    monkeypatch.setattr(datasets, "load_image", lambda p, bg: decoded.append(p) or real(p, bg))
    msg = raises(tmp_path / "train" / "r_3.png", load_dataset, tmp_path, test_every=0)
    assert f"{W}x{H + 2}" in msg and decoded == []  # refused from the headers: nothing decoded


def test_dataset_larger_than_memory_refused(tmp_path, make_transforms, monkeypatch):
    make_transforms(tmp_path, n=4, points=False)
    monkeypatch.setattr(datasets, "_physical_memory", lambda: 4 * W * H * 12 - 1)
    msg = raises(tmp_path, load_dataset, tmp_path, test_every=0)
    assert "4 images need" in msg and "downscale" in msg
    monkeypatch.setattr(datasets, "_physical_memory", lambda: 4 * W * H * 12)
    assert len(load_dataset(tmp_path, test_every=0).train) == 4


def test_argument_bounds(tmp_path, make_transforms):
    make_transforms(tmp_path, n=2, points=False)
    for kw in ({"downscale": MAX_DOWNSCALE + 1}, {"downscale": 10**5000}, {"test_every": -(10**5000)},
               {"background": (10**400, 0, 0)}, {"background": (10**5000, 0, 0)},
               {"background": (float("nan"), 0, 0)}):  # fmt: skip
        with pytest.raises(RaveError) as ei:
            load_dataset(tmp_path, **kw)
        assert "\n" not in str(ei.value)
    assert load_dataset(tmp_path, downscale=MAX_DOWNSCALE, test_every=0).train.width == 1
