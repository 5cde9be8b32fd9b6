"""PLYs in other tools' layouts load exactly (or with counted repairs); bad ones fail in one line (issue 14, item 4).

Files are written here byte by byte (:func:`write_layout`) with the property names, order, types, byte order
and extras of a tool's export as we know them: gsplat's and its compressed PLY come from gsplat's own exporter,
the others reproduce a layout, not the tool's exact bytes. "Exactly" means ``Gaussians.equal``: every float32
bit, after the repairs documented in ``rave_viewer/scene/ply.py``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.errors import RaveError
from rave_viewer.scene.gaussians import Gaussians
from rave_viewer.scene.ply import MIN_LOG_SCALE, RavePlyWarning, ply_property_names, read_ply

NP = {"float": "f4", "double": "f8", "half": "f2", "uchar": "u1", "ushort": "u2", "int": "i4", "uint": "u4"}
BYTE_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}
NORMALS = ("nx", "ny", "nz")


def columns(g: Gaussians) -> dict[str, np.ndarray]:
    """INRIA property name -> float32 [N] column of ``g`` (normals zero)."""
    n = len(g)
    flat = torch.cat([g.means, torch.zeros(n, 3), g.sh0.reshape(n, 3), g.shN.transpose(1, 2).reshape(n, -1),
                      g.opacities[:, None], g.scales, g.quats], dim=1).numpy()  # fmt: skip
    return dict(zip(ply_property_names(g.sh_degree), flat.T))


def write_layout(
    path: Path,
    cols: dict[str, np.ndarray],
    names: list[str],
    *,
    types: dict[str, str] | None = None,
    fmt: str = "binary_little_endian",
    comments: tuple[str, ...] = (),
    elements: bytes = b"",
    tail: bytes = b"",
) -> None:
    """A PLY with one ``vertex`` element: ``names`` in this order, ``types[name]`` (default float) each; then the
    header lines ``elements`` of more elements, whose data is ``tail``."""
    types = types or {}
    order = BYTE_ORDER[fmt]
    dtype = np.dtype([(k, order + NP[types.get(k, "float")]) for k in names])
    n = len(next(iter(cols.values())))
    arr = np.zeros(n, dtype=dtype)
    for k in names:
        with np.errstate(over="ignore", invalid="ignore"):
            arr[k] = cols[k]
    head = ["ply", f"format {fmt} 1.0"] + [f"comment {c}" for c in comments] + [f"element vertex {n}"]
    head += [f"property {types.get(k, 'float')} {k}" for k in names]
    header = ("\n".join(head) + "\n").encode() + elements + b"end_header\n"
    if fmt == "ascii":
        # repr of the value as a Python float is exact for float32/float64/half ('inf', 'nan' included)
        body = "".join(" ".join(repr(v.item()) for v in row) + "\n" for row in arr).encode()
    else:
        body = arr.tobytes()
    path.write_bytes(header + body + tail)


def sample(n: int, degree: int, seed: int) -> Gaussians:
    g = Gaussians.random(n, degree, seed=seed)
    g.opacities[1], g.opacities[4] = float("inf"), -float("inf")  # exact values, kept (and no warning)
    return g


def inria(degree: int) -> list[str]:
    return ply_property_names(degree)


def no_normals(degree: int) -> list[str]:
    return [k for k in ply_property_names(degree) if k not in NORMALS]


def scrambled(degree: int) -> list[str]:
    """Not INRIA's order: positions, rotation, scales, colour, opacity, SH rest (as a re-serialising tool may)."""
    names = no_normals(degree)
    group = lambda p: [k for k in names if k.startswith(p)]  # noqa: E731
    return ["x", "y", "z"] + group("rot_") + group("scale_") + group("f_dc_") + ["opacity"] + group("f_rest_")


def shuffled(degree: int) -> list[str]:
    """Any order at all, normals included."""
    names = ply_property_names(degree)
    return [names[i] for i in np.random.default_rng(degree).permutation(len(names))]


