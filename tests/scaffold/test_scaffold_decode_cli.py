"""`rave decode` / `rave info` on anchor (Scaffold-GS) streams and checkpoints: the PLY is the documented
snapshot of the decoded anchors' neural Gaussians (read back by read_ply), --anchors writes the exact anchor
model, truncated streams decode their complete chunks, and mistakes are one `error:` line."""

from __future__ import annotations

import json

import pytest
import torch

from rave_viewer.cli import main
from rave_viewer.codec.anchors import ANCHOR_FIELDS, AnchorEncoder, AnchorQuant, decode_anchors
from rave_viewer.scaffold.model import snapshot_gaussians
from rave_viewer.rave.anchor_checkpoint import scaffold_model
from rave_viewer.scaffold import io
from rave_viewer.scaffold.model import ScaffoldMLPs, ScaffoldModel, ScaffoldSpec, decode
from rave_viewer.scene.ply import read_ply

N, F, K = 300, 8, 4


def _model(seed: int = 0) -> ScaffoldModel:
    g = torch.Generator().manual_seed(seed)
    spec = ScaffoldSpec(feat_dim=F, n_offsets=K, voxel_size=0.05)
    torch.manual_seed(seed)
    params = {"anchor": torch.randint(-20, 20, (N, 3), generator=g).float() * 0.05,
              "offset": torch.randn(N, K, 3, generator=g) * 0.2,
              "anchor_feat": torch.randn(N, F, generator=g),
              "scaling": torch.randn(N, 6, generator=g) * 0.2 - 3.0}
    return ScaffoldModel(spec, params, ScaffoldMLPs(spec))


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    m = _model()
    enc = AnchorEncoder(m.params, {"spec": m.spec.to_dict(), "mlps": m.mlp_tensors()}, AnchorQuant.fit(m.params),
                        chunk_size=64)
    path = tmp_path_factory.mktemp("adec") / "scene.rave"
    enc.write(path)
    return enc, path


