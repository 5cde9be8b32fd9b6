"""The ``.scaffold`` file: a safetensors file of float32 tensors plus JSON metadata; never pickle.

Tensors: the per-anchor ``anchor`` [N, 3], ``offset`` [N, k, 3], ``anchor_feat`` [N, F], ``scaling`` [N, 6]
(log) and the MLP weights ``mlp_{opacity,cov,color}.{0,2}.{weight,bias}`` (PyTorch ``nn.Linear`` layout).
Metadata (safetensors ``__metadata__``, string values): ``format`` = ``rave_viewer.scaffold``,
``format_version``, ``spec`` (JSON: feat_dim, n_offsets, voxel_size, opacity_dist, cov_dist, color_dist),
``versions`` (JSON) and optional JSON entries such as ``train`` (the run's figures and config).

Loading checks everything before a model is built and reports one :class:`RaveError` line naming the file:
missing/unreadable file, a pickle or ``torch.save`` archive (refused: unpickling can run code), not
safetensors, another format or a newer version, missing anchor tensors or MLP weights, shapes that disagree
with the spec (e.g. a feature size the MLPs do not take), non-float32 or non-finite values, no anchors.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import RaveError
from .model import ANCHOR_FIELDS, MLP_NAMES, ScaffoldMLPs, ScaffoldModel, ScaffoldSpec

FORMAT = "rave_viewer.scaffold"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit on the JSON header
_SPEC_TYPES = {"feat_dim": int, "n_offsets": int, "voxel_size": float, "opacity_dist": bool, "cov_dist": bool,
               "color_dist": bool}


def to_bytes(model: ScaffoldModel, extra: dict[str, Any] | None = None) -> bytes:
    """The file's bytes, deterministic (the same model and metadata give the same bytes).

    Written here rather than by ``safetensors.torch.save``, whose header key order varies between calls:
    keys sorted, tensors stored in header order, the header padded with spaces to 8 bytes (the safetensors
    layout; :func:`from_bytes` reads it back with the safetensors library).
    """
    from .. import __version__

    tensors = {f: model.params[f].detach().to("cpu", torch.float32).contiguous() for f in ANCHOR_FIELDS}
    tensors.update({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.mlp_tensors().items()})
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
            "spec": json.dumps(model.spec.to_dict(), sort_keys=True),
            "versions": json.dumps({"rave_viewer": __version__, "torch": torch.__version__}, sort_keys=True)}
    for k, v in (extra or {}).items():
        meta[k] = json.dumps(v, allow_nan=False, default=str, sort_keys=True)
    header: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))}
    blobs, at = [], 0
    for name in sorted(tensors):
        b = tensors[name].numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def save(model: ScaffoldModel, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temp file, then rename); ``extra``: JSON-ready metadata."""
    from ..fileio import atomic_write_bytes
    from ..train.run import _jsonable

    path = Path(path)
    atomic_write_bytes(path, to_bytes(model, _jsonable(extra or {})))
    return path


def read_metadata(data: bytes, path) -> dict[str, str]:
    """The ``__metadata__`` of safetensors ``data``; RaveError for pickles, archives and other files."""
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    if not (2 <= n <= MAX_HEADER_BYTES and 8 + n <= len(data) and data[8:9] == b"{"):
        # not safetensors (whose first 8 bytes are the header length, which may itself start with 0x80)
        if data[:1] == b"\x80":
            raise RaveError("is a Python pickle, not a .scaffold (safetensors) file: refused, loading a pickle "
                            "can run arbitrary code", path)
        if data[:4] == b"PK\x03\x04":
            raise RaveError("is a zip archive (torch.save?), not a .scaffold (safetensors) file: refused, "
                            "torch.save files are pickles and loading them can run arbitrary code", path)
        if len(data) < 8:
            raise RaveError(f"is not a .scaffold file (only {len(data)} bytes)", path)
        raise RaveError("is not a .scaffold file (no safetensors header; truncated or another format)", path)
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RaveError("is not a .scaffold file (its safetensors header is not valid JSON)", path) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RaveError(f"is a safetensors file but not a Scaffold-GS model (no '{FORMAT}' format in its "
                        "metadata)", path)
    ends = [e["data_offsets"][1] for k, e in header.items() if k != "__metadata__" and isinstance(e, dict)
            and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
            and isinstance(e["data_offsets"][1], int)]
    expected = 8 + n + max(ends, default=0)
    if len(data) < expected:
        raise RaveError(f"is truncated ({len(data):,} of {expected:,} bytes)", path)
    return meta


