"""Fuzz: hundreds of structured mutations of a real small .ckpt (its safetensors header and its RAVE metadata).

Every outcome must be one RaveError line naming the file, or a clean load that then encodes, decodes, selects and
is summarised by `rave info` without exception. Seeded; a few seconds in all.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rave_viewer.errors import RaveError
from rave_viewer.rave.checkpoint import (
    RaveCheckpoint,
    chunk_rate_table,
    encode_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

N, CHUNK = 150, 16
RAW = "@@RAW@@"  # a placeholder string replaced by a raw JSON token json.dumps would not write


def _make_ckpt() -> RaveCheckpoint:
    """A real checkpoint: exact sizes from the codec, an RD table, two test views with images, a build record."""
    from rave_viewer.codec import ProgressiveEncoder, QuantConfig, scene_bounds
    from rave_viewer.scene.cameras import Cameras, intrinsics, look_at
    from rave_viewer.scene.gaussians import Gaussians

    g = Gaussians.random(N, sh_degree=1, seed=4)
    bounds = scene_bounds(g)
    q = QuantConfig().fit(g)
    enc = ProgressiveEncoder(g, q, chunk_size=CHUNK, bounds=bounds, progress=False)
    sizes = [15, 36, 75, N]
    counts = list(range(15, N + 1, 15))
    rd = {"count": counts, "bytes": [enc.size_of_prefix(k) for k in counts],
          "psnr": [20 + 5 * k / N for k in counts], "ssim": [0.5 + 0.4 * k / N for k in counts]}
    vm = torch.stack([look_at(torch.tensor([3.0, 0, 1]), torch.zeros(3)),
                      look_at(torch.tensor([0, 3.0, 1]), torch.zeros(3))])
    cams = Cameras(vm, intrinsics(12, 8, 1.0)[None].repeat(2, 1, 1), 12, 8,
                   torch.rand(2, 8, 12, 3, generator=torch.Generator().manual_seed(0)), ["a.png", "b.png"])
    meta = {"ranking": "context", "finetune": True, "config": {"steps": 10, "num_levels": 4, "background": [0, 0, 0]},
            "rd_views": {"split": "test", "count": 2, "width": 12, "height": 8},
            "stages": {"levels": {"seconds": 1.5, "renders": 10}}, "total_seconds": 1.5, "sources": {"ply": "a.ply"}}
    ck = RaveCheckpoint(g, torch.randperm(N, generator=torch.Generator().manual_seed(1)), sizes,
                        [enc.size_of_prefix(s) for s in sizes], q, bounds, "lzma", CHUNK, rd, cams, meta)
    ck._encoder = enc
    ck.chunk_rates = chunk_rate_table(enc, N, CHUNK)
    return ck


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "scene.ckpt"
    save_checkpoint(_make_ckpt(), path)
    return path


def _split(data: bytes) -> tuple[dict, bytes]:
    hlen = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + hlen]), data[8 + hlen:]


def _outcome(path, tmp_path) -> str:
    """"error" (after checking the message) or "ok" (after using the checkpoint the ways the commands do)."""
    from rave_viewer.codec import decode
    from rave_viewer.commands.info import format_summary, summary

    try:
        ck = load_checkpoint(path)
    except RaveError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(f"{path}: "), msg
        return "error"
    out = tmp_path / "fuzz.rave"
    k = ck.level_sizes[0]
    assert encode_checkpoint(ck, out, count=k)["count"] == k
    assert len(decode(out).gaussians) == k
    r0, r1 = ck.rate_range()
    for target in ({"rate": (r0 + r1) // 2}, {"psnr": 22.0}):
        try:
            assert 0 <= ck.select(**target) <= len(ck)
        except RaveError:  # a target outside the (mutated) table's range
            pass
    s = summary(ck)
    assert format_summary(str(path), s) and json.dumps(s)
    return "ok"


# -- the RAVE metadata ----------------------------------------------------------------------------------------
_RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-" + "1" * 4400, "[" * 5000 + "]" * 5000,
               '{"a": ' * 80 + "1" + "}" * 80, '"\\ud800"', "1" + "0" * 39, "1" + "0" * 41]
_VALUES = [None, True, False, 0, -1, 1, 7, 2**31, 2**63, 10**30, -(10**30), 0.5, 14.5, -0.0, 1e308, "", "14",
           "lzma", [], [1, 2], ["a"], [[1]], {}, {"a": 1}, {"seconds": 1.0, "renders": 2}, RAW]


def _paths(doc) -> list[tuple]:
    """Every path (tuple of keys/indices) into ``doc``, long lists sampled at both ends."""
    out, stack = [], [((), doc)]
    while stack:
        path, v = stack.pop()
        out.append(path)
        if isinstance(v, dict):
            stack.extend((path + (k,), x) for k, x in v.items())
        elif isinstance(v, list):
            idx = range(len(v)) if len(v) <= 6 else [0, 1, len(v) // 2, len(v) - 2, len(v) - 1]
            stack.extend((path + (i,), v[i]) for i in idx)
    return out


def _mutate_doc(doc: dict, rng: random.Random) -> tuple[dict, list[str]]:
    """One to three structured changes: a value replaced (by another type, a count beyond the payload, a
    raw NaN / huge integer / deep nesting), a key dropped or added, a list reordered, cut or grown."""
    doc = copy.deepcopy(doc)
    raws = []
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key, cur = path[-1], parent[path[-1]]
        op = rng.random()
        if op < 0.45:
            new = copy.deepcopy(rng.choice(_VALUES))
        elif op < 0.65 and isinstance(cur, (int, float)) and not isinstance(cur, bool):
            new = rng.choice([cur + 1, cur - 1, cur * 2, -cur, cur * 10**6, float(cur), str(cur), cur // 2])
        elif op < 0.8 and isinstance(cur, list):
            new = rng.choice([cur[::-1], cur[:-1], cur + cur[-1:], cur[1:], cur * 2, []])
        elif op < 0.9 and isinstance(parent, dict):
            del parent[key]
            continue
        else:
            if isinstance(parent, dict):
                parent[rng.choice(["extra", "format_version", "interpolate"])] = rng.choice(_VALUES)
            continue
        if new == RAW:
            raws.append(rng.choice(_RAW_TOKENS))
        parent[key] = new
    return doc, raws


@pytest.mark.timeout(300)  # a hang guard, not a speed target (the cases run in ~2 s on one core)
def test_fuzz_rave_metadata_of_a_real_checkpoint(real_ckpt, tmp_path):
    rng = random.Random(2024)
    data = real_ckpt.read_bytes()
    header, _ = _split(data)
    md = header["__metadata__"]
    doc = json.loads(md["rave"])
    tensors = st_load(data)
    assert _outcome(real_ckpt, tmp_path) == "ok"
    seen = {"ok": 0, "error": 0}
    for i in range(300):
        new, raws = _mutate_doc(doc, rng)
        text = json.dumps(new)
        for tok in raws:
            text = text.replace(json.dumps(RAW), tok, 1)
        p = tmp_path / f"m{i % 4}.ckpt"
        p.write_bytes(st_save(tensors, metadata={**md, "rave": text}))
        seen[_outcome(p, tmp_path)] += 1
    assert seen["error"] >= 100 and seen["ok"] >= 20, seen


# -- the safetensors header -----------------------------------------------------------------------------------
_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "Q99", "f32", 5, None]


def _mutate_header(header: dict, body: bytes, rng: random.Random) -> tuple[bytes, bytes, int | None]:
    """(header bytes, body, header-length override): tensor entries with another dtype, shape or offsets,
    dropped or renamed entries, a wrong header length, flipped header bytes, a cut or padded body."""
    h = copy.deepcopy(header)
    names = [k for k in h if k != "__metadata__"]
    hlen = None
    op = rng.random()
    name = rng.choice(names)
    entry = h[name]
    if op < 0.2:
        entry["dtype"] = rng.choice(_DTYPES)
    elif op < 0.4:
        shape = list(entry["shape"])
        choice = rng.randrange(7)
        if choice == 0 and shape:
            shape[rng.randrange(len(shape))] += rng.choice([-1, 1])
        elif choice == 1:
            shape.append(rng.choice([1, 2]))
        elif choice == 2 and shape:
            shape.pop()
        elif choice == 3:
            shape = [rng.choice([0, -1, 2**40, 2**64, 1.5, "3"])] + shape[1:]
        elif choice == 4 and len(shape) >= 2:
            shape[0], shape[1] = shape[1], shape[0]
        elif choice == 5:
            shape = [int(torch.tensor(shape).prod())] if shape else [1]  # same bytes, flattened
        else:
            shape = [s * 2 for s in shape]
        entry["shape"] = shape
    elif op < 0.65:
        a, b = entry["data_offsets"]
        choice = rng.randrange(8)
        entry["data_offsets"] = [
            [a + 1, b + 1], [a - 8, b - 8], [b, a], [a, b + len(body)], [0, b - a], [a, 2**64],
            [float(a), b], [a, b, b],
        ][choice]
        if choice == 4:  # overlaps the first tensor: shift the real first one out of the way or not at all
            pass
    elif op < 0.72:
        del h[name]
    elif op < 0.78:
        h[name + "x"] = h.pop(name)
    elif op < 0.86:
        hlen = len(json.dumps(h).encode()) + rng.choice([-9, -1, 1, 7, 10**6, 2**63])
    elif op < 0.93:
        raw = bytearray(json.dumps(h).encode())
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw), body, hlen
    elif op < 0.97:
        body = body[: rng.randrange(len(body))] if rng.random() < 0.7 else body + bytes(rng.randint(1, 9))
    else:  # trailing spaces in the header are legal safetensors padding: a clean load
        return json.dumps(h).encode() + b" " * rng.randint(1, 8), body, hlen
    return json.dumps(h).encode(), body, hlen


@pytest.mark.timeout(300)  # a hang guard, not a speed target
def test_fuzz_safetensors_header_of_a_real_checkpoint(real_ckpt, tmp_path):
    rng = random.Random(77)
    header, body = _split(real_ckpt.read_bytes())
    seen = {"ok": 0, "error": 0}
    for i in range(300):
        raw, b, hlen = _mutate_header(header, body, rng)
        p = tmp_path / f"h{i % 4}.ckpt"
        p.write_bytes((len(raw) if hlen is None else hlen).to_bytes(8, "little") + raw + b)
        seen[_outcome(p, tmp_path)] += 1
    assert seen["error"] >= 200 and seen["ok"] >= 3, seen