# name: (SH degree, property order, types (see _types), format)
LAYOUTS = {
    "inria_trainer_sh3": (3, inria, {}, "binary_little_endian"),
    "gsplat_like_sh0_no_normals": (0, no_normals, {}, "binary_little_endian"),
    "nerfstudio_sh1_normals": (1, inria, {}, "binary_little_endian"),
    "supersplat_like_sh3_no_normals": (3, no_normals, {}, "binary_little_endian"),
    "splat_transform_like_scrambled_sh3": (3, scrambled, {}, "binary_little_endian"),
    "polycam_like_float64_sh2": (2, inria, "double", "binary_little_endian"),
    "luma_like_big_endian_sh3": (3, shuffled, {}, "binary_big_endian"),
    "ascii_sh1_shuffled": (1, shuffled, {}, "ascii"),
    "half_sh_sh2": (2, scrambled, "half_sh", "binary_little_endian"),
    "mixed_double_positions_ascii_sh0": (0, scrambled, "double_xyz", "ascii"),
}


def _types(spec, names: list[str]) -> dict[str, str]:
    if spec == "double":
        return dict.fromkeys(names, "double")
    if spec == "half_sh":
        return {k: "half" for k in names if k.startswith("f_")}
    if spec == "double_xyz":
        return dict.fromkeys(("x", "y", "z"), "double")
    return dict(spec)


