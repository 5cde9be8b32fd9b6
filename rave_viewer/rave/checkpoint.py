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

Loading checks the format, version, presence and shapes of every tensor and the consistency of the lengths,
and refuses pickles (``torch.save`` zips and raw pickles) without unpickling them; every problem is one
:class:`RaveError` line naming the file.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import RaveError
from ..fileio import atomic_write_bytes
from ..scene.cameras import Cameras
from ..scene.gaussians import FIELDS, Gaussians
from . import selection

FORMAT = "rave-ckpt"
FORMAT_VERSION = 1
RD_KEYS = ("count", "bytes", "psnr", "ssim")


@dataclass(eq=False)
class RaveCheckpoint:
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
    _encoder: object = field(default=None, repr=False, compare=False)
    _decoded: Gaussians | None = field(default=None, repr=False, compare=False)
    _psnr_max: tuple | None = field(default=None, repr=False, compare=False)

    # -- sizes ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.gaussians)

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    def encoder(self):
        """The cached :class:`~rave_viewer.codec.ProgressiveEncoder` over the ranked Gaussians."""
        if self._encoder is None:
            from ..codec import ProgressiveEncoder

            self._encoder = ProgressiveEncoder(self.gaussians, self.quant, codec=self.codec,
                                               chunk_size=self.chunk_size, bounds=self.bounds)
        return self._encoder

    def _chunk_table(self) -> list[int]:
        if self.chunk_rates is None:
            self.chunk_rates = chunk_rate_table(self.encoder(), len(self), self.chunk_size)
        return self.chunk_rates

    def prefix_bytes(self, k: int) -> int:
        """Exact .rave size of the first ``k`` Gaussians.

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

    def decoded_gaussians(self) -> Gaussians:
        """What a receiver decodes (quantized with the fixed grid, dequantized), in ranked order; cached."""
        if self._decoded is None:
            from ..codec import dequantize, quantize

            q = self._encoder.quantized if self._encoder is not None else quantize(self.gaussians, self.quant,
                                                                                   self.bounds)
            self._decoded = dequantize(q)
        return self._decoded

    # -- selection ------------------------------------------------------------------------------------
    def select(self, *, rate: float | str | None = None, count: int | None = None,
               psnr: float | None = None, exact: bool = True) -> int:
        """Prefix length k for exactly one target: ``rate`` (bytes or "2.5MB"), ``count`` or ``psnr`` (dB).

        Rate: Eq. 3 between the levels (``exact=False``) or between exact chunk-boundary sizes inside the
        level interval (default; size within one chunk of the target). Out-of-range targets raise RaveError.
        """
        given = [x is not None for x in (rate, count, psnr)]
        if sum(given) != 1:
            raise RaveError("give exactly one target: rate, count or psnr")
        if rate is not None:
            r = selection.parse_rate(rate) if isinstance(rate, str) else float(rate)
            if exact and self.interpolate:
                return selection.select_by_rate_exact(self.level_sizes, self.level_rates, self.chunk_size,
                                                      self._chunk_table(), r)
            return selection.select_by_rate(self.level_sizes, self.level_rates, r, interpolate=self.interpolate)
        if count is not None:
            return selection.select_by_count(self.level_sizes, count, interpolate=self.interpolate)
        if self._psnr_max is None or self._psnr_max[0] is not self.rd["psnr"]:
            self._psnr_max = (self.rd["psnr"], selection.psnr_running_max(self.rd["psnr"]))
        k = selection.select_by_psnr(self.rd, psnr, running_max=self._psnr_max[1])
        if not self.interpolate:
            k = selection.select_by_count(self.level_sizes, max(k, self.level_sizes[0]), interpolate=False)
        return k

    def level_of(self, k: int) -> int:
        """1-based level l with |G_l| <= k < |G_{l+1}| (L when k == N, 0 when k < |G_1|)."""
        import bisect

        return bisect.bisect_right(self.level_sizes, int(k))

    def rate_range(self) -> tuple[int, int]:
        """(R(G_1), R(G_L)) in bytes: the valid range of target rates."""
        return int(self.level_rates[0]), int(self.level_rates[-1])


def chunk_rate_table(encoder, n: int, chunk_size: int) -> list[int]:
    """Exact sizes of the prefixes 0, c, 2c, …, N (compresses every chunk once)."""
    counts = list(range(0, n, chunk_size)) + [n]
    return [int(encoder.size_of_prefix(k)) for k in counts]


# -- save -----------------------------------------------------------------------------------------------
def _uint8(images: Tensor) -> Tensor:
    return (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().contiguous()


def save_checkpoint(ckpt: RaveCheckpoint, path: str | os.PathLike) -> int:
    """Write ``ckpt`` to ``path`` (safetensors, atomic temp + rename); returns the bytes written."""
    from safetensors.torch import save

    g = ckpt.gaussians
    n = len(g)
    tensors = {f"gaussians.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in g.items()}
    tensors["order"] = ckpt.order.detach().to("cpu", torch.int64).contiguous()
    tensors["bounds"] = ckpt.bounds.detach().to("cpu", torch.float32).reshape(2, 3).contiguous()
    chunk_rates = ckpt.chunk_rates if ckpt.chunk_rates is not None else ckpt._chunk_table()
    tensors["chunk_rates"] = torch.tensor(chunk_rates, dtype=torch.int64)
    cams = ckpt.test_cameras
    tensors["test.viewmats"] = cams.viewmats.detach().to("cpu", torch.float32).contiguous()
    tensors["test.Ks"] = cams.Ks.detach().to("cpu", torch.float32).contiguous()
    if cams.images is not None:
        tensors["test.images"] = _uint8(cams.images)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n": n,
        "sh_degree": g.sh_degree,
        "level_sizes": [int(x) for x in ckpt.level_sizes],
        "level_rates": [int(x) for x in ckpt.level_rates],
        "quant": ckpt.quant.to_dict(),
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
        header = json.loads(data[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RaveError("is not a RAVE checkpoint (unreadable safetensors header)", path) from None
    if not isinstance(header, dict):
        raise RaveError("is not a RAVE checkpoint (unreadable safetensors header)", path)
    return header


def _doc(header: dict, path) -> dict:
    md = header.get("__metadata__") or {}
    if not isinstance(md, dict) or md.get("format") != FORMAT or "rave" not in md:
        raise RaveError("is a safetensors file but not a RAVE checkpoint (no 'rave' metadata)", path)
    try:
        doc = json.loads(md["rave"])
    except (TypeError, json.JSONDecodeError):
        raise RaveError("has unreadable RAVE metadata (not JSON)", path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RaveError("has unreadable RAVE metadata", path)
    v = doc.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise RaveError("has no checkpoint format version", path)
    if v > FORMAT_VERSION:
        raise RaveError(f"was written by a newer rave_viewer (checkpoint format {v}; this version reads "
                        f"{FORMAT_VERSION}): upgrade rave_viewer", path)
    if v != FORMAT_VERSION:
        raise RaveError(f"has unsupported checkpoint format version {v} (this version reads {FORMAT_VERSION})",
                        path)
    return doc


def _get(doc: dict, key: str, typ, path):
    if key not in doc:
        raise RaveError(f"checkpoint metadata lacks '{key}'", path)
    v = doc[key]
    ok = isinstance(v, typ) and not (isinstance(v, bool) and typ in (int, (int, float)))
    if not ok:
        raise RaveError(f"checkpoint metadata '{key}' has the wrong type ({type(v).__name__})", path)
    return v


def _int_list(doc: dict, key: str, path) -> list[int]:
    v = _get(doc, key, list, path)
    if not v or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise RaveError(f"checkpoint metadata '{key}' must be a non-empty list of integers", path)
    return v


def load_checkpoint(path: str | os.PathLike) -> RaveCheckpoint:
    """Read and validate a ``.ckpt``; any problem (pickle, version, missing tensors, lengths) -> RaveError."""
    from safetensors.torch import load

    from ..codec import QuantConfig

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
        t = load(data)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RaveError(f"is a corrupt checkpoint ({' '.join(str(e).split())[:200]})", path) from None

    def need(name: str) -> Tensor:
        if name not in t:
            raise RaveError(f"checkpoint lacks the tensor '{name}'", path)
        return t[name]

    missing = [k for k in [*(f"gaussians.{f}" for f in FIELDS), "order", "bounds", "chunk_rates",
                           "test.viewmats", "test.Ks"] if k not in t]
    if missing:
        raise RaveError(f"checkpoint lacks the tensor(s) {', '.join(missing)}", path)
    g = Gaussians(**{f: need(f"gaussians.{f}").float() for f in FIELDS})
    g.validate(str(path))
    n = len(g)
    if _get(doc, "n", int, path) != n:
        raise RaveError(f"checkpoint says {doc['n']} Gaussians but holds {n}", path)

    order = need("order")
    if order.dtype != torch.int64 or tuple(order.shape) != (n,):
        raise RaveError(f"checkpoint 'order' has shape {tuple(order.shape)} {order.dtype}, expected ({n},) int64",
                        path)
    if not torch.equal(torch.sort(order).values, torch.arange(n)):
        raise RaveError("checkpoint 'order' is not a permutation of the Gaussians", path)

    sizes = _int_list(doc, "level_sizes", path)
    rates = _int_list(doc, "level_rates", path)
    if len(rates) != len(sizes):
        raise RaveError(f"checkpoint has {len(sizes)} level sizes but {len(rates)} level rates", path)
    if sizes[0] < 1 or sizes[-1] != n or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise RaveError(f"checkpoint level sizes must increase strictly up to {n}, got {sizes}", path)
    if any(b <= a for a, b in zip(rates, rates[1:])) or rates[0] <= 0:
        raise RaveError("checkpoint level rates must be positive and increasing", path)

    bounds = need("bounds")
    if tuple(bounds.shape) != (2, 3) or not torch.isfinite(bounds).all():
        raise RaveError(f"checkpoint 'bounds' must be a finite [2, 3] tensor, got {tuple(bounds.shape)}", path)
    chunk_size = _get(doc, "chunk_size", int, path)
    if chunk_size < 1:
        raise RaveError(f"checkpoint chunk size must be >= 1, got {chunk_size}", path)
    cr = need("chunk_rates")
    m = -(-n // chunk_size)
    if cr.dtype != torch.int64 or tuple(cr.shape) != (m + 1,):
        raise RaveError(f"checkpoint 'chunk_rates' has shape {tuple(cr.shape)}, expected ({m + 1},) for {n} "
                        f"Gaussians in chunks of {chunk_size}", path)
    chunk_rates = cr.tolist()
    if any(b <= a for a, b in zip(chunk_rates, chunk_rates[1:])):
        raise RaveError("checkpoint 'chunk_rates' must increase strictly", path)
    if chunk_rates[-1] != rates[-1]:
        raise RaveError(f"checkpoint rate of all Gaussians differs between the level table ({rates[-1]}) and the "
                        f"chunk table ({chunk_rates[-1]})", path)

    quant_d = _get(doc, "quant", dict, path)
    try:
        quant = QuantConfig.from_dict(quant_d)
    except RaveError as e:
        raise RaveError(str(e), path) from None
    codec = _get(doc, "codec", str, path)
    from ..codec import CODECS

    if codec not in CODECS:
        raise RaveError(f"checkpoint uses the unknown codec '{codec}'", path)

    rd_d = _get(doc, "rd", dict, path)
    rd = {}
    for k in RD_KEYS:
        v = rd_d.get(k)
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise RaveError(f"checkpoint RD table lacks a numeric '{k}' list", path)
        rd[k] = [int(x) for x in v] if k in ("count", "bytes") else [float(x) for x in v]
    if len({len(v) for v in rd.values()}) != 1:
        raise RaveError("checkpoint RD table lists have different lengths "
                        f"({', '.join(f'{k}: {len(v)}' for k, v in rd.items())})", path)
    if any(b <= a for a, b in zip(rd["count"], rd["count"][1:])) or (rd["count"] and not
                                                                       1 <= rd["count"][0] <= rd["count"][-1] <= n):
        raise RaveError(f"checkpoint RD table counts must increase within 1..{n}", path)
    if not all(math.isfinite(x) for x in rd["psnr"] + rd["ssim"]):
        raise RaveError("checkpoint RD table has non-finite values", path)

    test = _get(doc, "test", dict, path)
    vm, Ks = need("test.viewmats"), need("test.Ks")
    c = vm.shape[0] if vm.ndim == 3 else -1
    if tuple(vm.shape) != (c, 4, 4) or tuple(Ks.shape) != (c, 3, 3):
        raise RaveError(f"checkpoint test cameras have shapes {tuple(vm.shape)} and {tuple(Ks.shape)}", path)
    w, h = test.get("width"), test.get("height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise RaveError("checkpoint test camera size is missing or invalid", path)
    names = test.get("names") or []
    if not isinstance(names, list) or (names and len(names) != c):
        raise RaveError(f"checkpoint has {c} test cameras but {len(names)} names", path)
    images = None
    if "test.images" in t:
        im = t["test.images"]
        if im.dtype != torch.uint8 or tuple(im.shape) != (c, h, w, 3):
            raise RaveError(f"checkpoint 'test.images' has shape {tuple(im.shape)} {im.dtype}, expected "
                            f"({c}, {h}, {w}, 3) uint8", path)
        images = im.float() / 255.0
    cams = Cameras(vm.float(), Ks.float(), w, h, images, [str(s) for s in names])
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise RaveError("checkpoint 'meta' must be a mapping", path)
    meta = {**meta, "format_version": doc["format_version"]}
    return RaveCheckpoint(
        gaussians=g, order=order, level_sizes=sizes, level_rates=rates, quant=quant, bounds=bounds.float(),
        codec=codec, chunk_size=chunk_size, rd=rd, test_cameras=cams, meta=meta, chunk_rates=chunk_rates,
        interpolate=bool(doc.get("interpolate", True)),
    )


# -- encode a prefix ------------------------------------------------------------------------------------
def checkpoint_encoder(ckpt_path: str | os.PathLike | RaveCheckpoint, *, rate: float | str | None = None,
                       count: int | None = None, psnr: float | None = None):
    """(ProgressiveEncoder over the ranked Gaussians, k) for the operating point chosen by at most one of
    ``rate`` (bytes, or "2.5MB" / "800KB" / "2.5MiB"), ``count`` or ``psnr`` (dB); none given -> k = N.
    The codec settings (quantization, codec, chunk size) are the checkpoint's own."""
    ckpt = ckpt_path if isinstance(ckpt_path, RaveCheckpoint) else load_checkpoint(ckpt_path)
    if rate is None and count is None and psnr is None:
        return ckpt.encoder(), len(ckpt)
    target = selection.parse_rate(rate) if rate is not None else None
    return ckpt.encoder(), ckpt.select(rate=target, count=count, psnr=psnr)


def encode_checkpoint(ckpt_path: str | os.PathLike | RaveCheckpoint, out: str | os.PathLike, *,
                      rate: float | str | None = None, count: int | None = None,
                      psnr: float | None = None) -> dict:
    """Write the operating point of a ``.ckpt`` chosen by ``rate`` / ``count`` / ``psnr`` as a ``.rave`` file.

    Returns {"count", "bytes", "level", "target_bytes" (rate target or None)}.
    """
    ckpt = ckpt_path if isinstance(ckpt_path, RaveCheckpoint) else load_checkpoint(ckpt_path)
    enc, k = checkpoint_encoder(ckpt, rate=rate, count=count, psnr=psnr)
    nbytes = enc.write(out, k)
    target = selection.parse_rate(rate) if rate is not None else None
    return {"count": int(k), "bytes": int(nbytes), "level": ckpt.level_of(k), "target_bytes": target}