def _decoded_model(path) -> ScaffoldModel:
    res = decode_anchors(path)
    return scaffold_model(res.anchors, res.spec, res.mlps, path)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def test_decode_writes_the_documented_snapshot(stream, tmp_path, capsys):
    _, path = stream
    out = tmp_path / "snap.ply"
    assert main(["decode", str(path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "neural Gaussians of 300 anchors" in err and "snapshot" in err
    g = read_ply(out)
    want, dist = snapshot_gaussians(_decoded_model(path))
    assert len(g) == len(want) > 0 and g.sh_degree == 0 and _same(g, want)
    m = _decoded_model(path)
    x = m.params["anchor"]
    assert dist == pytest.approx(float((x - x.median(0).values).norm(dim=1).median()))
    # --view-distance changes the viewpoint, hence the snapshot
    assert main(["decode", str(path), "-o", str(tmp_path / "far.ply"), "--view-distance", "25", "--quiet"]) == 0
    far = read_ply(tmp_path / "far.ply")
    assert _same(far, snapshot_gaussians(m, view_distance=25.0)[0]) and not _same(far, g)


def test_one_camera_snapshot_is_exact_for_that_camera(stream, tmp_path):
    _, path = stream
    out = tmp_path / "cam.ply"
    assert main(["decode", str(path), "-o", str(out), "--camera", "0.5", "-1", "4", "--quiet"]) == 0
    want = _decoded_model(path).to_gaussians(torch.tensor([0.5, -1.0, 4.0]))
    assert _same(read_ply(out), want)


def test_per_anchor_cameras_decode_each_anchor_as_seen_from_its_own_camera():
    m = _model(1)
    campos = m.params["anchor"] + torch.randn(N, 3) * 3
    both = decode(m.params, m.mlps, m.spec, campos)
    parts = [decode(m.params, m.mlps, m.spec, campos[i], torch.tensor([i])) for i in range(0, N, 37)]
    owner = torch.arange(N).repeat_interleave(K)[both.mask]
    for i, p in zip(range(0, N, 37), parts):
        rows = owner == i
        assert torch.allclose(both.gaussians.means[rows], p.gaussians.means)
        assert torch.allclose(both.gaussians.sh0[rows], p.gaussians.sh0, atol=1e-6)
        assert torch.allclose(both.gaussians.opacities[rows], p.gaussians.opacities, atol=1e-5)


def test_anchors_output_is_the_exact_decoded_model(stream, tmp_path):
    enc, path = stream
    out = tmp_path / "dec.scaffold"
    assert main(["decode", str(path), "--anchors", str(out), "--quiet"]) == 0
    back = io.load(out)
    want = enc.quantized_prefix()
    for f in ANCHOR_FIELDS:
        assert torch.equal(back.params[f], want[f])
    assert back.spec == ScaffoldSpec(feat_dim=F, n_offsets=K, voxel_size=0.05)
    assert all(torch.equal(back.mlp_tensors()[k], v) for k, v in _model().mlp_tensors().items())


def test_checkpoint_input_and_info(tmp_path, capsys):
    from tests.rave.test_anchor_checkpoint import make_anchor_ckpt

    from rave_viewer.rave.checkpoint import save_checkpoint

    ck = make_anchor_ckpt()
    p = tmp_path / "a.ckpt"
    save_checkpoint(ck, p)
    assert main(["decode", str(p), "-o", str(tmp_path / "c.ply"), "--anchors", str(tmp_path / "c.scaffold"),
                 "--quiet"]) == 0
    m = io.load(tmp_path / "c.scaffold")
    assert all(torch.equal(m.params[f], ck.decoded_anchors()[f]) for f in ANCHOR_FIELDS)
    assert _same(read_ply(tmp_path / "c.ply"), snapshot_gaussians(m)[0])
    capsys.readouterr()
    assert main(["info", str(p)]) == 0
    text = capsys.readouterr().out
    assert "Scaffold-GS anchors" in text and "600 anchors" in text and "MLP weights" in text
    ck.encoder().write(tmp_path / "a.rave", 200)
    assert main(["info", str(tmp_path / "a.rave"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["unit_type"] == "anchors" and s["anchors"] == 200 and s["format_version"] == 1
    assert s["mlp_bytes"] == ck.encoder().mlp_bytes and s["bytes"] == ck.prefix_bytes(200)
    assert main(["info", str(p), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["unit_type"] == "anchors" and s["anchors"] == 600 and s["stream_format_version"] == 1


def test_truncated_stream_decodes_its_complete_chunks(stream, tmp_path, capsys):
    enc, path = stream
    cut = tmp_path / "cut.rave"
    from rave_viewer.codec.anchors import read_anchor_info

    second = read_anchor_info(path).chunks[1]
    cut.write_bytes(path.read_bytes()[: second.offset + second.length + 10])  # 2 chunks of 64 and a bit
    capsys.readouterr()
    assert main(["decode", str(cut), "--anchors", str(tmp_path / "cut.scaffold")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "recovered 128 of 300 anchors" in err
    assert len(io.load(tmp_path / "cut.scaffold")) == 128
    assert main(["decode", str(cut), "-o", str(tmp_path / "strict.ply"), "--strict"]) == 2
    assert not (tmp_path / "strict.ply").exists()


@pytest.mark.parametrize("argv,needle", [
    (["decode", "{a}"], "give -o/--output"),
    (["decode", "{g}", "-o", "{d}/x.ply", "--anchors", "{d}/x.scaffold"], "apply to anchor streams"),
    (["decode", "{a}", "-o", "{d}/x.ply", "--view-distance", "0"], "--view-distance"),
    (["decode", "{a}", "-o", "{a}"], "same file as the input"),
    (["decode", "{empty}", "-o", "{d}/x.ply"], "0 anchors"),
    (["decode", "{a}", "-o", "{d}/x.ply", "--max-anchors", "10"], "max_anchors"),
])
def test_errors_are_one_line(stream, tmp_path, capsys, argv, needle):
    from rave_viewer.codec import ProgressiveEncoder
    from rave_viewer.scene.gaussians import Gaussians

    enc, path = stream
    g = tmp_path / "g.rave"
    g.write_bytes(ProgressiveEncoder(Gaussians.random(20, 0), progress=False).encode())
    empty = tmp_path / "empty.rave"
    empty.write_bytes(enc.encode(0))
    capsys.readouterr()
    args = [a.format(a=path, g=g, d=tmp_path, empty=empty) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.ply").exists() and not (tmp_path / "x.scaffold").exists()
