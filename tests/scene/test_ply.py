"""3DGS PLY I/O: bit-exact round trips, byte-identical rewrite of trainer files, layout variants, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import ply_property_names, read_ply, write_ply


def sample(n: int, degree: int, seed: int = 0) -> Gaussians:
    g = Gaussians.random(n, degree, seed=seed)
    g.opacities[0], g.opacities[1] = float("inf"), -float("inf")  # legal: opacity exactly 1 / 0
    g.means[2, 0] = -0.0
    return g


def inria_save_ply(g: Gaussians, path) -> None:
    """What the official 3DGS trainer's GaussianModel.save_ply does (plyfile, normals present)."""
    xyz = g.means.numpy()
    normals = np.zeros_like(xyz)
    f_dc = g.sh0.transpose(1, 2).flatten(start_dim=1).contiguous().numpy()
    f_rest = g.shN.transpose(1, 2).flatten(start_dim=1).contiguous().numpy()
    attrs = ["x", "y", "z", "nx", "ny", "nz"]
    attrs += [f"f_dc_{i}" for i in range(f_dc.shape[1])] + [f"f_rest_{i}" for i in range(f_rest.shape[1])]
    attrs += ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    elements = np.empty(xyz.shape[0], dtype=[(a, "f4") for a in attrs])
    cols = (xyz, normals, f_dc, f_rest, g.opacities[:, None].numpy(), g.scales.numpy(), g.quats.numpy())
    elements[:] = list(map(tuple, np.concatenate(cols, axis=1)))
    PlyData([PlyElement.describe(elements, "vertex")]).write(str(path))


def one_line_error(path, fn, *a) -> str:
    with pytest.raises(RaveError) as ei:
        fn(*a)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_roundtrip_bit_exact(tmp_path, degree):
    g = sample(40, degree, seed=degree)
    write_ply(g, tmp_path / "g.ply")
    h = read_ply(tmp_path / "g.ply")
    assert h.equal(g) and h.sh_degree == degree
    assert torch.signbit(h.means[2, 0])  # -0.0 kept
    assert os.listdir(tmp_path) == ["g.ply"]  # no temp file left behind


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_trainer_file_rewritten_byte_identical(tmp_path, degree):
    g = sample(33, degree, seed=10 + degree)
    inria_save_ply(g, tmp_path / "inria.ply")
    h = read_ply(tmp_path / "inria.ply")
    assert h.equal(g)
    write_ply(h, tmp_path / "ours.ply")
    assert (tmp_path / "ours.ply").read_bytes() == (tmp_path / "inria.ply").read_bytes()
    header = (tmp_path / "ours.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert "format binary_little_endian 1.0" in header
    assert [ln.split()[-1] for ln in header.splitlines() if ln.startswith("property")] == ply_property_names(degree)


def test_reads_gsplat_export(tmp_path):
    from gsplat import export_splats

    g = sample(25, 3, seed=4)
    g.opacities[:2] = 0.0  # gsplat drops rows with inf
    export_splats(g.means, g.scales, g.quats, g.opacities, g.sh0, g.shN, format="ply", save_to=str(tmp_path / "x.ply"))
    assert read_ply(tmp_path / "x.ply").equal(g)


def _write_variant(g: Gaussians, path, order, dtype="f4", text=False, byte_order="<", normals=False):
    names = [n for n in ply_property_names(g.sh_degree) if normals or n not in ("nx", "ny", "nz")]
    full = {n: c for n, c in zip(ply_property_names(g.sh_degree), _columns(g))}
    names = [names[i] for i in order(len(names))]
    arr = np.empty(len(g), dtype=[(n, dtype) for n in names])
    for n in names:
        arr[n] = full[n]
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order).write(str(path))


def _columns(g: Gaussians):
    n = len(g)
    flat = torch.cat(
        [g.means, torch.zeros(n, 3), g.sh0.reshape(n, 3), g.shN.transpose(1, 2).reshape(n, -1),
         g.opacities[:, None], g.scales, g.quats], dim=1,
    )  # fmt: skip
    return flat.numpy().T


