"""3DGS PLY files in and out: the INRIA trainer's layout, and the variations of it that other tools write
(gsplat, Nerfstudio's ``ns-export gaussian-splat``, SuperSplat, PlayCanvas splat-transform uncompressed,
Polycam, Luma, Kiri, Scaniverse...): other property orders, types, byte orders and extras.

Layout, one ``vertex`` element (we write float32, binary little endian, in this order)::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3

``f_rest`` is channel-major (all K coefficients of R, then G, then B), so ``shN[N, K, 3]`` is
``f_rest.reshape(N, 3, K).transpose(1, 2)``. Opacities are logits, scales are log-scales and rotations are
quaternions (w, x, y, z), i.e. exactly gsplat's parameters, so reading and writing is a lossless copy.

What :func:`read_ply` accepts, and why
--------------------------------------
Other tools' files differ in everything but the property names, so only the names matter: any property order;
normals optional (``nx ny nz`` are read by no renderer; ignored silently); SH degree 0-3 from the number of
``f_rest_*`` (0, 9, 24 or 45; any other count is refused: it is no SH degree); float32, float64 or half
(``half``/``float16``, not in the PLY spec but accepted) values, converted to float32; binary little or big
endian, or ascii. Extra vertex properties (``red green blue`` colour previews, Mip-Splatting's ``filter_3D``,
segment ids...) and other elements are ignored and named once in one :class:`RavePlyWarning` line. Integer
Gaussian parameters are refused: no uncompressed exporter writes them, and a quantized layout read as floats
would load silently wrong. PlayCanvas/SuperSplat ``.compressed.ply`` files (an element ``chunk`` and packed
``uint`` vertex properties, lossy) are refused with a pointer to splat-transform, which decompresses them.

Values that are not finite (NaN, +-inf, or float64 beyond the float32 range, which is +-inf once converted)
get these rules, chosen by what a renderer makes of them:

============ ==================== ===========================================================================
parameter    value                rule
============ ==================== ===========================================================================
opacity      +inf / -inf          **kept**: sigmoid gives exactly 1 / 0 in every renderer, gradients are 0,
                                  and the quantizer stores them in its extreme bins (the encoder says so)
opacity      NaN                  Gaussian **dropped** (no opacity)
position     NaN, +-inf           Gaussian **dropped** (nowhere to draw it)
rotation     NaN, +-inf           Gaussian **dropped** (normalising gives NaN: no orientation)
rotation     all four exactly 0   **repaired to identity** (1, 0, 0, 0): what our renderers and the INRIA
                                  rasterizer already draw for it (gsplat's CUDA kernel, normalising without
                                  an epsilon, would draw NaN)
log-scale    -inf                 **repaired** to :data:`MIN_LOG_SCALE` (-80): a zero-width axis (exp(-inf)
                                  = 0); exp(-80)^2 is 0 in float32, so it renders the same, and it is finite
log-scale    NaN, +inf            Gaussian **dropped** (an infinitely large Gaussian would cover every view)
f_dc, f_rest NaN, +-inf           Gaussian **dropped** (the colour would be NaN/inf in every view)
============ ==================== ===========================================================================

Dropped and repaired Gaussians are counted in one :class:`RavePlyWarning` line, e.g. ``scene.ply: 12 of
131,072 Gaussians dropped (NaN/inf position 3, NaN/+inf scale 9); 40 +inf opacities kept as fully opaque``.
A dropped Gaussian is counted once, under the first of position, rotation, scale, opacity, colour that is
unusable, so the counts add up. +-inf opacities alone warn nothing here (they are exact values); they are
counted in the line when there is one. Nothing else is changed: finite float32 values are kept bit for bit
(float64 values are rounded to float32, half values are exact in it).

Refused with one :class:`~rave_viewer.errors.RaveError` line naming the file: an empty or non-PLY file, a
header whose element counts the file cannot hold, 0 Gaussians (``element vertex 0``, or every Gaussian
dropped), a point cloud or mesh (x y z, no 3DGS parameter: "this looks like a point cloud"), a 2DGS model
(two scales), missing properties (named), compressed PLYs.

Reading never trusts the header: :func:`check_ply_header` parses it (at most :data:`MAX_HEADER_BYTES`) and
refuses element counts that the bytes after it cannot hold before anything is allocated, and
:func:`read_ply_vertices` then reads only the ``vertex`` element (a memory map for binary files), so a few kB
declaring ``element face 300000000`` cost nothing. Both are for every PLY reader of the package.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RaveError
from ..fileio import atomic_write
from .gaussians import Gaussians

#: The properties every Gaussian PLY must have (f_rest_* are optional: SH degree 0).
REQUIRED = (
    ("x", "y", "z")
    + tuple(f"f_dc_{i}" for i in range(3))
    + ("opacity",)
    + tuple(f"scale_{i}" for i in range(3))
    + tuple(f"rot_{i}" for i in range(4))
)
_F_REST = re.compile(r"f_rest_(\d+)$")
_VALID_F_REST = {0: 0, 9: 1, 24: 2, 45: 3}  # number of f_rest_* -> SH degree
#: Vertex properties read by no renderer and ignored without a word (INRIA's trainer writes zero normals).
SILENTLY_IGNORED = ("nx", "ny", "nz")
#: What a -inf log-scale (a zero-width axis) becomes: exp(-80) = 1.8e-35, whose square is 0 in float32.
MIN_LOG_SCALE = -80.0
_MAX_NAMES_SHOWN = 8  # names listed in one warning/error line, then "and N more"


class RavePlyWarning(UserWarning):
    """A 3DGS PLY read with omissions or repairs: ignored properties, dropped or repaired Gaussians."""

#: PLY scalar type names (both spellings of the spec) -> numpy type code without byte order.
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8", "half": "f2", "float16": "f2",
}  # fmt: skip
_TYPE_NAMES = {code: name for name, code in reversed(PLY_TYPES.items())}  # numpy code -> first spelling
PLY_FORMATS = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}
#: Longest header read (a 3DGS header is ~1.5 kB); a file without ``end_header`` in it is refused.
MAX_HEADER_BYTES = 1 << 20
_ASCII_BLOCK = 1 << 16  # ascii rows parsed per block (bounded temporaries)


@dataclass(frozen=True)
class PlyProperty:
    """One property of a PLY element: numpy type code (``"f4"``...), and the count type of a list property."""

    name: str
    dtype: str
    list_count: str | None = None  # numpy type code of the length prefix when this is a list

    @property
    def is_list(self) -> bool:
        return self.list_count is not None


@dataclass(frozen=True)
class PlyElementInfo:
    """One element of a PLY header: its name, declared row count and properties, and where its data starts."""

    name: str
    count: int
    properties: tuple[PlyProperty, ...]
    offset: int | None  # byte offset of its first row (binary files with no list before it), else None

    @property
    def has_lists(self) -> bool:
        return any(p.is_list for p in self.properties)

    def min_row_bytes(self, ascii: bool) -> int:
        """Fewest bytes one row can take: binary, its scalars and list lengths (empty lists); ascii, one
        character and one separator per value (the last separator is the newline)."""
        if ascii:
            return max(1, 2 * len(self.properties))
        return sum(np.dtype(p.list_count or p.dtype).itemsize for p in self.properties)


@dataclass(frozen=True)
class PlyHeader:
    """A parsed PLY header whose element counts fit in the file (what :func:`check_ply_header` returns)."""

    path: Path
    format: str  # "ascii", "binary_little_endian" or "binary_big_endian"
    elements: tuple[PlyElementInfo, ...]
    header_size: int  # bytes up to and including the end_header line
    file_size: int
    comments: tuple[str, ...] = ()

    @property
    def ascii(self) -> bool:
        return self.format == "ascii"

    def element(self, name: str) -> PlyElementInfo | None:
        return next((e for e in self.elements if e.name == name), None)

    def names(self) -> list[str]:
        return [e.name for e in self.elements]


def _show(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _open_checked(path: Path):
    """The file opened for reading, after the checks every PLY reader needs (one RaveError line each)."""
    if not path.exists():
        raise RaveError("file not found", path)
    if path.is_dir():
        raise RaveError("is a folder, expected a .ply file", path)
    try:
        return open(path, "rb")
    except OSError as e:
        raise RaveError(f"cannot read file: {e.strerror or e}", path) from None


def check_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Parse a PLY header and check that the data it declares can be in the file, before reading any data.

    Refuses (:class:`RaveError`, one line naming ``path``) a missing, empty or non-PLY file, a malformed or
    over-long header (more than :data:`MAX_HEADER_BYTES`), and elements whose declared rows need more bytes than
    follow the header: binary rows need their scalars and list lengths, ascii rows one character and a
    separator per value. So the work any reader does after this is bounded by the file's size.
    """
    path = Path(path)
    with _open_checked(path) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(min(size, MAX_HEADER_BYTES))
        except OSError as e:
            raise RaveError(f"cannot read file: {e.strerror or e}", path) from None
    if not head:
        raise RaveError("file is empty", path)
    if head[:3] != b"ply" or head[3:4] not in (b"\n", b"\r"):
        raise RaveError("not a PLY file (it does not start with 'ply')", path)
    nl = b"\r\n" if head[3:5] == b"\r\n" else head[3:4]
    pos, line_no = 3 + len(nl), 1
    fmt, comments = None, []
    elements: list[tuple[str, int, list[PlyProperty]]] = []
    while True:
        end = head.find(nl, pos)
        if end < 0:
            if len(head) >= MAX_HEADER_BYTES:
                raise RaveError(f"PLY header has no 'end_header' line in its first {MAX_HEADER_BYTES} bytes", path)
            raise RaveError("truncated PLY file (the header ends before 'end_header')", path)
        raw, pos, line_no = head[pos:end], end + len(nl), line_no + 1
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise RaveError(f"corrupt PLY header: line {line_no} is not ASCII text", path) from None
        t = line.split()

        def bad(why: str) -> RaveError:
            return RaveError(f"corrupt PLY header: line {line_no} {_show(line)}: {why}", path)

        if not t:
            continue  # empty lines are tolerated (as plyfile does)
        key = t[0]
        if key == "end_header":
            if len(t) != 1:
                raise bad("unexpected text after 'end_header'")
            break
        if key in ("comment", "obj_info"):
            comments.append(line[len(key) :].strip())
            continue
        if fmt is None:
            if key != "format":
                raise bad("expected 'format' as the first line after 'ply'")
            if len(t) != 3 or t[1] not in PLY_FORMATS:
                raise bad(f"expected 'format {{{'|'.join(PLY_FORMATS)}}} 1.0'")
            if t[2] != "1.0":
                raise bad("only PLY version 1.0 is supported")
            fmt = t[1]
        elif key == "format":
            raise bad("a second 'format' line")
        elif key == "element":
            if len(t) != 3 or not t[2].isdigit() or len(t[2]) > 19:
                raise bad("expected 'element NAME COUNT' with a count of at most 19 digits")
            if any(name == t[1] for name, _, _ in elements):
                raise bad(f"element '{t[1]}' is declared twice")
            elements.append((t[1], int(t[2]), []))
        elif key == "property":
            if not elements:
                raise bad("a property before any element")
            props = elements[-1][2]
            if len(t) == 3 and t[1] in PLY_TYPES:
                p = PlyProperty(t[2], PLY_TYPES[t[1]])
            elif len(t) == 5 and t[1] == "list" and t[2] in PLY_TYPES and t[3] in PLY_TYPES:
                if PLY_TYPES[t[2]][0] not in "iu":
                    raise bad("a list length must have an integer type")
                p = PlyProperty(t[4], PLY_TYPES[t[3]], PLY_TYPES[t[2]])
            else:
                raise bad(f"expected 'property TYPE NAME' or 'property list TYPE TYPE NAME' (types: "
                          f"{', '.join(PLY_TYPES)})")  # fmt: skip
            if any(q.name == p.name for q in props):
                raise bad(f"property '{p.name}' is declared twice in element '{elements[-1][0]}'")
            props.append(p)
        else:
            raise bad("unknown keyword")
    if fmt is None:
        raise RaveError("corrupt PLY header: no 'format' line", path)
    header_size, ascii = pos, fmt == "ascii"
    infos, used, offset = [], 0, header_size
    for name, count, props in elements:
        if count and not props:  # rows of no bytes: any count would "fit"
            raise RaveError(f"corrupt PLY header: element '{name}' declares {count} rows but no properties", path)
        info = PlyElementInfo(name, count, tuple(props), None)
        row = info.min_row_bytes(ascii)
        need, left = count * row, size - header_size - used
        if need - ascii > left:  # ascii: the last row may lack its newline
            raise RaveError(
                f"truncated or corrupt PLY file: element '{name}' declares {count} rows of at least {row} "
                f"byte{'s' * (row != 1)} "
                f"({need} bytes) but only {max(left, 0)} bytes remain after the header"
                + (" and the elements before it" if used else ""),
                path,
            )
        used += need
        if not ascii and offset is not None:
            info = PlyElementInfo(name, count, tuple(props), offset)
            offset = None if info.has_lists else offset + need
        infos.append(info)
    return PlyHeader(path, fmt, tuple(infos), header_size, size, tuple(comments))


