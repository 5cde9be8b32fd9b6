"""INRIA 3DGS PLY files in and out (the layout of the official trainer, gsplat's export and SuperSplat).

Layout, one ``vertex`` element of float32 properties (binary little endian when we write)::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3

``f_rest`` is channel-major (all K coefficients of R, then G, then B), so ``shN[N, K, 3]`` is
``f_rest.reshape(N, 3, K).transpose(1, 2)``. Opacities are logits, scales are log-scales and rotations are
quaternions (w, x, y, z), i.e. exactly gsplat's parameters, so reading and writing is a lossless copy.
"""

from __future__ import annotations

import os
import re
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


def _read_plydata(path: Path):
    """plyfile's PlyData, with every parse failure turned into one RaveError line."""
    from plyfile import PlyData

    if not path.exists():
        raise RaveError("file not found", path)
    if path.is_dir():
        raise RaveError("is a folder, expected a .ply file", path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise RaveError(f"cannot read file: {e.strerror or e}", path) from None
    if len(magic) == 0:
        raise RaveError("file is empty", path)
    if magic[:3] != b"ply" or magic[3:4] not in (b"\n", b"\r"):
        raise RaveError("not a PLY file (it does not start with 'ply')", path)
    try:
        # Memory-mapped read of binary data (fast); ascii files are parsed line by line.
        return PlyData.read(str(path))
    except RaveError:
        raise
    except Exception as e:  # plyfile raises PlyHeaderParseError, PlyElementParseError, ValueError, ...
        msg = " ".join(str(e).split()) or type(e).__name__
        raise RaveError(f"corrupt or truncated PLY file ({msg})", path) from None


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY: float32 :class:`Gaussians`, validated (no NaN, not empty).

    Properties may come in any order, normals (``nx ny nz``) are optional and ignored, float64 (or other
    numeric) properties are converted to float32, ascii and big-endian files are accepted. The SH degree is
    inferred from the number of ``f_rest_*`` properties (0, 9, 24 or 45). ``opacity`` may be ±inf.
    """
    path = Path(path)
    ply = _read_plydata(path)
    names = [e.name for e in ply.elements]
    if "vertex" not in names:
        found = ", ".join(names) or "none"
        raise RaveError(f"PLY has no 'vertex' element (elements: {found})", path)
    el = ply["vertex"]
    props = {p.name: p for p in el.properties}
    if "packed_position" in props or "chunk" in names:
        raise RaveError(
            "compressed PLY (SuperSplat/PlayCanvas packed layout) is not supported; export an uncompressed PLY",
            path,
        )
    missing = [n for n in REQUIRED if n not in props]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        word = "property" if len(missing) == 1 else "properties"
        raise RaveError(f"PLY 'vertex' element is missing {word} {shown}; not a 3D Gaussian Splatting PLY", path)
    rest_ids = sorted(int(m.group(1)) for n in props if (m := _F_REST.match(n)))
    if len(rest_ids) not in _VALID_F_REST:
        raise RaveError(
            f"PLY has {len(rest_ids)} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)", path
        )
    if rest_ids != list(range(len(rest_ids))):
        gap = next(i for i, r in enumerate(rest_ids) if r != i)
        raise RaveError(f"PLY is missing property 'f_rest_{gap}'", path)
    n_rest = len(rest_ids)
    wanted = list(REQUIRED) + [f"f_rest_{i}" for i in range(n_rest)]
    for n in wanted:
        if props[n].__class__.__name__ == "PlyListProperty":
            raise RaveError(f"PLY property '{n}' is a list, expected a scalar", path)

    data = el.data
    n = int(len(data))

    def cols(names: list[str]) -> torch.Tensor:
        """[N, len(names)] float32 copy (native byte order) of the named properties."""
        out = np.empty((n, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            out[:, j] = data[name]  # casts float64/ints/big-endian to native float32
        return torch.from_numpy(out)

    k = n_rest // 3
    f_rest = cols([f"f_rest_{i}" for i in range(n_rest)])
    g = Gaussians(
        means=cols(["x", "y", "z"]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        scales=cols([f"scale_{i}" for i in range(3)]),
        opacities=cols(["opacity"])[:, 0].contiguous(),
        sh0=cols([f"f_dc_{i}" for i in range(3)]).reshape(n, 1, 3),
        shN=f_rest.reshape(n, 3, k).transpose(1, 2).contiguous(),
    )
    del data, el, ply  # release the memory map
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
