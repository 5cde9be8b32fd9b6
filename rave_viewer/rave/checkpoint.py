"""The ``.ckpt`` file: a ranked, fine-tuned model with its levels, exact rates and RD table, in safetensors.

Never pickle: a downloaded checkpoint must not be able to run code when loaded. The file is a safetensors
file (tensors + a string→string metadata map); the metadata key ``"rave"`` holds one JSON document:

``format`` ("rave-ckpt"), ``format_version``, ``n``, ``sh_degree``, ``level_sizes``, ``level_rates``,
``quant`` (QuantConfig dict), ``codec``, ``chunk_size``, ``interpolate`` (False for the naive multi-anchor
ablation), ``rd`` {"count", "bytes", "psnr", "ssim"}, ``test`` {"width", "height", "names"}, ``meta``
(build config, ranking mode, timings, source files).

Tensors: ``gaussians.<field>`` (float32, ranked order), ``order`` [N] int64, ``bounds`` [2, 3] float32,
``chunk_rates`` [M + 1] int64 (exact bytes of the prefixes ending at chunk boundaries 0, c, 2c, …, N),
``test.viewmats`` [C, 4, 4], ``test.Ks`` [C, 3, 3], ``test.images`` [C, H, W, 3] uint8.

Loading checks the format, version, presence, dtypes and shapes of every tensor, the type and range of every
metadata value (bit depths are ints in the quantizer's ranges, counts agree with the tensors, RD lists have one
length, increase in count and rate and hold finite numbers) and refuses pickles (``torch.save`` zips and raw
pickles) without unpickling them. JSON is read strictly: no NaN/Infinity, no integer literal over 40 digits, no
nesting deeper than 64, no lone surrogates. The safetensors layout (header length, dtypes, shapes, offsets) is
checked by safetensors itself, whose errors are wrapped. Every problem is one :class:`RaveError` line naming the
file; a clean load encodes. The optional build record ``meta`` is the exception: a known field of the wrong shape
(``stages``, ``total_seconds``, ``config``, ``sources``, ``rd_views``, ...) is dropped and named in
:attr:`RaveCheckpoint.unreadable_meta`, so an odd record never makes the model unusable.

Units: the selection API (``select``, ``prefix_bytes``, ``level_of``, ``rate_range`` ...) lives in
:class:`RankedCheckpoint`, shared by this module's Gaussian checkpoint and the Scaffold-GS anchor checkpoint
(:mod:`rave_viewer.rave.anchor_checkpoint`, ``unit_type`` "anchors", checkpoint format version 2: older readers
say "newer"). :func:`load_checkpoint` returns the class the file's ``unit_type`` names (absent: Gaussians);
:func:`save_checkpoint` writes either.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from ..jsonio import strict_loads
from ..errors import RaveError, shown
from ..fileio import atomic_write_bytes
from ..scene.cameras import Cameras
from ..scene.gaussians import FIELDS, Gaussians
from . import selection

FORMAT = "rave-ckpt"
FORMAT_VERSION = 1  # of Gaussian checkpoints
#: The checkpoint format version each unit type is written with (and the newest this version reads).
UNIT_FORMAT_VERSIONS = {"gaussians": FORMAT_VERSION, "anchors": 2}
RD_KEYS = ("count", "bytes", "psnr", "ssim")


class RankedCheckpoint:
    """Selection over the prefixes of ranked units, whatever the units are (Gaussians, anchors).

    A subclass has ``level_sizes``, ``level_rates``, ``chunk_size``, ``chunk_rates``, ``rd``, ``interpolate``,
    ``_psnr_max``, ``__len__`` and ``encoder()`` (a progressive encoder with ``size_of_prefix`` and
    ``partial_chunk_size``), and says what it holds in ``unit_type`` / ``unit_label``.
    """

    unit_type: ClassVar[str] = ""
    unit_label: ClassVar[str] = "units"

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    def _chunk_table(self) -> list[int]:
        if self.chunk_rates is None:
            self.chunk_rates = chunk_rate_table(self.encoder(), len(self), self.chunk_size)
        return self.chunk_rates

    def prefix_bytes(self, k: int) -> int:
        """Exact .rave size of the first ``k`` units.

        With the chunk table: a table lookup at chunk boundaries, else the boundary below plus one index entry
        and the compressed partial chunk (only that chunk is compressed, whatever k and N are).
        """
        from ..codec.container import INDEX_ENTRY_SIZE

        n = len(self)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= n:
            raise RaveError(f"prefix length must be an integer 0..{n}, got {k!r}")
        k = int(k)
        if self.chunk_rates is None:
            return int(self.encoder().size_of_prefix(k))
        full, rest = divmod(k, self.chunk_size)
        if rest == 0 or k == n:
            return int(self.chunk_rates[-(-k // self.chunk_size)])
        return int(self.chunk_rates[full]) + INDEX_ENTRY_SIZE + self.encoder().partial_chunk_size(k)

    def select(self, *, rate: float | str | None = None, count: int | None = None,
               psnr: float | None = None, exact: bool = True, cap: bool = False) -> int:
        """Prefix length k for exactly one target: ``rate`` (bytes or "2.5MB"), ``count`` or ``psnr`` (dB).

        Rate, ``cap`` False (the default, O(log), the viewer's slider): the nearest point, by Eq. 3 between the
        levels (``exact=False``) or between exact chunk-boundary sizes inside the level interval (size within
        one chunk of the target). ``cap`` True: the largest prefix whose exact size is <= the rate (compresses
        at most :func:`~rave_viewer.rave.selection.cap_probe_bound` partial chunks; the whole model above
        R(G_L)). A string rate with a leading ``~`` ("~2.5MB") always means the nearest point.
        PSNR: the smallest prefix reaching it on the RD table (the smallest level that does, for the naive
        multi-anchor ablation). Out-of-range targets raise RaveError.
        """
        given = [x is not None for x in (rate, count, psnr)]
        if sum(given) != 1:
            raise RaveError("give exactly one target: rate, count or psnr")
        if rate is not None:
            if isinstance(rate, str):
                r, nearest = selection.parse_rate_target(rate)
                cap = cap and not nearest
            else:
                r = float(rate)
            if cap:
                return selection.select_by_rate_cap(self.level_sizes, self.level_rates, self.chunk_size,
                                                    self._chunk_table(), r, self.prefix_bytes,
                                                    interpolate=self.interpolate)
            if exact and self.interpolate:
                return selection.select_by_rate_exact(self.level_sizes, self.level_rates, self.chunk_size,
                                                      self._chunk_table(), r)
            return selection.select_by_rate(self.level_sizes, self.level_rates, r, interpolate=self.interpolate)
        if count is not None:
            return selection.select_by_count(self.level_sizes, count, interpolate=self.interpolate)
        if self._psnr_max is None or self._psnr_max[0] is not self.rd["psnr"]:
            self._psnr_max = (self.rd["psnr"], selection.psnr_running_max(self.rd["psnr"]))
        k = selection.select_by_psnr(self.rd, psnr, running_max=self._psnr_max[1])
        if not self.interpolate:  # the smallest level holding k units (so it reaches the target too)
            import bisect

            k = int(self.level_sizes[min(bisect.bisect_left(self.level_sizes, k), len(self.level_sizes) - 1)])
        return k

    def level_of(self, k: int) -> int:
        """1-based level l with |G_l| <= k < |G_{l+1}| (L when k == N, 0 when k < |G_1|)."""
        import bisect

        return bisect.bisect_right(self.level_sizes, int(k))

    def rate_range(self) -> tuple[int, int]:
        """(R(G_1), R(G_L)) in bytes: the valid range of target rates."""
        return int(self.level_rates[0]), int(self.level_rates[-1])

    def _payload(self) -> tuple[dict[str, Tensor], dict, dict]:
        """(unit tensors, unit fields of the JSON document, quantization dict) for :func:`save_checkpoint`."""
        raise NotImplementedError


@dataclass(eq=False)
class RaveCheckpoint(RankedCheckpoint):
    """A RAVE model: every operating point with k Gaussians is ``gaussians.prefix(k)`` (see CONTRACTS.md).

    Attributes:
        gaussians: fine-tuned Gaussians in ranked order.
        order: [N] int64 ranked order as indices into the input model's Gaussians (a permutation).
        level_sizes: |G_1| < … < |G_L| = N.  level_rates: exact .rave bytes of each level prefix.
        quant, bounds [2, 3], codec, chunk_size: the codec settings of every prefix's stream.
        rd: {"count", "bytes", "psnr", "ssim"} lists, increasing count, means over the test views.
        test_cameras: test views with images [C, H, W, 3] float32 (downscaled if large).
        meta: format_version, build config, ranking mode, timings, source files.
        chunk_rates: [M + 1] exact bytes of the prefixes ending at chunk boundaries 0, c, 2c, …, N (None:
            computed on first use).
        interpolate: False for the naive multi-anchor ablation (selection snaps to levels).
        unreadable_meta: names of the ``meta`` fields a loaded file held in a malformed shape (dropped).
    """

    gaussians: Gaussians
    order: Tensor
    level_sizes: list[int]
    level_rates: list[int]
    quant: object
    bounds: Tensor
    codec: str
    chunk_size: int
    rd: dict
    test_cameras: Cameras
    meta: dict = field(default_factory=dict)
    chunk_rates: list[int] | None = None
    interpolate: bool = True
    unreadable_meta: tuple[str, ...] = ()
    _encoder: object = field(default=None, repr=False, compare=False)
    _decoded: Gaussians | None = field(default=None, repr=False, compare=False)
    _psnr_max: tuple | None = field(default=None, repr=False, compare=False)

    unit_type: ClassVar[str] = "gaussians"
    unit_label: ClassVar[str] = "Gaussians"

    def __len__(self) -> int:
        return len(self.gaussians)

    def encoder(self):
        """The cached :class:`~rave_viewer.codec.ProgressiveEncoder` over the ranked Gaussians."""
        if self._encoder is None:
            from ..codec import ProgressiveEncoder

            self._encoder = ProgressiveEncoder(self.gaussians, self.quant, codec=self.codec,
                                               chunk_size=self.chunk_size, bounds=self.bounds)
        return self._encoder

    def decoded_gaussians(self) -> Gaussians:
        """What a receiver decodes (quantized with the fixed grid, dequantized), in ranked order; cached."""
        if self._decoded is None:
            from ..codec import dequantize, quantize

            q = self._encoder.quantized if self._encoder is not None else quantize(self.gaussians, self.quant,
                                                                                   self.bounds)
            self._decoded = dequantize(q)
        return self._decoded

    def _payload(self) -> tuple[dict[str, Tensor], dict, dict]:
        g = self.gaussians
        tensors = {f"gaussians.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in g.items()}
        tensors["bounds"] = self.bounds.detach().to("cpu", torch.float32).reshape(2, 3).contiguous()
        return tensors, {"n": len(g), "sh_degree": g.sh_degree}, self.quant.to_dict()


def chunk_rate_table(encoder, n: int, chunk_size: int) -> list[int]:
    """Exact sizes of the prefixes 0, c, 2c, …, N (compresses every chunk once)."""
    counts = list(range(0, n, chunk_size)) + [n]
    return [int(encoder.size_of_prefix(k)) for k in counts]


# -- save -----------------------------------------------------------------------------------------------
def _uint8(images: Tensor) -> Tensor:
    return (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().contiguous()


def save_checkpoint(ckpt: RankedCheckpoint, path: str | os.PathLike) -> int:
    """Write ``ckpt`` (Gaussians or anchors) to ``path`` (safetensors, atomic temp + rename); returns the bytes
    written."""
    from safetensors.torch import save

    tensors, unit_doc, quant = ckpt._payload()
    tensors["order"] = ckpt.order.detach().to("cpu", torch.int64).contiguous()
    chunk_rates = ckpt.chunk_rates if ckpt.chunk_rates is not None else ckpt._chunk_table()
    tensors["chunk_rates"] = torch.tensor(chunk_rates, dtype=torch.int64)
    cams = ckpt.test_cameras
    tensors["test.viewmats"] = cams.viewmats.detach().to("cpu", torch.float32).contiguous()
    tensors["test.Ks"] = cams.Ks.detach().to("cpu", torch.float32).contiguous()
    if cams.images is not None:
        tensors["test.images"] = _uint8(cams.images)
    unit = {} if ckpt.unit_type == "gaussians" else {"unit_type": ckpt.unit_type}
    doc = {
        "format": FORMAT,
        "format_version": UNIT_FORMAT_VERSIONS[ckpt.unit_type],
        **unit,
        **unit_doc,
        "level_sizes": [int(x) for x in ckpt.level_sizes],
        "level_rates": [int(x) for x in ckpt.level_rates],
        "quant": quant,
        "codec": ckpt.codec,
        "chunk_size": int(ckpt.chunk_size),
        "interpolate": bool(ckpt.interpolate),
        "rd": {k: list(ckpt.rd[k]) for k in RD_KEYS},
        "test": {"width": int(cams.width), "height": int(cams.height), "names": list(cams.names)},
        "meta": ckpt.meta,
    }
    data = save(tensors, metadata={"format": FORMAT, "rave": json.dumps(doc, allow_nan=False)})
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise RaveError(f"cannot write: {e.strerror or e}", path) from None
    return len(data)


# -- load -----------------------------------------------------------------------------------------------
def _is_old_pickle(data: bytes) -> bool:
    """True for a protocol 0/1 pickle: its opcodes parse up to a final STOP. ``pickletools.genops`` only
    decodes opcodes and never builds objects or imports anything, so this is safe on hostile data."""
    import pickletools

    if not data.endswith(b".") or len(data) > 1 << 20 or data[:1] == b"{":
        return False
    try:
        ops = list(pickletools.genops(data))
    except Exception:
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


MAX_IMAGE_SIDE = 1 << 15  # width / height of the stored test views
MAX_DB = 1000.0  # |PSNR| in the RD table (images in [0, 1]: PSNR >= 0; identical images are clamped far below)


def _sniff(data: bytes, path) -> dict:
    """The safetensors JSON header of ``data``; RaveError for pickles and anything else."""
    if data[:4] == b"PK\x03\x04":
        raise RaveError("is a pickle, refusing to load: .ckpt files are safetensors (this is a torch.save zip "
                        "archive; loading it could run arbitrary code)", path)
    if (len(data) >= 2 and data[0] == 0x80 and 1 <= data[1] <= 5) or _is_old_pickle(data):
        raise RaveError("is a pickle, refusing to load: .ckpt files are safetensors", path)
    if len(data) < 10:
        raise RaveError(f"is not a RAVE checkpoint (only {len(data)} bytes)", path)
    hlen = int.from_bytes(data[:8], "little")
    if hlen < 2 or hlen > len(data) - 8 or data[8:9] != b"{":
        raise RaveError("is not a RAVE checkpoint (not a safetensors file)", path)
    try:
        text = data[8:8 + hlen].decode("utf-8")
    except UnicodeDecodeError:
        raise RaveError("is not a RAVE checkpoint (unreadable safetensors header: not UTF-8)", path) from None
    header = strict_loads(text, "is not a RAVE checkpoint: unreadable safetensors header", path)
    if not isinstance(header, dict):
        raise RaveError("is not a RAVE checkpoint (unreadable safetensors header)", path)
    return header


def _doc(header: dict, path) -> dict:
    md = header.get("__metadata__") or {}
    if not isinstance(md, dict) or md.get("format") != FORMAT or "rave" not in md:
        raise RaveError("is a safetensors file but not a RAVE checkpoint (no 'rave' metadata)", path)
    if not isinstance(md["rave"], str):
        raise RaveError("has unreadable RAVE metadata (not a string)", path)
    doc = strict_loads(md["rave"], "has unreadable RAVE metadata", path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RaveError("has unreadable RAVE metadata", path)
    v = doc.get("format_version")
    if not _is_int(v):
        raise RaveError("has no checkpoint format version", path)
    unit = doc.get("unit_type", "gaussians")
    if not isinstance(unit, str) or unit not in UNIT_FORMAT_VERSIONS:
        raise RaveError(f"holds units of an unknown type {shown(unit)} (this version reads "
                        f"{', '.join(UNIT_FORMAT_VERSIONS)})", path)
    newest = max(UNIT_FORMAT_VERSIONS.values())
    if v > newest or (unit == "gaussians" and v > FORMAT_VERSION):
        reads = FORMAT_VERSION if unit == "gaussians" and v <= newest else newest
        raise RaveError(f"was written by a newer rave_viewer (checkpoint format {v}; this version reads "
                        f"{reads}): upgrade rave_viewer", path)
    if v != UNIT_FORMAT_VERSIONS[unit]:
        raise RaveError(f"has unsupported checkpoint format version {v} (this version reads "
                        f"{UNIT_FORMAT_VERSIONS[unit]} for {unit})", path)
    return doc


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    """A JSON number (bools are not numbers; the strict reader never yields NaN or inf, in-memory values may)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(v: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _get(doc: dict, key: str, typ, path, where: str = "checkpoint metadata"):
    if key not in doc:
        raise RaveError(f"{where} lacks '{key}'", path)
    v = doc[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise RaveError(f"{where} '{key}' has the wrong type ({_kind(v)})", path)
    return v


def _int_list(doc: dict, key: str, path) -> list[int]:
    v = _get(doc, key, list, path)
    if not v or not all(_is_int(x) for x in v):
        raise RaveError(f"checkpoint metadata '{key}' must be a non-empty list of integers", path)
    return v


def _float_tensor(t: dict, name: str, shape: tuple, path) -> Tensor:
    """Tensor ``name`` of a floating dtype, this shape (-1: any size) and finite values."""
    x = t[name]
    if not x.is_floating_point():
        raise RaveError(f"checkpoint tensor '{name}' has dtype {x.dtype}, expected float32", path)
    if x.ndim != len(shape) or any(s != -1 and d != s for d, s in zip(x.shape, shape)):
        want = ", ".join("C" if s == -1 else str(s) for s in shape)
        raise RaveError(f"checkpoint tensor '{name}' has shape {tuple(x.shape)}, expected ({want})", path)
    if not torch.isfinite(x).all():
        raise RaveError(f"checkpoint tensor '{name}' has NaN/inf values", path)
    return x.float()


# -- the optional build record ``meta`` ------------------------------------------------------------------
def _number_at_least(lo: float, hi: float = 1e15):
    return lambda v: _is_num(v) and lo <= v <= hi


def _is_background(v: object) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(_is_num(x) and 0 <= x <= 1 for x in v)


def _is_stages(v: object) -> bool:
    return isinstance(v, dict) and all(
        isinstance(s, dict) and _is_num(s.get("seconds")) and 0 <= s["seconds"] <= 1e15
        and _is_int(s.get("renders")) and 0 <= s["renders"] <= 10**15 for s in v.values())


def _is_rd_views(v: object) -> bool:
    return isinstance(v, dict) and all(
        (_is_int(v[k]) and 0 <= v[k] <= 10**9) if k in ("count", "width", "height") else
        isinstance(v[k], str) if k == "split" else True for k in v)


def _is_scalar_map(v: object) -> bool:
    return isinstance(v, dict) and all(isinstance(x, (str, int, float, bool, type(None))) for x in v.values())


#: Checks of the ``meta`` fields readers use (``rave info``, ``rave eval``); other fields are kept as they are.
META_CHECKS = {
    "ranking": lambda v: isinstance(v, str),
    "finetune": lambda v: isinstance(v, bool),
    "config": lambda v: isinstance(v, dict) and ("background" not in v or _is_background(v["background"])),
    "sources": _is_scalar_map,
    "rd_views": _is_rd_views,
    "stages": _is_stages,
    "total_seconds": _number_at_least(0),
    "total_renders": lambda v: _is_int(v) and 0 <= v <= 10**15,
    "checkpoint_seconds": _number_at_least(0),
    "input_gaussians": lambda v: _is_int(v) and v >= 0,
    "sh_degree": lambda v: _is_int(v) and 0 <= v <= 3,
    "scene_scale": _number_at_least(0),
    "train_steps": lambda v: v is None or (_is_int(v) and v >= 0),
    "targets": lambda v: v in ("photos", "self"),  # what the test views' images are: photos or full-model renders
    "rig": lambda v: isinstance(v, dict),
}


def clean_meta(meta: object) -> tuple[dict, tuple[str, ...]]:
    """(``meta`` without its malformed known fields, their names). A ``meta`` that is not a mapping is
    ``({}, ("meta",))``; None is ``({}, ())``. Never raises: the build record is informative only."""
    if meta is None:
        return {}, ()
    if not isinstance(meta, dict):
        return {}, ("meta",)
    out, bad = {}, []
    for k, v in meta.items():
        check = META_CHECKS.get(k)
        if check is None or check(v):
            out[k] = v
        else:
            bad.append(str(k))
    return out, tuple(bad)


def load_checkpoint(path: str | os.PathLike) -> RankedCheckpoint:
    """Read and validate a ``.ckpt``; any problem (pickle, version, missing tensors, lengths, types) -> RaveError.

    Returns a :class:`RaveCheckpoint`, or an :class:`~rave_viewer.rave.anchor_checkpoint.AnchorCheckpoint` for
    a file whose ``unit_type`` is "anchors". A malformed known field of the optional ``meta`` record is dropped
    and named in ``unreadable_meta``.
    """
    from safetensors.torch import load

    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise RaveError("is a directory, not a checkpoint file", path) from None
    except OSError as e:
        raise RaveError(f"cannot read: {e.strerror or e}", path) from None
    header = _sniff(data, path)
    doc = _doc(header, path)
    try:
        t = load(data)  # safetensors checks the layout: dtypes, shapes against offsets, overlaps, coverage
    except Exception as e:  # SafetensorError, or a dtype torch lacks
        raise RaveError(f"is a corrupt checkpoint ({' '.join(str(e).split())[:200]})", path) from None
    except BaseException as e:  # a Rust panic (pyo3 PanicException) is a BaseException
        if type(e).__name__ != "PanicException":
            raise
        raise RaveError(f"is a corrupt checkpoint ({' '.join(str(e).split())[:200]})", path) from None

    if doc.get("unit_type", "gaussians") == "anchors":
        from .anchor_checkpoint import AnchorCheckpoint, load_anchor_units

        cls, required, parse = AnchorCheckpoint, ("anchors.anchor",), load_anchor_units
    else:
        cls, required, parse = RaveCheckpoint, (*(f"gaussians.{f}" for f in FIELDS), "bounds"), _gaussian_units
    missing = [k for k in [*required, *COMMON_TENSORS] if k not in t]
    if missing:
        raise RaveError(f"checkpoint lacks the tensor(s) {', '.join(missing)}", path)
    units, n = parse(t, doc, path)
    return cls(**units, **_common_fields(t, doc, n, cls.unit_label, path))


COMMON_TENSORS = ("order", "chunk_rates", "test.viewmats", "test.Ks")


def _gaussian_units(t: dict[str, Tensor], doc: dict, path) -> tuple[dict, int]:
    """The Gaussian checkpoint's own fields (``gaussians``, ``bounds``, ``quant``) and its unit count."""
    from ..codec import QuantConfig

    for f in FIELDS:
        if not t[f"gaussians.{f}"].is_floating_point():
            raise RaveError(f"checkpoint tensor 'gaussians.{f}' has dtype {t[f'gaussians.{f}'].dtype}, expected "
                            "float32", path)
    g = Gaussians(**{f: t[f"gaussians.{f}"].float() for f in FIELDS})
    g.validate(str(path))
    n = len(g)
    if _get(doc, "n", int, path) != n:
        raise RaveError(f"checkpoint says {doc['n']} Gaussians but holds {n}", path)
    if "sh_degree" in doc and _get(doc, "sh_degree", int, path) != g.sh_degree:
        raise RaveError(f"checkpoint says SH degree {doc['sh_degree']} but its Gaussians have degree "
                        f"{g.sh_degree}", path)

    bounds = _float_tensor(t, "bounds", (2, 3), path)
    if (bounds[1] < bounds[0]).any():
        raise RaveError("checkpoint 'bounds' must be (min, max) with min <= max on every axis", path)
    quant_d = _get(doc, "quant", dict, path)
    try:
        quant = QuantConfig.from_dict(quant_d)
    except RaveError as e:
        raise RaveError(f"checkpoint quantization settings: {e}", path) from None
    return {"gaussians": g, "bounds": bounds, "quant": quant}, n


def _common_fields(t: dict[str, Tensor], doc: dict, n: int, label: str, path) -> dict:
    """The fields every checkpoint has (order, levels, chunk table, codec, RD table, test views, meta), checked
    against its ``n`` units (called ``label`` in messages)."""
    from ..codec import CODECS
    from ..codec.container import MAX_CHUNK_SIZE

    order = t["order"]
    if order.dtype != torch.int64 or tuple(order.shape) != (n,):
        raise RaveError(f"checkpoint 'order' has shape {tuple(order.shape)} {order.dtype}, expected ({n},) int64",
                        path)
    if not torch.equal(torch.sort(order).values, torch.arange(n)):
        raise RaveError(f"checkpoint 'order' is not a permutation of the {label}", path)

    sizes = _int_list(doc, "level_sizes", path)
    rates = _int_list(doc, "level_rates", path)
    if len(rates) != len(sizes):
        raise RaveError(f"checkpoint has {len(sizes)} level sizes but {len(rates)} level rates", path)
    if sizes[0] < 1 or sizes[-1] != n or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise RaveError(f"checkpoint level sizes must increase strictly from 1 up to {n}", path)
    if any(b <= a for a, b in zip(rates, rates[1:])) or rates[0] <= 0:
        raise RaveError("checkpoint level rates must be positive and increasing", path)

    chunk_size = _get(doc, "chunk_size", int, path)
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise RaveError(f"checkpoint chunk size must be 1..{MAX_CHUNK_SIZE}, got {chunk_size}", path)
    cr = t["chunk_rates"]
    m = -(-n // chunk_size)
    if cr.dtype != torch.int64 or tuple(cr.shape) != (m + 1,):
        raise RaveError(f"checkpoint 'chunk_rates' has shape {tuple(cr.shape)} {cr.dtype}, expected ({m + 1},) "
                        f"int64 for {n} {label} in chunks of {chunk_size}", path)
    chunk_rates = cr.tolist()
    if chunk_rates[0] <= 0 or any(b <= a for a, b in zip(chunk_rates, chunk_rates[1:])):
        raise RaveError("checkpoint 'chunk_rates' must be positive and increase strictly", path)
    if chunk_rates[-1] != rates[-1]:
        raise RaveError(f"checkpoint rate of all {label} differs between the level table ({rates[-1]}) and the "
                        f"chunk table ({chunk_rates[-1]})", path)
    for i, (k, r) in enumerate(zip(sizes, rates)):
        if k % chunk_size == 0 and r != chunk_rates[k // chunk_size]:
            raise RaveError(f"checkpoint rate of level {i + 1} ({r}) differs from its chunk table entry "
                            f"({chunk_rates[k // chunk_size]})", path)

    codec = _get(doc, "codec", str, path)
    if codec not in CODECS:
        raise RaveError(f"checkpoint uses the unknown codec '{codec[:40]}'", path)
    interpolate = doc.get("interpolate", True)
    if not isinstance(interpolate, bool):
        raise RaveError(f"checkpoint metadata 'interpolate' must be true or false, got {_kind(interpolate)}", path)

    rd_d = _get(doc, "rd", dict, path)
    rd = {}
    for k in RD_KEYS:
        v = rd_d.get(k)
        ints = k in ("count", "bytes")
        if not isinstance(v, list) or not all(_is_int(x) if ints else _is_num(x) for x in v):
            raise RaveError(f"checkpoint RD table lacks {'an integer' if ints else 'a numeric'} '{k}' list", path)
        rd[k] = [int(x) for x in v] if ints else [float(x) for x in v]
    if len({len(v) for v in rd.values()}) != 1:
        raise RaveError("checkpoint RD table lists have different lengths "
                        f"({', '.join(f'{k}: {len(v)}' for k, v in rd.items())})", path)
    counts, nbytes = rd["count"], rd["bytes"]
    if any(b <= a for a, b in zip(counts, counts[1:])) or (counts and not 1 <= counts[0] <= counts[-1] <= n):
        raise RaveError(f"checkpoint RD table counts must increase within 1..{n}", path)
    if any(b < a for a, b in zip(nbytes, nbytes[1:])) or (nbytes and not 0 < nbytes[0] <= nbytes[-1]
                                                           <= 2 * rates[-1]):
        raise RaveError(f"checkpoint RD table bytes must increase with the count within 1..{2 * rates[-1]}", path)
    if not all(abs(x) <= MAX_DB for x in rd["psnr"]) or not all(abs(x) <= 1.001 for x in rd["ssim"]):
        raise RaveError(f"checkpoint RD table has PSNR outside +-{MAX_DB:g} dB or SSIM outside [-1, 1]", path)

    test = _get(doc, "test", dict, path)
    vm = _float_tensor(t, "test.viewmats", (-1, 4, 4), path)
    c = vm.shape[0]
    Ks = _float_tensor(t, "test.Ks", (c, 3, 3), path)
    if c < 1:
        raise RaveError("checkpoint has no test views", path)
    w, h = test.get("width"), test.get("height")
    if not (_is_int(w) and _is_int(h) and 1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
        raise RaveError(f"checkpoint test camera size is missing or invalid (width and height must be integers "
                        f"1..{MAX_IMAGE_SIDE})", path)
    names = test.get("names") or []
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise RaveError("checkpoint test view names must be a list of strings", path)
    if names and len(names) != c:
        raise RaveError(f"checkpoint has {c} test cameras but {len(names)} names", path)
    images = None
    if "test.images" in t:
        im = t["test.images"]
        if im.dtype != torch.uint8 or tuple(im.shape) != (c, h, w, 3):
            raise RaveError(f"checkpoint 'test.images' has shape {tuple(im.shape)} {im.dtype}, expected "
                            f"({c}, {h}, {w}, 3) uint8", path)
        images = im.float() / 255.0
    cams = Cameras(vm, Ks, w, h, images, list(names))
    meta, unreadable = clean_meta(doc.get("meta"))
    meta = {**meta, "format_version": doc["format_version"]}
    return dict(order=order, level_sizes=sizes, level_rates=rates, codec=codec, chunk_size=chunk_size, rd=rd,
                test_cameras=cams, meta=meta, chunk_rates=chunk_rates, interpolate=interpolate,
                unreadable_meta=unreadable)


# -- encode a prefix ------------------------------------------------------------------------------------
def checkpoint_encoder(ckpt_path: str | os.PathLike | RankedCheckpoint, *, rate: float | str | None = None,
                       count: int | None = None, psnr: float | None = None, nearest: bool = False,
                       progress: bool | None = None):
    """(progressive encoder over the ranked units, k) for the operating point chosen by at most one of
    ``rate`` (bytes, or "2.5MB" / "800KB" / "2.5MiB"), ``count`` or ``psnr`` (dB); none given -> k = N.

    A rate is a cap: the largest prefix whose exact .rave size is <= the rate (verified with the encoder's own
    sizes), unless ``nearest`` or a leading ``~`` ("~2.5MB") asks for the nearest point (Eq. 3).
    The codec settings (quantization, codec, chunk size) are the checkpoint's own. ``progress``: show (True)
    or hide (False) the encoder's compression bar from now on; None keeps the encoder's setting."""
    ckpt = ckpt_path if isinstance(ckpt_path, RankedCheckpoint) else load_checkpoint(ckpt_path)
    if progress is not None:
        ckpt.encoder().progress = bool(progress)
    if sum(x is not None for x in (rate, count, psnr)) > 1:
        raise RaveError("give at most one target: rate, count or psnr")
    if nearest and rate is None:
        raise RaveError("nearest applies to a rate target only")
    if rate is None and count is None and psnr is None:
        return ckpt.encoder(), len(ckpt)
    if rate is None:
        return ckpt.encoder(), ckpt.select(count=count, psnr=psnr)
    target, tilde = selection.parse_rate_target(rate)
    if nearest or tilde:
        return ckpt.encoder(), ckpt.select(rate=target)
    enc = ckpt.encoder()
    k = ckpt.select(rate=target, cap=True)
    size = enc.size_of_prefix(k)  # the bytes the write will produce (its full chunks are needed anyway)
    if size > target:  # the stored chunk table disagrees with this encoder (an edited file): exact sizes, again
        ckpt.chunk_rates = chunk_rate_table(enc, len(ckpt), ckpt.chunk_size)
        k = ckpt.select(rate=target, cap=True)
        if enc.size_of_prefix(k) > target:
            raise RaveError(f"its stored sizes disagree with its encoding: no prefix found that fits in "
                            f"{target:,} bytes", None if isinstance(ckpt_path, RankedCheckpoint) else ckpt_path)
    return enc, k


def encode_checkpoint(ckpt_path: str | os.PathLike | RankedCheckpoint, out: str | os.PathLike, *,
                      rate: float | str | None = None, count: int | None = None,
                      psnr: float | None = None, nearest: bool = False, progress: bool | None = None) -> dict:
    """Write the operating point of a ``.ckpt`` chosen by ``rate`` / ``count`` / ``psnr`` as a ``.rave`` file.

    A rate is a cap (the file is never larger) unless ``nearest`` or a leading ``~`` asks for the nearest
    point (:func:`checkpoint_encoder`). Returns {"count", "bytes", "level", "target_bytes" (rate target or
    None), "cap" (True when the rate was a cap)}.
    """
    ckpt = ckpt_path if isinstance(ckpt_path, RankedCheckpoint) else load_checkpoint(ckpt_path)
    enc, k = checkpoint_encoder(ckpt, rate=rate, count=count, psnr=psnr, nearest=nearest, progress=progress)
    target, tilde = selection.parse_rate_target(rate) if rate is not None else (None, False)
    is_cap = target is not None and not (nearest or tilde)
    nbytes = enc.write(out, k)
    if is_cap and nbytes > target:  # the promise of a cap; checkpoint_encoder verified the size already
        raise AssertionError(f"wrote {nbytes} bytes for a cap of {target}")
    return {"count": int(k), "bytes": int(nbytes), "level": ckpt.level_of(k), "target_bytes": target,
            "cap": is_cap}