def _spec(meta: dict[str, str], path) -> ScaffoldSpec:
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise RaveError(f"has an unreadable format_version {meta.get('format_version')!r}", path) from None
    if version > FORMAT_VERSION:
        raise RaveError(f"is a .scaffold file of version {version}; this rave_viewer reads up to version "
                        f"{FORMAT_VERSION} (upgrade rave_viewer)", path)
    try:
        d = json.loads(meta.get("spec", ""))
    except (ValueError, RecursionError):
        d = None
    if not isinstance(d, dict):
        raise RaveError("has no readable model spec (metadata 'spec')", path)
    missing = [k for k in _SPEC_TYPES if k not in d]
    if missing:
        raise RaveError(f"model spec lacks {', '.join(missing)}", path)
    for k, t in _SPEC_TYPES.items():
        v = d[k]
        ok = isinstance(v, bool) if t is bool else (not isinstance(v, bool) and isinstance(v, (int, float) if t is float
                                                                                            else int))
        if not ok:
            raise RaveError(f"model spec '{k}' must be {t.__name__}, got {v!r:.40}", path)
    if not 1 <= d["feat_dim"] <= 1024 or not 1 <= d["n_offsets"] <= 256:
        raise RaveError(f"model spec out of range (feat_dim {d['feat_dim']}, n_offsets {d['n_offsets']})", path)
    if not (0 < float(d["voxel_size"]) < 1e30):
        raise RaveError(f"model spec 'voxel_size' must be a positive finite number, got {d['voxel_size']!r}", path)
    return ScaffoldSpec(**{k: (float(d[k]) if t is float else d[k]) for k, t in _SPEC_TYPES.items()})


def _check_tensor(name: str, t: Tensor, shape: tuple, path) -> None:
    if t.dtype != torch.float32:
        raise RaveError(f"tensor '{name}' is {str(t.dtype).removeprefix('torch.')}, expected float32", path)
    if tuple(t.shape) != shape:
        raise RaveError(f"tensor '{name}' has shape {list(t.shape)}, expected {list(shape)}", path)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise RaveError(f"tensor '{name}' holds NaN or infinite values", path)


def from_bytes(data: bytes, path=None) -> ScaffoldModel:
    """A model from a file's bytes (see the module docstring for what is checked)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    meta = read_metadata(data, path)
    spec = _spec(meta, path)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise RaveError(f"is a damaged .scaffold file ({' '.join(str(e).split())[:120]})", path) from None
    missing = [f for f in ANCHOR_FIELDS if f not in tensors]
    if missing:
        raise RaveError(f"lacks the anchor tensors {', '.join(missing)}", path)
    mlps = ScaffoldMLPs(spec)
    want = mlps.state_dict()
    missing = [k for k in want if k not in tensors]
    if missing:
        raise RaveError(f"lacks MLP weights: {', '.join(missing)} (a model without its decoders cannot be rendered)",
                        path)
    unknown = [k for k in tensors if k not in want and k not in ANCHOR_FIELDS]
    if unknown:
        raise RaveError(f"holds unknown tensors: {', '.join(sorted(unknown)[:5])}", path)
    feat = tensors["anchor_feat"]
    if feat.ndim == 2 and feat.shape[1] != spec.feat_dim:
        raise RaveError(f"anchor features have {feat.shape[1]} values per anchor, but the model spec and its MLPs "
                        f"take feat_dim {spec.feat_dim}", path)
    for name in MLP_NAMES:
        w = tensors[f"{name}.0.weight"]
        if w.ndim == 2 and w.shape[1] != spec.mlp_inputs(name):
            raise RaveError(f"MLP '{name}' takes {w.shape[1]} inputs, but feat_dim {spec.feat_dim} needs "
                            f"{spec.mlp_inputs(name)} (features + direction{' + distance' if spec.mlp_inputs(name) > spec.feat_dim + 3 else ''})",
                            path)
    n = tensors["anchor"].shape[0] if tensors["anchor"].ndim == 2 else -1
    if n == 0:
        raise RaveError("has no anchors", path)
    k, F = spec.n_offsets, spec.feat_dim
    shapes = {"anchor": (n, 3), "offset": (n, k, 3), "anchor_feat": (n, F), "scaling": (n, 6)}
    for f in ANCHOR_FIELDS:
        _check_tensor(f, tensors[f], shapes[f], path)
    for key, ref in want.items():
        _check_tensor(key, tensors[key], tuple(ref.shape), path)
    mlps.load_state_dict({k: tensors[k] for k in want})
    return ScaffoldModel(spec, {f: tensors[f] for f in ANCHOR_FIELDS}, mlps)


def load(path: str | os.PathLike) -> ScaffoldModel:
    """Read a ``.scaffold`` file; one RaveError line naming the file for anything wrong with it."""
    path = Path(path)
    if not path.exists():
        raise RaveError("file not found", path)
    if path.is_dir():
        raise RaveError("is a folder, expected a .scaffold file", path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RaveError(f"cannot read the file: {e.strerror or e}", path) from None
    return from_bytes(data, path)


def metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The file's metadata with JSON values decoded (``spec``, ``versions``, ``train`` …)."""
    path = Path(path)
    meta = read_metadata(path.read_bytes(), path)
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