def _as_stored(g: Gaussians, types: dict[str, str]) -> Gaussians:
    """``g`` as the file holds it: half-typed SH rounded to float16 (float64 holds float32 exactly)."""
    if any(t == "half" for t in types.values()):
        g = g.clone()
        g.sh0 = g.sh0.half().float()
        g.shN = g.shN.half().float()
    return g


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_tool_layouts_read_exactly_without_warnings(tmp_path, layout):
    degree, order, spec, fmt = LAYOUTS[layout]
    names = order(degree)
    types = _types(spec, names)
    g = _as_stored(sample(40, degree, seed=len(layout)), types)
    p = tmp_path / f"{layout}.ply"
    write_layout(p, columns(g), names, types=types, fmt=fmt, comments=("Generated by some tool",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing ignored, nothing repaired: not a word
        h = read_ply(p)
    assert h.equal(g) and h.sh_degree == degree and h.means.dtype == torch.float32
    assert torch.isposinf(h.opacities[1]) and torch.isneginf(h.opacities[4])


def test_gsplat_export_reads_exactly(tmp_path):
    from gsplat import export_splats

    g = Gaussians.random(30, 3, seed=5)
    export_splats(g.means, g.scales, g.quats, g.opacities, g.sh0, g.shN, format="ply", save_to=str(tmp_path / "g.ply"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_ply(tmp_path / "g.ply").equal(g)


def _one_warning(path: Path) -> tuple[Gaussians, str]:
    with pytest.warns(RavePlyWarning) as rec:
        h = read_ply(path)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "\n" not in msgs[0] and msgs[0].startswith(f"{path}: "), msgs
    return h, msgs[0][len(f"{path}: ") :]


def test_extra_properties_are_ignored_and_named_once(tmp_path):
    """Kiri/Scaniverse-like: colour previews (uchar), normals, a Mip-Splatting filter and an id among the 3DGS ones."""
    g = sample(25, 3, seed=3)
    cols = columns(g)
    cols.update(red=np.full(25, 200), green=np.arange(25), blue=np.zeros(25), filter_3D=np.ones(25), seg=np.ones(25))
    names = ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"] + no_normals(3)[3:] + ["filter_3D", "seg"]
    types = {"red": "uchar", "green": "uchar", "blue": "uchar", "filter_3D": "double", "seg": "int"}
    for fmt in ("binary_little_endian", "ascii"):
        p = tmp_path / f"kiri_{fmt}.ply"
        write_layout(p, cols, names, types=types, fmt=fmt)
        h, msg = _one_warning(p)
        assert msg == "ignored 5 vertex properties that are not 3DGS parameters (red, green, blue, filter_3D, seg)"
        assert h.equal(g)
    # many extras: the line stays short; another element is named in the same line
    many = {f"extra_{i}": np.zeros(25) for i in range(30)}
    face = b"element face 0\nproperty list uchar int vertex_indices\n"
    write_layout(p, {**cols, **many}, no_normals(3) + list(many), elements=face)
    h, msg = _one_warning(p)
    assert msg == ("ignored 30 vertex properties that are not 3DGS parameters (extra_0, extra_1, extra_2, extra_3, "
                   "extra_4, extra_5, extra_6, extra_7 and 22 more) and element 'face'")  # fmt: skip
    assert h.equal(g)


# -- non-finite values: dropped or repaired, one line with the counts ------------------------------------------
BAD_ROWS = {  # row -> {property: value}
    3: {"x": np.nan},
    4: {"y": np.inf, "scale_0": np.nan},  # counted once, as a position
    7: {"rot_2": np.nan},
    9: {"scale_0": np.nan},
    10: {"scale_2": np.inf},
    12: {"opacity": np.nan},
    15: {"f_rest_20": -np.inf},
    16: {"f_dc_1": np.nan},
    20: {"rot_0": 0.0, "rot_1": 0.0, "rot_2": -0.0, "rot_3": 0.0},  # no rotation: identity
    21: {"scale_1": -np.inf},  # a zero-width axis
    22: {"scale_0": -np.inf, "scale_1": -np.inf, "scale_2": -np.inf},
    30: {"opacity": np.inf},
    31: {"opacity": np.inf},
    32: {"opacity": -np.inf},
}
BAD_MESSAGE = (
    "8 of 50 Gaussians dropped (NaN/inf position 2, NaN/inf rotation 1, NaN/+inf scale 2, NaN opacity 1, "
    "NaN/inf colour 2); 1 all-zero rotation set to identity; -inf log-scales of 2 Gaussians set to -80 (zero "
    "width); 2 +inf opacities kept as fully opaque; 1 -inf opacity kept as fully transparent"
)


def _bad_scene() -> tuple[Gaussians, dict[str, np.ndarray], Gaussians]:
    """(raw Gaussians with BAD_ROWS, their columns, what read_ply must return for them)."""
    g = Gaussians.random(50, 3, seed=11)
    g.opacities[1] = 0.0  # sample()'s infinities are replaced by BAD_ROWS' own
    cols = columns(g)
    for row, vals in BAD_ROWS.items():
        for k, v in vals.items():
            cols[k][row] = v
    raw = g.clone()
    raw.quats[20] = torch.tensor([0.0, 0.0, -0.0, 0.0])
    raw.scales[21, 1] = raw.scales[22] = -float("inf")
    raw.opacities[30] = raw.opacities[31] = float("inf")
    raw.opacities[32] = -float("inf")
    want = raw.clone()
    want.quats[20] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    want.scales[21, 1] = want.scales[22] = MIN_LOG_SCALE
    dropped = {3, 4, 7, 9, 10, 12, 15, 16}
    return raw, cols, want.subset(torch.tensor([i for i in range(50) if i not in dropped]))


@pytest.mark.parametrize(
    "fmt,spec", [("binary_little_endian", {}), ("ascii", {}), ("binary_big_endian", "double"), ("ascii", "half_sh")]
)
def test_non_finite_values_are_dropped_or_repaired_with_one_line(tmp_path, fmt, spec):
    _, cols, want = _bad_scene()
    names = shuffled(3)
    types = _types(spec, names)
    p = tmp_path / "bad.ply"
    write_layout(p, cols, names, types=types, fmt=fmt)
    h, msg = _one_warning(p)
    assert msg == BAD_MESSAGE
    assert h.equal(_as_stored(want, types))


def test_repairs_render_as_the_raw_values_do():
    """A zero quaternion and a -inf log-scale draw the same before and after the repair (our CPU renderer)."""
    from rave_viewer.render import render
    from rave_viewer.scene.cameras import look_at

    raw, _, _ = _bad_scene()
    keep = torch.tensor([20, 21, 22] + list(range(23, 30)))
    before = raw.subset(keep)
    after = before.clone()
    after.quats[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    after.scales[1, 1] = after.scales[2] = MIN_LOG_SCALE
    vm = look_at(torch.tensor([0.0, -3.0, 0.5]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))[None].float()
    K = torch.tensor([[[40.0, 0, 32], [0, 40.0, 24], [0, 0, 1]]])
    a, _, _ = render(before, vm, K, 64, 48, backend="cpu")
    b, _, _ = render(after, vm, K, 64, 48, backend="cpu")
    assert torch.isfinite(a).all() and torch.equal(a, b)
    without, _, _ = render(before.subset(torch.arange(2, 10)), vm, K, 64, 48, backend="cpu")
    assert not torch.equal(a, without)  # the repaired ones are in view: the comparison is not vacuous


def test_counts_use_thousands_separators_at_real_scale(tmp_path):
    n = 131_072
    g = Gaussians.random(n, 0, seed=1)
    cols = columns(g)
    rows = np.random.default_rng(0).choice(n, 52, replace=False)
    cols["x"][rows[:3]] = np.nan
    cols["scale_1"][rows[3:12]] = np.inf
    cols["opacity"][rows[12:]] = np.inf
    p = tmp_path / "scene.ply"
    write_layout(p, cols, no_normals(0))
    h, msg = _one_warning(p)
    assert msg == "12 of 131,072 Gaussians dropped (NaN/inf position 3, NaN/+inf scale 9); 40 +inf opacities kept as " \
                  "fully opaque"  # fmt: skip
    assert len(h) == n - 12 and int(torch.isposinf(h.opacities).sum()) == 40


# -- bad files: one RaveError line naming the file -----------------------------------------------------------
def _refused(path: Path) -> str:
    with pytest.raises(RaveError) as ei:
        read_ply(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    return msg[len(f"{path}: ") :]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a part of its one-line error)."""
    g = Gaussians.random(6, 1, seed=2)
    cols = columns(g)
    cols.update(red=np.zeros(6), green=np.zeros(6), blue=np.zeros(6))
    out: dict[str, tuple[Path, str]] = {}

    def add(name: str, needle: str, names=None, content: bytes | None = None, **kw) -> None:
        p = tmp_path / f"{name}.ply"
        if content is not None:
            p.write_bytes(content)
        else:
            write_layout(p, cols, names, **kw)
        out[name] = (p, needle)

    add("empty", "file is empty", content=b"")
    add("vertex_0", "PLY holds 0 Gaussians ('element vertex 0')",
        content=b"ply\nformat binary_little_endian 1.0\nelement vertex 0\n"
        + b"".join(b"property float %s\n" % k.encode() for k in inria(0)) + b"end_header\n")  # fmt: skip
    add("positions_only", "this looks like a point cloud (vertex properties x, y, z), not a 3D Gaussian Splatting "
        "model: it has none of the 3DGS properties f_dc_0-2, opacity, scale_0-2, rot_0-3", ["x", "y", "z"])  # fmt: skip
    add("coloured_points", "looks like a point cloud (vertex properties x, y, z, nx, ny, nz, red, green, blue)",
        ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"], types=dict.fromkeys(("red", "green", "blue"),
        "uchar"))  # fmt: skip
    add("mesh", "this looks like a mesh", ["x", "y", "z"],
        elements=b"element face 1\nproperty list uchar int vertex_indices\n",
        tail=b"\x03" + np.array([0, 1, 2], "<i4").tobytes())  # fmt: skip
    big = tmp_path / "points.ply"
    write_layout(big, cols, no_normals(1))
    data = big.read_bytes()
    add("count_beyond_payload", f"element 'vertex' declares 6000 rows of at least {4 * 23} bytes",
        content=data.replace(b"element vertex 6", b"element vertex 6000"))  # fmt: skip
    add("no_rotation", "missing properties 'rot_0', 'rot_1', 'rot_2', 'rot_3'; not a 3D Gaussian Splatting PLY",
        [k for k in inria(1) if not k.startswith("rot_")])  # fmt: skip
    add("sh_count", "PLY has 6 f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)",
        inria(1)[:15] + inria(1)[18:])  # f_rest_6..8 left out
    add("uchar_colour", "PLY property 'f_dc_0' is uchar (and 2 more): 3DGS parameters must be float, double or half",
        inria(0), types=dict.fromkeys(("f_dc_0", "f_dc_1", "f_dc_2"), "uchar"))  # fmt: skip
    add("two_d_gaussians", "this looks like a 2D Gaussian Splatting (surfel) model",
        [k for k in inria(0) if k != "scale_2"])  # fmt: skip
    add("nerfstudio_rgb", "8-bit red/green/blue colours instead of the SH coefficients f_dc_0-2",
        ["x", "y", "z", "red", "green", "blue", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2",
         "rot_3"], types=dict.fromkeys(("red", "green", "blue"), "uchar"))  # fmt: skip
    nan = {k: np.full(6, np.nan) if k == "x" else v for k, v in cols.items()}
    p = tmp_path / "all_nan.ply"
    write_layout(p, nan, inria(1))
    out["all_nan"] = (p, "all 6 Gaussians have unusable values (NaN/inf position 6); nothing left to read")
    return out


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    for name, (path, needle) in _bad_files(tmp_path).items():
        msg = _refused(path)
        assert needle in msg, (name, msg)


def test_compressed_ply_is_refused_with_the_way_to_decompress_it(tmp_path):
    from gsplat import export_splats

    g = Gaussians.random(300, 3, seed=4)
    p = tmp_path / "scene.compressed.ply"
    export_splats(g.means, g.scales, g.quats, g.opacities, g.sh0, g.shN, format="ply_compressed", save_to=str(p))
    assert b"element chunk" in p.read_bytes()[:2000]
    msg = _refused(p)
    assert msg.startswith("this is a compressed PLY (PlayCanvas/SuperSplat .compressed.ply")
    assert "decompress it with PlayCanvas splat-transform" in msg


# -- the commands take them ----------------------------------------------------------------------------------
def _tool_file(tmp_path: Path) -> tuple[Path, Gaussians]:
    """splat-transform-like: not INRIA's order, SH3, no normals, +inf opacities, plus NaN rows and extras."""
    raw, cols, want = _bad_scene()
    cols["red"] = np.zeros(50)
    p = tmp_path / "tool.ply"
    write_layout(p, cols, scrambled(3) + ["red"], types={"red": "uchar"})
    return p, want


def test_rave_encode_and_the_viewer_accept_tool_files(tmp_path, capsys):
    from rave_viewer.codec import ProgressiveEncoder, decode
    from rave_viewer.codec.presets import preset
    from rave_viewer.viewer.sources import open_source

    p, want = _tool_file(tmp_path)
    out = tmp_path / "s.rave"
    with pytest.warns(UserWarning) as rec:
        assert main(["encode", str(p), "-o", str(out), "--chunk-size", "16", "--quiet"]) == 0
    ours = [str(w.message) for w in rec if issubclass(w.category, RavePlyWarning)]
    assert ours == [f"{p}: ignored 1 vertex property that is not a 3DGS parameter (red)", f"{p}: {BAD_MESSAGE}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the encoder's note about the infinite opacities
        expected = ProgressiveEncoder(want, preset(), chunk_size=16, progress=False,
                                      spatial_order=True)  # the CLI's default preset and order
        assert out.read_bytes() == expected.encode()
    assert decode(out).n_decoded == len(want) == 42

    with pytest.warns(RavePlyWarning):
        src = open_source(p)
    assert src.kind == "ply" and src.gaussians.equal(want)

    bad = _bad_files(tmp_path)
    for name in ("empty", "positions_only", "count_beyond_payload"):
        path, needle = bad[name]
        capsys.readouterr()
        assert main(["encode", str(path), "-o", str(tmp_path / f"{name}.rave")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: ") and needle in err and err.count("\n") == 1, err
        with pytest.raises(RaveError) as ei:
            open_source(path)
        assert str(ei.value).startswith(f"{path}: ") and needle in str(ei.value)
    path = tmp_path / "x.compressed.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement chunk 0\nproperty float min_x\nelement vertex 0\n"
                     b"property uint packed_position\nend_header\n")  # fmt: skip
    with pytest.raises(RaveError, match="compressed PLY"):
        open_source(path)


def test_rave_encode_prints_each_warning_on_one_line(tmp_path):
    """The real command line: the reader's two lines (then the encoder's about quantizing +-inf opacities), as
    ``warning: FILE: ...``, no traceback, exit 0."""
    p, _ = _tool_file(tmp_path)
    res = subprocess.run([sys.executable, "-m", "rave_viewer", "encode", str(p), "-o", str(tmp_path / "s.rave"),
                          "--quiet"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"warning: {p}: ")]
    assert lines[:2] == [f"warning: {p}: ignored 1 vertex property that is not a 3DGS parameter (red)",
                         f"warning: {p}: {BAD_MESSAGE}"], res.stderr  # fmt: skip
    assert len(lines) == 3 and "3 Gaussians had an infinite opacity logit" in lines[2]  # the encoder's own line
    assert "Traceback" not in res.stderr
