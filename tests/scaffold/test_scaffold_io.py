"""The .scaffold file: exact round trips, deterministic bytes, and one clear line for every bad file."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from rave_viewer.errors import RaveError
from rave_viewer.scaffold import io
from rave_viewer.scaffold.model import ANCHOR_FIELDS


def _one_line_error(path, match: str) -> str:
    with pytest.raises(RaveError, match=match) as e:
        io.load(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    return msg


def _rewrite(src, dst, *, drop=(), replace=None, meta=None):
    """A copy of safetensors file ``src`` at ``dst`` with tensors dropped/replaced and metadata entries set."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k not in drop}
        md = dict(f.metadata())
    tensors.update(replace or {})
    md.update(meta or {})
    save_file(tensors, str(dst), metadata=md)
    return dst


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return io.save(trained.model, tmp_path_factory.mktemp("io") / "scene.scaffold", extra={"train": {"steps": 300}})


def test_round_trip_is_exact(trained, saved, scaffold_dataset):
    back = io.load(saved)
    assert back.spec == trained.model.spec
    for f in ANCHOR_FIELDS:
        a, b = trained.model.params[f], back.params[f]
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
        assert a.numpy().tobytes() == b.numpy().tobytes()
    ref = trained.model.mlp_tensors()
    got = back.mlp_tensors()
    assert ref.keys() == got.keys() and all(ref[k].numpy().tobytes() == got[k].numpy().tobytes() for k in ref)
    assert io.to_bytes(back, {"train": {"steps": 300}}) == saved.read_bytes()  # deterministic, byte for byte
    with torch.no_grad():
        cams = scaffold_dataset.test
        assert torch.equal(trained.model.render(cams, backend="cpu"), back.render(cams, backend="cpu"))
    assert io.metadata(saved)["train"] == {"steps": 300}


def test_the_file_is_plain_safetensors(saved):
    from safetensors import safe_open

    with safe_open(str(saved), "pt") as f:
        assert f.metadata()["format"] == io.FORMAT
        assert {"anchor", "offset", "anchor_feat", "scaling", "mlp_opacity.0.weight"} <= set(f.keys())


def test_missing_mlp_weights(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "no_mlp.scaffold", drop=("mlp_color.2.weight", "mlp_color.2.bias"))
    msg = _one_line_error(bad, "lacks MLP weights")
    assert "mlp_color.2.weight" in msg


def test_missing_anchor_tensor(saved, tmp_path):
    _one_line_error(_rewrite(saved, tmp_path / "a.scaffold", drop=("offset",)), "lacks the anchor tensors offset")


def test_wrong_feature_size(saved, trained, tmp_path):
    n = len(trained.model)
    bad = _rewrite(saved, tmp_path / "feat16.scaffold", replace={"anchor_feat": torch.zeros(n, 16)})
    _one_line_error(bad, "16 values per anchor.*feat_dim 32")
    spec = dict(trained.model.spec.to_dict(), feat_dim=16)
    bad = _rewrite(saved, tmp_path / "spec16.scaffold", replace={"anchor_feat": torch.zeros(n, 16)},
                   meta={"spec": json.dumps(spec)})
    _one_line_error(bad, "MLP 'mlp_opacity' takes 35 inputs, but feat_dim 16 needs 19")


def test_bad_values_and_shapes(saved, trained, tmp_path):
    n = len(trained.model)
    nan = torch.zeros(n, 6)
    nan[3, 2] = float("nan")
    _one_line_error(_rewrite(saved, tmp_path / "nan.scaffold", replace={"scaling": nan}), "'scaling' holds NaN")
    _one_line_error(_rewrite(saved, tmp_path / "f64.scaffold", replace={"anchor": torch.zeros(n, 3, dtype=torch.float64)}),
                    "'anchor' is float64, expected float32")
    _one_line_error(_rewrite(saved, tmp_path / "k.scaffold", replace={"offset": torch.zeros(n, 9, 3)}),
                    r"'offset' has shape \[%d, 9, 3\], expected \[%d, 10, 3\]" % (n, n))
    _one_line_error(_rewrite(saved, tmp_path / "v.scaffold", meta={"format_version": "99"}), "version 99")
    _one_line_error(_rewrite(saved, tmp_path / "s.scaffold", meta={"spec": "{}"}), "spec lacks feat_dim")


def test_pickles_are_refused_without_being_loaded(tmp_path, trained):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.scaffold"
    p.write_bytes(pickle.dumps(Evil()))
    _one_line_error(p, "is a Python pickle.*refused")
    assert not marker.exists()
    z = tmp_path / "torchsave.scaffold"
    torch.save(dict(trained.model.params), z)
    _one_line_error(z, "zip archive \\(torch.save\\?\\).*refused")


def test_other_bad_files(saved, tmp_path):
    _one_line_error(tmp_path / "nope.scaffold", "file not found")
    _one_line_error(tmp_path, "is a folder")
    cut = tmp_path / "cut.scaffold"
    cut.write_bytes(saved.read_bytes()[:5000])
    _one_line_error(cut, "is truncated")
    empty = tmp_path / "empty.scaffold"
    empty.write_bytes(b"")
    _one_line_error(empty, "only 0 bytes")
    txt = tmp_path / "ply.scaffold"
    txt.write_bytes(b"ply\nformat binary_little_endian 1.0\n" * 4)
    _one_line_error(txt, "not a .scaffold file")
    from safetensors.torch import save_file

    other = tmp_path / "other.scaffold"
    save_file({"x": torch.zeros(3)}, str(other))
    _one_line_error(other, "safetensors file but not a Scaffold-GS model")
    # a damaged tensor table behind a valid header
    data = bytearray(saved.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    hdr["anchor"]["data_offsets"][1] += 4
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    dmg = tmp_path / "damaged.scaffold"
    dmg.write_bytes(struct.pack("<Q", len(h)) + h + bytes(data[8 + n:]))
    _one_line_error(dmg, "damaged .scaffold file")
