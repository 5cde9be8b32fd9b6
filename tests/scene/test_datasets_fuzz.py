"""Seeded structured fuzzing of dataset loading: any COLMAP, transforms.json or PLY input ends cleanly.

Each fuzzer starts from a valid dataset and applies a few structured mutations (huge and non-finite
numbers, zero sizes, counts beyond the payload, wrong types, deep nesting, paths leading outside the
folder, truncation, random bytes). Every case must end in a RaveError naming a file, or in a Dataset whose
numbers are finite and whose images all come from inside the dataset folder; peak traced memory and time
per case are bounded.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rave_viewer.errors import RaveError
from rave_viewer.scene.colmap import MODEL_IDS, read_model
from rave_viewer.scene.datasets import Dataset, load_dataset, read_points_ply

pytestmark = pytest.mark.timeout(120)  # a hang fails the test instead of the whole run

CASES = 250  # per fuzzer; all four together take about 12 s on two busy cores
MAX_CASE_SECONDS = 5.0
MAX_CASE_BYTES = 64 << 20  # peak traced (Python + numpy) allocation per case
SECRET = (255, 0, 255)  # colour of the image outside the dataset folder: must never be loaded


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> dict:
    """An 'outside' folder with a secret image (same size as the dataset images) and paths pointing at it."""
    base = tmp_path_factory.mktemp("fuzz")
    outside = base / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    Image.fromarray(np.full((12, 16, 3), SECRET, np.uint8)).save(secret)
    return {"base": base, "secret": secret}


def _run(fn, root: Path, arena: dict) -> str:
    """'ok' or 'error' for one case; any other outcome fails the test."""
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # distortion, single-view split, ...
            out = fn()
    except RaveError as e:
        msg = str(e)
        assert "\n" not in msg and e.path is not None, msg
        assert str(arena["base"]) in msg, msg  # names a file of the case
        result = "error"
    else:
        _assert_clean(out, arena)
        result = "ok"
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    assert dt < MAX_CASE_SECONDS, f"case took {dt:.1f} s"
    assert peak < MAX_CASE_BYTES, f"case allocated {peak / 1e6:.0f} MB"
    return result


def _assert_clean(out, arena: dict) -> None:
    if isinstance(out, Dataset):
        for cams in (out.train, out.test):
            assert torch.isfinite(cams.viewmats).all() and torch.isfinite(cams.Ks).all()
            assert (cams.Ks[:, 0, 0] > 0).all() and (cams.Ks[:, 1, 1] > 0).all()
            assert cams.images.shape == (len(cams), cams.height, cams.width, 3)
            if len(cams):
                assert cams.images.min() >= 0 and cams.images.max() <= 1
            secret = torch.tensor(SECRET, dtype=torch.float32) / 255
            for img in cams.images:  # no image of the outside folder was read
                assert not torch.equal(img, secret.expand_as(img))
        assert math.isfinite(out.scene_scale) and out.scene_scale > 0
        points, colors = out.points, out.point_colors
    else:
        points, colors = out
    if points is not None:
        assert torch.isfinite(points).all() and points.dtype == torch.float32
        assert colors.shape == points.shape and (colors >= 0).all() and (colors <= 1).all()


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def _outcomes_summary(outcomes: list[str]) -> None:
    # Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert "ok" in outcomes and "error" in outcomes, outcomes.count("ok")


# -- COLMAP binary ------------------------------------------------------------------------------------------

_Q_VALUES = [0, 1, 2, 3, 7, 2**31, 2**32, 2**40, 2**63, 2**64 - 1]
_I_VALUES = [0, -1, 1, 2, 5, 99, 2**31 - 1, -(2**31)]
_D_VALUES = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e308, -1e308, 5e-324, 1e-300, 1e300, 3.5e38, 1e20]


def _bin_fields(model) -> dict[str, list[list]]:
    """Each binary file as a list of [struct code, value] fields (name fields use code 'name')."""
    cams = [["Q", len(model.cameras)]]
    for c in model.cameras.values():
        cams += [["i", c.id], ["i", MODEL_IDS[c.model][0]], ["Q", c.width], ["Q", c.height]]
        cams += [["d", float(v)] for v in c.params]
    imgs = [["Q", len(model.images)]]
    for im in model.images.values():
        imgs += [["i", im.id]] + [["d", float(v)] for v in (*im.qvec, *im.tvec)] + [["i", im.camera_id]]
        imgs += [["name", im.name.encode()], ["Q", 2]]  # two keypoints (x, y, point3D_id)
        imgs += [["d", 1.0], ["d", 2.0], ["q", -1], ["d", 3.0], ["d", 4.0], ["q", 1]]
    pts = [["Q", len(model.points)]]
    for i, (p, c) in enumerate(zip(model.points, model.colors)):
        pts += [["Q", i + 1]] + [["d", float(v)] for v in p] + [["B", int(v)] for v in c]
        pts += [["d", 0.5], ["Q", 1], ["i", 1], ["i", 0]]
    return {"cameras.bin": cams, "images.bin": imgs, "points3D.bin": pts}


def _pack(fields: list[list]) -> bytes:
    out = []
    for code, v in fields:
        out.append(v + b"\0" if code == "name" else struct.pack("<" + code, v))
    return b"".join(out)


def _names(arena: dict, root: Path) -> list[bytes]:
    secret = arena["secret"]
    return [
        b"", b".", b"..", str(secret).encode(), os.path.relpath(secret, root / "images").encode(),
        b"link.png", b"linkdir/secret.png", b"img_000.png", b"sub/../img_001.png", b"img\xff\xfe.png",
        b"a" * 5000, b"/", b"images/../../outside/secret.png",
    ]  # fmt: skip


def _links(root: Path, arena: dict) -> None:
    """Symlinks inside the dataset to the outside folder (a file and a folder)."""
    (root / "images" / "link.png").symlink_to(arena["secret"])
    (root / "images" / "linkdir").symlink_to(arena["secret"].parent, target_is_directory=True)


def test_fuzz_colmap_binary(tmp_path, make_colmap, arena, traced):
    root = arena["base"] / "colmap_bin"
    model = make_colmap(root, n=3, n_points=4, seed=2)
    _links(root, arena)
    sparse = root / "sparse" / "0"
    rng = np.random.default_rng(1234)
    names = _names(arena, root)
    outcomes = []
    for case in range(CASES):
        files = _bin_fields(model)
        data = {}
        for _ in range(int(rng.integers(1, 4))):
            fname = str(rng.choice(list(files)))
            fields = files[fname]
            k = int(rng.integers(len(fields)))
            code = fields[k][0]
            pool = {"Q": _Q_VALUES, "i": _I_VALUES, "q": _I_VALUES, "d": _D_VALUES, "B": [0, 255, 128], "name": names}
            fields[k][1] = pool[code][int(rng.integers(len(pool[code])))]
        for fname, fields in files.items():
            data[fname] = _pack(fields)
        if rng.random() < 0.3:  # byte-level damage on top
            fname = str(rng.choice(list(data)))
            b = bytearray(data[fname])
            kind = rng.integers(3)
            if kind == 0:
                b = b[: int(rng.integers(len(b) + 1))]
            elif kind == 1:
                b += rng.bytes(int(rng.integers(1, 64)))
            else:
                for _ in range(int(rng.integers(1, 5))):
                    b[int(rng.integers(len(b)))] = int(rng.integers(256))
            data[fname] = bytes(b)
        for fname, b in data.items():
            (sparse / fname).write_bytes(b)
        outcomes.append(_run(lambda: load_dataset(root), root, arena))
    _outcomes_summary(outcomes)


# -- COLMAP text --------------------------------------------------------------------------------------------


def _text_tokens(arena: dict, root: Path) -> list[str]:
    return [
        "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "0", "-1", "1e-320", "9" * 400, "9" * 5000, "300", "-5",
        "256", "abc", "", "1.5", "0x10", "1_0", "\u0661\u0662", "\x00", "\ufffd", "PINHOLE", "OPENCV_FISHEYE",
        str(arena["secret"]), os.path.relpath(arena["secret"], root / "images"), "link.png", "linkdir/secret.png",
        "img_000.png", "a b c.png",
    ]  # fmt: skip


def test_fuzz_colmap_text(tmp_path, make_colmap, arena, traced):
    root = arena["base"] / "colmap_txt"
    make_colmap(root, n=3, n_points=4, seed=3, binary=False)
    _links(root, arena)
    sparse = root / "sparse" / "0"
    base = {f: (sparse / f).read_text().splitlines() for f in ("cameras.txt", "images.txt", "points3D.txt")}
    tokens = _text_tokens(arena, root)
    rng = np.random.default_rng(4321)
    outcomes = []
    for case in range(CASES):
        files = {f: [line.split(" ") for line in lines] for f, lines in base.items()}
        for _ in range(int(rng.integers(1, 4))):
            lines = files[str(rng.choice(list(files)))]
            data_rows = [i for i, row in enumerate(lines) if row and not row[0].startswith("#")] or [0]
            r = data_rows[int(rng.integers(len(data_rows)))]
            row = lines[r]
            op = rng.integers(6)
            if op <= 2 and row:  # replace a token (most common)
                row[int(rng.integers(len(row)))] = tokens[int(rng.integers(len(tokens)))]
            elif op == 3 and row:
                del row[int(rng.integers(len(row)))]
            elif op == 4:
                lines.insert(r, list(row))
            else:
                del lines[r]
        text = {f: "\n".join(" ".join(row) for row in lines) + "\n" for f, lines in files.items()}
        if rng.random() < 0.2:
            f = str(rng.choice(list(text)))
            text[f] = text[f][: int(rng.integers(len(text[f]) + 1))]
        for f, t in text.items():
            (sparse / f).write_text(t, encoding="utf-8", errors="surrogateescape")
        outcomes.append(_run(lambda: load_dataset(root), root, arena))
    _outcomes_summary(outcomes)


# -- transforms.json ----------------------------------------------------------------------------------------


class _Raw:
    """A literal JSON text spliced in place of a value (NaN, 400-digit numbers, deep nesting...)."""

    def __init__(self, text: str):
        self.text = text


def _json_values(arena: dict) -> tuple[list, list]:
    """(common values, rare values): the rare ones (deep nesting, literals the parser refuses) end a case."""
    deep = 5000
    rare = [
        _Raw("NaN"), _Raw("Infinity"), _Raw("-Infinity"), _Raw("9" * 400), _Raw("9" * 5000),
        _Raw("[" * deep + "]" * deep), _Raw("[" * 100_000 + "]" * 100_000), _Raw('{"a":' * deep + "1" + "}" * deep),
    ]  # fmt: skip
    common = [
        _Raw("1e400"), _Raw("-1e400"), _Raw("1" + "0" * 300), 0, -1, 1e308, 5e-324, 1e-200, 0.5, 3.2, 4.0, 16, 20.0,
        "str", "", [], {}, None, True, [[1, 2], [3, 4]], [0] * 1000, {"a": 1}, [[1e300] * 4] * 4,
        [[1e-5, 0, 0, 0], [0, 1e-5, 0, 0], [0, 0, 1e-5, 0], [0, 0, 0, 1]], [[0, 0, 1, 2], [0, 1, 0, 3], [-1, 0, 0, 4]],
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
        [[1, 0, 0, 1e38], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], str(arena["secret"]), "../outside/secret.png",
        "./train/link", "./train/r_0", "./train/r_1", "./train/linkdir/secret", "a\u0000b", "a" * 5000, "/", "",
    ]  # fmt: skip
    return common, rare


def _paths_of(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths_of(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths_of(v, prefix + (i,))
    return out


def _dumps(meta) -> str:
    raws: list[str] = []

    def enc(o):
        if isinstance(o, _Raw):
            raws.append(o.text)
            return f"@@RAW{len(raws) - 1}@@"
        raise TypeError

    text = json.dumps(meta, default=enc)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


def test_fuzz_transforms_json(tmp_path, make_transforms, arena, traced):
    root = arena["base"] / "transforms"
    make_transforms(root, n=3, points=True, intrinsics="fl")
    (root / "train" / "link.png").symlink_to(arena["secret"])
    (root / "train" / "linkdir").symlink_to(arena["secret"].parent, target_is_directory=True)
    js = root / "transforms.json"
    good = json.loads(js.read_text())
    good["camera_angle_x"] = 0.9
    common, rare = _json_values(arena)
    file_paths = [v for v in common if isinstance(v, str)] + [str(arena["secret"].with_suffix(""))]
    keys = ["fl_x", "fl_y", "w", "h", "cx", "cy", "camera_angle_x", "camera_angle_y", "k1", "ply_file_path",
            "frames", "file_path", "transform_matrix"]  # fmt: skip
    rng = np.random.default_rng(777)
    outcomes = []
    for case in range(CASES):
        meta = json.loads(json.dumps(good))
        for _ in range(int(rng.integers(1, 4))):
            paths = _paths_of(meta)
            if rng.random() < 0.6:  # mostly keys and frames, not the many matrix entries
                paths = [p for p in paths if len(p) <= 3 and "transform_matrix" not in p[2:]] or paths
            path = paths[int(rng.integers(len(paths)))]
            parent = meta
            for p in path[:-1]:
                parent = parent[p]
            op = rng.integers(5)
            values = rare if rng.random() < 0.05 else common
            value = values[int(rng.integers(len(values)))]
            if not path:  # the whole document
                meta = value if op == 0 else meta
            elif op <= 2:
                parent[path[-1]] = value
            elif op == 3:
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[keys[int(rng.integers(len(keys)))]] = value
            else:
                parent.append(value)
            if isinstance(meta, _Raw):
                break
        if rng.random() < 0.25:  # a case aimed at the image and point-cloud paths only
            meta = json.loads(json.dumps(good))
            target = meta if rng.random() < 0.2 else meta["frames"][int(rng.integers(len(meta["frames"])))]
            target["ply_file_path" if target is meta else "file_path"] = str(rng.choice(file_paths))
        text = _dumps(meta) if not isinstance(meta, _Raw) else meta.text
        if rng.random() < 0.1:
            text = text[: int(rng.integers(len(text) + 1))]
        js.write_text(text)
        outcomes.append(_run(lambda: load_dataset(root), root, arena))
    _outcomes_summary(outcomes)


# -- points3d.ply -------------------------------------------------------------------------------------------


def test_fuzz_points_ply(tmp_path, arena, traced):
    root = arena["base"] / "ply"
    root.mkdir()
    ply = root / "points3d.ply"
    rng = np.random.default_rng(99)
    types = ["float", "double", "uchar", "char", "int", "ushort", "float64", "int8", "bogus"]
    outcomes = []
    for case in range(CASES):
        fmt = str(rng.choice(["ascii", "binary_little_endian", "binary_big_endian", "binary_middle_endian"]))
        n = int(rng.choice([0, 1, 3, 5, 300_000_000, 2**62]))
        props = [("float", p) for p in "xyz"] + [("uchar", c) for c in ("red", "green", "blue")]
        props = [p for p in props if rng.random() > 0.1]
        props = [(str(rng.choice(types)) if rng.random() < 0.15 else t, p) for t, p in props]
        if rng.random() < 0.2:
            props.insert(int(rng.integers(len(props) + 1)), ("list uchar float", str(rng.choice(["x", "red", "n"]))))
        extra = int(rng.choice([0, 0, 1, 10**9])) if rng.random() < 0.3 else 0
        header = ["ply", f"format {fmt} 1.0", f"element vertex {n}"] + [f"property {t} {p}" for t, p in props]
        if extra:
            header += [f"element face {extra}", "property list uchar int vertex_indices"]
        header.append("end_header")
        rows = min(n, 5)
        if fmt == "ascii":
            body = "".join(" ".join(str(int(rng.integers(0, 300))) for _ in props) + "\n" for _ in range(rows)).encode()
        else:
            body = rng.bytes(rows * 4 * len(props))
        data = ("\n".join(header) + "\n").encode() + body
        if rng.random() < 0.2:
            data = data[: int(rng.integers(len(data) + 1))]
        ply.write_bytes(data)
        outcomes.append(_run(lambda: read_points_ply(ply), root, arena))
    _outcomes_summary(outcomes)


def test_fuzz_leaves_good_models_loadable(tmp_path, make_colmap):
    """Control: the unmutated generators give loadable data (so 'ok' outcomes above are meaningful)."""
    make_colmap(tmp_path, n=3, n_points=4, seed=2)
    assert len(read_model(tmp_path / "sparse" / "0").images) == 3
    assert len(load_dataset(tmp_path).train) == 2