@pytest.mark.parametrize(
    "variant",
    [
        dict(order=lambda k: np.random.default_rng(0).permutation(k)),  # any property order, no normals
        dict(order=lambda k: range(k)[::-1], dtype="f8"),  # float64 properties
        dict(order=lambda k: range(k), text=True, normals=True),  # ascii
        dict(order=lambda k: range(k), byte_order=">"),  # big endian
    ],
)
def test_layout_variants(tmp_path, variant):
    g = sample(12, 2, seed=7)
    _write_variant(g, tmp_path / "v.ply", **variant)
    h = read_ply(tmp_path / "v.ply")
    assert h.means.dtype == torch.float32
    assert h.equal(g)  # float32 values survive float64 / ascii (%.18g) exactly


def test_write_converts_and_refuses_bad_scenes(tmp_path):
    g = sample(10, 1)
    write_ply(g.map(lambda t: t.double()), tmp_path / "d.ply")
    assert read_ply(tmp_path / "d.ply").equal(g)
    bad = g.clone()
    bad.scales[3, 1] = float("nan")
    write_ply(g, tmp_path / "keep.ply")
    before = (tmp_path / "keep.ply").read_bytes()
    one_line_error(tmp_path / "keep.ply", write_ply, bad, tmp_path / "keep.ply")
    assert (tmp_path / "keep.ply").read_bytes() == before
    one_line_error(tmp_path / "e.ply", write_ply, Gaussians.empty(), tmp_path / "e.ply")
    assert not (tmp_path / "e.ply").exists()


def _header(props, n=1, fmt="binary_little_endian", extra=b""):
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {n}"] + [f"property float {p}" for p in props]
    return ("\n".join(lines) + "\n").encode() + extra + b"end_header\n"


def test_bad_files(tmp_path):
    good = tmp_path / "good.ply"
    write_ply(sample(20, 3), good)
    data = good.read_bytes()

    def case(name, content):
        p = tmp_path / name
        p.write_bytes(content)
        return one_line_error(p, read_ply, p)

    one_line_error(tmp_path / "missing.ply", read_ply, tmp_path / "missing.ply")
    one_line_error(tmp_path, read_ply, tmp_path)  # a folder
    assert "empty" in case("empty.ply", b"")
    assert "truncated" in case("trunc.ply", data[:-7])
    assert "truncated" in case("trunc_header.ply", data[:200])
    case("garbage_header.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex many\nend_header\n")
    assert "not a PLY" in case("notply.ply", b"\x89PNG\r\n\x1a\n" + data[8:])
    faces = b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int v\nend_header\n"
    assert "'vertex'" in case("faces.ply", faces)
    names = ply_property_names(0)
    assert "'scale_1'" in case("no_scale1.ply", _header([n for n in names if n != "scale_1"]) + b"\0" * 4 * 16)
    msg = case("points.ply", _header(["x"]) + b"\0" * 4)
    assert "looks like a point cloud" in msg and "f_dc_0-2, opacity, scale_0-2, rot_0-3 (nor 'y', 'z')" in msg
    assert "10 f_rest" in case("rest10.ply", _header(names + [f"f_rest_{i}" for i in range(10)]) + b"\0" * 4 * 27)
    rest_gap = names + [f"f_rest_{i}" for i in range(10) if i != 4]
    assert "'f_rest_4'" in case("rest_gap.ply", _header(rest_gap) + b"\0" * 4 * len(rest_gap))
    assert "0 Gaussians ('element vertex 0')" in case("zero.ply", _header(names, n=0))
    chunked = b"ply\nformat binary_little_endian 1.0\nelement chunk 0\nproperty float min_x\n"
    chunked += b"element vertex 0\nproperty uint packed_position\nend_header\n"
    assert "compressed" in case("compressed.ply", chunked)
    # NaN in every position: each Gaussian is dropped, and nothing is left
    arr = np.frombuffer(bytearray(data[data.index(b"end_header\n") + 11 :]), dtype="<f4").reshape(20, -1).copy()
    arr[:, 0] = np.nan
    msg = case("nan.ply", data[: data.index(b"end_header\n") + 11] + arr.tobytes())
    assert "all 20 Gaussians have unusable values (NaN/inf position 20)" in msg