def read_ply_vertices(path: str | os.PathLike, header: PlyHeader | None = None) -> np.ndarray:
    """The ``vertex`` element of a PLY file as an [N] structured numpy array (one field per property).

    Only the vertex element is read, after :func:`check_ply_header` (or the ``header`` it returned for this
    file): binary data is a copy-on-write memory map of the file in the file's byte order (cast what you keep),
    ascii data is parsed into the declared types. Refused with one RaveError line: no vertex element, list
    properties in it (not supported), binary files with a list element before it, ascii rows with the wrong
    number of values or values that do not parse.
    """
    path = Path(path)
    header = header or check_ply_header(path)
    el = header.element("vertex")
    if el is None:
        raise RaveError(f"PLY has no 'vertex' element (elements: {', '.join(header.names()) or 'none'})", path)
    lists = [p.name for p in el.properties if p.is_list]
    if lists:
        raise RaveError(
            f"PLY 'vertex' element has list property '{lists[0]}'; only scalar vertex properties are supported", path
        )
    order = PLY_FORMATS[header.format]
    dtype = np.dtype([(p.name, order + p.dtype) for p in el.properties])
    if el.count == 0:
        return np.zeros(0, dtype=dtype)
    if not header.ascii:
        if el.offset is None:
            before = next(e.name for e in header.elements if e.has_lists)
            raise RaveError(f"PLY element '{before}' has list properties and comes before 'vertex'; not supported",
                            path)  # fmt: skip
        if el.offset + el.count * dtype.itemsize > header.file_size:  # checked by the header: the file changed
            raise RaveError("truncated PLY file (the vertex data ends early)", path)
        try:
            return np.memmap(path, dtype=dtype, mode="c", offset=el.offset, shape=(el.count,))
        except (OSError, ValueError) as e:
            raise RaveError(f"cannot read file: {' '.join(str(e).split())}", path) from None
    return _read_ascii_vertices(header, el, dtype)


def _read_ascii_vertices(header: PlyHeader, el: PlyElementInfo, dtype: np.dtype) -> np.ndarray:
    """Ascii rows of ``el`` (one per line, after the rows of the elements before it), block by block."""
    path = header.path
    skip = 0
    for e in header.elements:
        if e.name == el.name:
            break
        skip += e.count
    out = np.empty(el.count, dtype=dtype)
    k = len(el.properties)
    with _open_checked(path) as f:
        f.seek(header.header_size)
        text = io.TextIOWrapper(f, "ascii", newline=None)
        try:
            for _ in range(skip):
                if not text.readline():
                    raise RaveError("truncated PLY file (it ends before the 'vertex' rows)", path)
            for a in range(0, el.count, _ASCII_BLOCK):
                b = min(a + _ASCII_BLOCK, el.count)
                rows = []
                for i in range(a, b):
                    line = text.readline()
                    vals = line.split()
                    if len(vals) != k:
                        if not line:
                            raise RaveError(f"truncated PLY file: {i} of {el.count} vertex rows", path)
                        raise RaveError(f"PLY vertex row {i} has {len(vals)} values, expected {k}", path)
                    rows.append(vals)
                cells = np.array(rows, dtype=str)
                for j, p in enumerate(el.properties):
                    try:
                        with np.errstate(over="ignore"):  # 1e39 as float32 is inf, reported by read_ply
                            out[p.name][a:b] = cells[:, j].astype(dtype[p.name])
                    except (ValueError, OverflowError):
                        bad = next((i for i in range(b - a) if not _parses(cells[i, j], dtype[p.name])), 0)
                        raise RaveError(
                            f"PLY vertex row {a + bad} property '{p.name}': {_show(cells[bad, j], 30)} is not a "
                            f"valid {dtype[p.name].name} value",
                            path,
                        ) from None
        except UnicodeDecodeError:
            raise RaveError("corrupt ascii PLY file (data is not ASCII text)", path) from None
        finally:
            text.detach()
    return out


def _parses(cell: str, dtype: np.dtype) -> bool:
    try:
        np.array([cell]).astype(dtype)
        return True
    except (ValueError, OverflowError):
        return False


def _read_plydata(path: Path):
    """plyfile's PlyData of a PLY whose header :func:`check_ply_header` accepted; every failure one RaveError.

    Kept for readers that want plyfile's objects; :func:`read_ply_vertices` reads only the vertex element.
    """
    from plyfile import PlyData

    check_ply_header(path)
    try:
        return PlyData.read(str(path))  # memory-mapped binary data; ascii parsed line by line
    except RaveError:
        raise
    except Exception as e:  # plyfile raises PlyHeaderParseError, PlyElementParseError, ValueError, ...
        msg = " ".join(str(e).split()) or type(e).__name__
        raise RaveError(f"corrupt or truncated PLY file ({msg})", path) from None


def ply_property_names(sh_degree: int) -> list[str]:
    """Property names of the ``vertex`` element in INRIA order for ``sh_degree`` (0..3)."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz"]
        + [f"f_dc_{i}" for i in range(3)]
        + [f"f_rest_{i}" for i in range(n_rest)]
        + ["opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )


def _names(names: list[str], quote: bool = True) -> str:
    """``'a', 'b', ... and 3 more``: about :data:`_MAX_NAMES_SHOWN` names (each cut to 30 characters)."""
    q = (lambda n: repr(n) if len(n) <= 30 else repr(n[:27] + "...")) if quote else (lambda n: n[:30])
    cut = _MAX_NAMES_SHOWN if len(names) > _MAX_NAMES_SHOWN + 1 else len(names)  # never "and 1 more"
    shown = ", ".join(q(n) for n in names[:cut])
    return shown + (f" and {len(names) - cut} more" if len(names) > cut else "")


def _gaussian_layout(header: PlyHeader) -> tuple[PlyElementInfo, int, list[str]]:
    """(vertex element, number of f_rest_*, what is ignored) of a 3DGS PLY; anything else one RaveError line."""
    path = header.path
    names = header.names()
    el = header.element("vertex")
    props = {p.name: p for p in el.properties} if el is not None else {}
    if "chunk" in names or any(n.startswith("packed_") for n in props):
        raise RaveError(
            "this is a compressed PLY (PlayCanvas/SuperSplat .compressed.ply: an element 'chunk' and packed vertex "
            "properties), which is not supported: decompress it with PlayCanvas splat-transform (`npx "
            "@playcanvas/splat-transform scene.compressed.ply scene.ply`) or export an uncompressed PLY",
            path,
        )
    if el is None:
        raise RaveError(f"PLY has no 'vertex' element (elements: {', '.join(names) or 'none'}); not a 3D "
                        "Gaussian Splatting PLY", path)  # fmt: skip
    lists = [p.name for p in el.properties if p.is_list]
    if lists:
        raise RaveError(f"PLY 'vertex' element has list property '{lists[0]}'; a 3DGS PLY has only scalar "
                        "properties", path)  # fmt: skip
    specific = [n for n in props if n in REQUIRED[3:] or _F_REST.match(n)]
    if not specific:
        faces = any(e.name == "face" and e.count for e in header.elements)
        kind = "mesh" if faces else "point cloud"
        no_xyz = [n for n in ("x", "y", "z") if n not in props]
        raise RaveError(
            f"this looks like a {kind} (vertex properties {_names(list(props), quote=False) or 'none'}), not a 3D "
            "Gaussian Splatting model: it has none of the 3DGS properties f_dc_0-2, opacity, scale_0-2, rot_0-3"
            + (f" (nor {_names(no_xyz)})" if no_xyz else ""),
            path,
        )
    missing = [n for n in REQUIRED if n not in props]
    if missing == ["scale_2"]:
        raise RaveError("PLY has two scales per Gaussian (scale_0, scale_1, no scale_2): this looks like a 2D "
                        "Gaussian Splatting (surfel) model; only 3DGS PLYs are supported", path)  # fmt: skip
    if missing and all(m.startswith("f_dc_") for m in missing) and {"red", "green", "blue"} <= set(props):
        raise RaveError("PLY has 8-bit red/green/blue colours instead of the SH coefficients f_dc_0-2 (as "
                        "Nerfstudio's `ns-export gaussian-splat --ply-color-mode rgb` writes); export it with SH "
                        "coefficients (`--ply-color-mode sh_coeffs`)", path)  # fmt: skip
    if missing:
        word = "property" if len(missing) == 1 else "properties"
        raise RaveError(f"PLY 'vertex' element is missing {word} {_names(missing)}; not a 3D Gaussian Splatting "
                        "PLY", path)  # fmt: skip
    rest_ids = sorted(int(m.group(1)) for n in props if (m := _F_REST.match(n)))
    if len(rest_ids) not in _VALID_F_REST:
        raise RaveError(f"PLY has {len(rest_ids)} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)",
                        path)  # fmt: skip
    if rest_ids != list(range(len(rest_ids))):
        gap = next(i for i, r in enumerate(rest_ids) if r != i)
        raise RaveError(f"PLY is missing property 'f_rest_{gap}'", path)
    n_rest = len(rest_ids)
    used = set(REQUIRED) | {f"f_rest_{i}" for i in range(n_rest)}
    ints = [n for n in props if n in used and props[n].dtype[0] != "f"]
    if ints:
        n, more = ints[0], f" (and {len(ints) - 1} more)" if len(ints) > 1 else ""
        raise RaveError(
            f"PLY property '{n}' is {_TYPE_NAMES[props[n].dtype]}{more}: 3DGS parameters must be float, double or "
            "half (quantized layouts are not supported)",
            path,
        )
    if el.count == 0:
        raise RaveError("PLY holds 0 Gaussians ('element vertex 0')", path)
    extras = [n for n in props if n not in used and n not in SILENTLY_IGNORED]
    ignored = []
    if extras:
        ignored.append(f"{len(extras)} vertex propert{'y' if len(extras) == 1 else 'ies'} that "
                       f"{'is not a 3DGS parameter' if len(extras) == 1 else 'are not 3DGS parameters'} "
                       f"({_names(extras, quote=False)})")  # fmt: skip
    others = [e.name for e in header.elements if e.name != "vertex"]
    if others:
        ignored.append(f"element{'s' * (len(others) != 1)} {_names(others)}")
    return el, n_rest, ignored


#: Why a Gaussian is dropped, in the order it is counted (each dropped Gaussian once, under the first).
DROP_REASONS = ("NaN/inf position", "NaN/inf rotation", "NaN/+inf scale", "NaN opacity", "NaN/inf colour")


def _usable(path: Path, cols: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """The Gaussians ``cols`` (float32 [N, ...] arrays, changed in place) after the module's rules, and the
    one warning line about them ("" when nothing was dropped or repaired)."""
    n = len(cols["means"])
    flat = lambda a: a.reshape(n, -1)  # noqa: E731
    bad = {
        DROP_REASONS[0]: ~np.isfinite(cols["means"]).all(axis=1),
        DROP_REASONS[1]: ~np.isfinite(cols["quats"]).all(axis=1),
        DROP_REASONS[2]: (np.isnan(cols["scales"]) | np.isposinf(cols["scales"])).any(axis=1),
        DROP_REASONS[3]: np.isnan(cols["opacities"]),
        DROP_REASONS[4]: ~(np.isfinite(flat(cols["sh0"])).all(axis=1) & np.isfinite(flat(cols["f_rest"])).all(axis=1)),
    }
    dropped = np.zeros(n, dtype=bool)
    counts = []
    for why, mask in bad.items():
        c = int(np.count_nonzero(mask & ~dropped))
        if c:
            counts.append(f"{why} {c:,}")
            dropped |= mask
    n_drop = int(np.count_nonzero(dropped))
    if n_drop == n:
        raise RaveError(f"all {n:,} Gaussians have unusable values ({', '.join(counts)}); nothing left to read",
                        path)  # fmt: skip
    if n_drop:
        keep = ~dropped
        cols = {k: v[keep] for k, v in cols.items()}
    parts = [f"{n_drop:,} of {n:,} Gaussians dropped ({', '.join(counts)})"] if n_drop else []
    zero_q = (cols["quats"] == 0).all(axis=1)
    if zero_q.any():
        cols["quats"][zero_q] = (1.0, 0.0, 0.0, 0.0)
        c = int(np.count_nonzero(zero_q))
        parts.append(f"{c:,} all-zero rotation{'s' * (c != 1)} set to identity")
    neg = np.isneginf(cols["scales"])
    if neg.any():
        cols["scales"][neg] = MIN_LOG_SCALE
        c = int(np.count_nonzero(neg.any(axis=1)))
        parts.append(f"-inf log-scales of {c:,} Gaussian{'s' * (c != 1)} set to {MIN_LOG_SCALE:g} (zero width)")
    if parts:
        o = cols["opacities"]
        pos, neg_o = int(np.count_nonzero(np.isposinf(o))), int(np.count_nonzero(np.isneginf(o)))
        if pos:
            parts.append(f"{pos:,} +inf opacit{'y' if pos == 1 else 'ies'} kept as fully opaque")
        if neg_o:
            parts.append(f"{neg_o:,} -inf opacit{'y' if neg_o == 1 else 'ies'} kept as fully transparent")
    return cols, "; ".join(parts)


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY of any tool's layout as float32 :class:`Gaussians` (see the module docstring).

    At most two :class:`RavePlyWarning` lines, each naming the file: what was ignored (extra properties, other
    elements), and what was dropped or repaired (non-finite values, with counts). Every refusal is one
    :class:`~rave_viewer.errors.RaveError` line naming the file.
    """
    path = Path(path)
    header = check_ply_header(path)
    el, n_rest, ignored = _gaussian_layout(header)
    data = read_ply_vertices(path, header)
    n = int(len(data))

    def cols(names: list[str]) -> np.ndarray:
        """[N, len(names)] float32 copy (native byte order) of the named properties."""
        out = np.empty((n, len(names)), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes +-inf (see rules)
            for j, name in enumerate(names):
                out[:, j] = data[name]
        return out

    arrays = {
        "means": cols(["x", "y", "z"]),
        "quats": cols([f"rot_{i}" for i in range(4)]),
        "scales": cols([f"scale_{i}" for i in range(3)]),
        "opacities": cols(["opacity"])[:, 0],
        "sh0": cols([f"f_dc_{i}" for i in range(3)]),
        "f_rest": cols([f"f_rest_{i}" for i in range(n_rest)]),
    }
    del data  # release the memory map
    if ignored:
        warnings.warn(f"{path}: ignored {' and '.join(ignored)}", RavePlyWarning, stacklevel=2)
    arrays, repaired = _usable(path, arrays)
    if repaired:
        warnings.warn(f"{path}: {repaired}", RavePlyWarning, stacklevel=2)
    m, k = len(arrays["means"]), n_rest // 3
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    g = Gaussians(
        means=t(arrays["means"]),
        quats=t(arrays["quats"]),
        scales=t(arrays["scales"]),
        opacities=t(arrays["opacities"]),
        sh0=t(arrays["sh0"]).reshape(m, 1, 3),
        shN=t(arrays["f_rest"].reshape(m, 3, k).transpose(0, 2, 1)),
    )
    return g.validate(source=str(path))


def gaussians_to_ply_array(g: Gaussians) -> np.ndarray:
    """[N] structured float32 (little endian) array with the INRIA properties, normals zero."""
    n, k = len(g), g.shN.shape[1]
    f32 = lambda t: t.detach().to("cpu", torch.float32).reshape(n, -1)  # noqa: E731
    flat = torch.cat(
        [
            f32(g.means),
            torch.zeros(n, 3, dtype=torch.float32),
            f32(g.sh0),
            f32(g.shN.transpose(1, 2)),  # [N, 3, K] -> channel-major f_rest
            f32(g.opacities),
            f32(g.scales),
            f32(g.quats),
        ],
        dim=1,
    ).numpy()
    names = ply_property_names(g.sh_degree)
    assert flat.shape[1] == len(names) and k * 3 + 17 == len(names)
    dtype = np.dtype([(name, "<f4") for name in names])
    return np.ascontiguousarray(flat.astype("<f4", copy=False)).view(dtype).reshape(n)


def write_ply(gaussians: Gaussians, path: str | os.PathLike) -> None:
    """Write ``gaussians`` atomically as a binary little-endian INRIA PLY (float32, normals zero).

    Tensors are converted to float32, so for float32 Gaussians ``read_ply(p)`` returns them bit-exactly.
    Raises :class:`RaveError` (naming ``path``) for NaN values or an empty scene.
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    gaussians.validate(source=str(path))
    el = PlyElement.describe(gaussians_to_ply_array(gaussians), "vertex")
    try:
        with atomic_write(path, "wb") as f:
            PlyData([el], byte_order="<").write(f)
    except OSError as e:
        raise RaveError(f"cannot write file: {e.strerror or e}", path) from None
