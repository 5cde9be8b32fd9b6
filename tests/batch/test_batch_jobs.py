"""Which scenes `rave build-all` finds: the folder layout, YAML/CSV manifests, and the problems it reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rave_viewer.batch.catalogue import csv_text, markdown, rows
from rave_viewer.batch.fingerprint import changes, fingerprint
from rave_viewer.batch.jobs import discover
from rave_viewer.errors import RaveError


def touch(p: Path, text: str = "x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_layout(tmp_path):
    root = tmp_path / "scenes"
    touch(root / "garden" / "scene.ply")
    touch(root / "garden" / "data" / "transforms_train.json")
    touch(root / "room" / "point_cloud.ply")  # the folder's only PLY
    touch(root / "room" / "cameras.json")
    touch(root / "room" / "rave.yaml")
    touch(root / "statue.ply")  # a model without dataset
    touch(root / "anchors" / "scene.scaffold")  # Scaffold-GS models are found like PLYs
    touch(root / "anchors" / "data" / "transforms_train.json")
    touch(root / "bust.scaffold")
    touch(root / "mixed" / "scene.scaffold")  # scene.<suffix> wins over the folder's other model files
    touch(root / "mixed" / "old.ply")
    touch(root / "two" / "a.ply")
    touch(root / "two" / "b.ply")
    (root / "empty").mkdir()
    touch(root / ".hidden" / "scene.ply")
    touch(root / "notes.txt")
    out = root / "out"  # inside SCENES_DIR: never taken for a scene
    touch(out / "x" / "scene.ply")
    jobs = {j.name: j for j in discover(root, out)}
    assert sorted(jobs) == ["anchors", "bust", "empty", "garden", "mixed", "room", "statue", "two"]
    g = jobs["garden"]
    assert (g.ply, g.data, g.cameras, g.config) == (str(root / "garden" / "scene.ply"), str(root / "garden" / "data"),
                                                    None, None)
    assert g.out == str(out / "garden.ckpt") and g.problem is None
    r = jobs["room"]
    assert (r.ply, r.data, r.cameras, r.config) == (str(root / "room" / "point_cloud.ply"), None,
                                                    str(root / "room" / "cameras.json"), str(root / "room" / "rave.yaml"))
    assert jobs["statue"].ply == str(root / "statue.ply") and jobs["statue"].data is None
    assert "2 model files (a.ply, b.ply) and no single scene.*" in jobs["two"].problem
    assert "two/scene.ply" in jobs["two"].problem
    assert "no model file (.ply or .scaffold)" in jobs["empty"].problem
    a = jobs["anchors"]
    assert (a.ply, a.data, a.problem) == (str(root / "anchors" / "scene.scaffold"), str(root / "anchors" / "data"), None)
    assert jobs["bust"].ply == str(root / "bust.scaffold") and jobs["bust"].data is None
    assert jobs["mixed"].ply == str(root / "mixed" / "scene.scaffold") and jobs["mixed"].problem is None


def test_layout_name_clash_and_bad_names(tmp_path):
    root = tmp_path / "s"
    touch(root / "a" / "scene.ply")
    touch(root / "a.ply")
    with pytest.raises(RaveError, match="two scenes are named 'a'"):
        discover(root, tmp_path / "out")
    (root / "a.ply").unlink()
    touch(root / "my scene" / "scene.ply")
    jobs = {j.name: j for j in discover(root, tmp_path / "out")}
    assert jobs["a"].problem is None and "not usable as a file name" in jobs["my scene"].problem


def test_yaml_manifest(tmp_path):
    touch(tmp_path / "m" / "g" / "scene.ply")
    touch(tmp_path / "m" / "lego.ply")
    man = touch(tmp_path / "m" / "scenes.yaml", "scenes:\n  - ply: g/scene.ply\n    data: g/colmap\n"
                "  - {name: lego-hi, ply: lego.ply, config: hi.yaml}\n  - {model: room/scene.scaffold}\n")
    for where in (man.parent, man):  # the folder holding scenes.yaml, or the file itself
        jobs = discover(where, tmp_path / "out")
        assert [j.name for j in jobs] == ["g", "lego-hi", "room"]
        assert jobs[2].ply == str(tmp_path / "m" / "room" / "scene.scaffold")  # 'model': the same key as 'ply'
        assert jobs[0].data == str(tmp_path / "m" / "g" / "colmap")
        assert jobs[1].config == str(tmp_path / "m" / "hi.yaml") and jobs[1].data is None


def test_csv_manifest(tmp_path):
    man = touch(tmp_path / "scenes.csv", "name,ply,data\nbike,/data/bike.ply,/data/bike\ncar,car.ply,\n")
    jobs = discover(man, tmp_path / "out")
    assert [(j.name, j.ply, j.data) for j in jobs] == [("bike", "/data/bike.ply", "/data/bike"),
                                                     ("car", str(tmp_path / "car.ply"), None)]


@pytest.mark.parametrize("text,msg", [
    ("- {ply: a.ply, colour: red}\n", "unknown key(s) 'colour'"),
    ("- {name: a}\n", "scene 1: no 'ply'"),
    ("- {ply: a.ply}\n- {ply: b/a.ply}\n", "two scenes are named 'a'"),
    ("- {ply: a.ply, name: ../x}\n", "not usable as a file name"),
    ("- {ply: a.ply, name: catalogue}\n", "not usable as a file name"),
    ("- {ply: 3}\n", "'ply' must be a text"),
    ("- {ply: a.ply, model: a.scaffold}\n", "both 'ply' and 'model'"),
    ("ply: a.ply\n", "a list of scenes"),
    ("- [\n", "not valid YAML"),
    ("[]\n", "no scenes found"),
])
def test_manifest_errors_are_one_line(tmp_path, text, msg):
    man = touch(tmp_path / "scenes.yaml", text)
    with pytest.raises(RaveError) as e:
        discover(man, tmp_path / "out")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_missing_scenes_folder(tmp_path):
    with pytest.raises(RaveError, match="no such scenes folder or manifest"):
        discover(tmp_path / "nope", tmp_path / "out")


def test_fingerprint_names_what_changed(tmp_path):
    ply = touch(tmp_path / "s" / "scene.ply", "model")
    data = tmp_path / "s" / "data"
    touch(data / "images" / "0.png", "px")
    touch(data / ".rave-abc.tmp", "half")  # an interrupted write: not an input
    cfg = {"num_levels": 3}
    a = fingerprint(ply, cfg, data=data)
    assert a["data_files"] == 1 and changes(a, fingerprint(ply, cfg, data=data)) == []
    touch(data / "images" / "0.png", "PX")
    assert changes(a, fingerprint(ply, cfg, data=data)) == ["the dataset"]
    touch(data / "images" / "0.png", "px")
    assert changes(a, fingerprint(ply, {"num_levels": 4}, data=data)) == ["the build options"]
    touch(tmp_path / "s" / "scene.json", "{}")  # a run record appears beside the model
    assert changes(a, fingerprint(ply, cfg, data=data)) == ["its run record (.json beside it)"]


def test_catalogue_of_a_failure_and_an_odd_error():
    results = {"b": {"status": "failed", "error": "b.ply: bad | pipe", "summary": None},
               "a": {"status": "built", "seconds": 2.0, "summary": {
                   "gaussians": 10, "levels": 2, "level_sizes": [5, 10], "level_rates": [900, 2_500_000],
                   "rd": {"bytes": [900, 2_500_000], "psnr": [20.0, 30.5], "count": [5, 10]}, "psnr_vs": "photos"}}}
    table = rows(results)
    assert [r["scene"] for r in table] == ["a", "b"]
    assert csv_text(table).splitlines()[1] == ("a,built,10,Gaussians,2,900,2500000,20.0000,30.5000,photos,2.0,5;10,"
                                               "900;2500000,a.ckpt,,")  # (a summary without "unit": Gaussians)
    md = markdown(table, title="t")
    assert "| a | built | 10 Gaussians | 2 | 900 B – 2.5 MB | 20.00 – 30.50 | photos | 2.0 |" in md
    results["a"]["summary"]["unit"] = "anchors"
    assert "| a | built | 10 anchors | 2 |" in markdown(rows(results), title="t")
    assert "- **b**: b.ply: bad \\| pipe" in md


@pytest.mark.parametrize("address,msg", [("127.0.0.1:{port}", "no Ray cluster answers there"),
                                         ("head-node", "expected auto or a cluster address HOST:PORT")])
def test_unreachable_ray_address_is_one_line_at_once(tmp_path, capsys, address, msg):
    import socket

    from rave_viewer.cli import main

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    touch(tmp_path / "scenes" / "a.ply")
    code = main(["build-all", str(tmp_path / "scenes"), "-o", str(tmp_path / "out"), "--ray",
                 address.format(port=port)])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_hash_cache_rereads_only_files_whose_size_or_mtime_changed(tmp_path):
    from rave_viewer.batch.fingerprint import HashCache

    ply = touch(tmp_path / "scene.ply", "model")
    data = tmp_path / "data"
    for i in range(5):
        touch(data / "images" / f"{i}.png", f"pixels {i}")
    first = HashCache()
    a = fingerprint(ply, {}, data=data, cache=first)
    assert first.read == 6 and a == fingerprint(ply, {}, data=data)  # the same digests as without a cache
    again = HashCache(first.seen)
    assert fingerprint(ply, {}, data=data, cache=again) == a and again.read == 0
    img = data / "images" / "3.png"
    img.write_text("PIXELS 3")  # same size, new mtime: read again, and the change is seen
    st = os.stat(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = HashCache(again.seen)
    assert changes(a, fingerprint(ply, {}, data=data, cache=third)) == ["the dataset"] and third.read == 1


def test_missing_inputs_of_a_manifest_row_fail_without_retry(tmp_path):
    from rave_viewer.batch import run_job

    touch(tmp_path / "a.ply", "ply")
    man = touch(tmp_path / "scenes.csv", "name,ply,data,cameras\na,a.ply,nodata,\nb,a.ply,,nocams.json\n"
                                         "c,missing.ply,,\n")
    res = {j.name: run_job(j) for j in discover(man, tmp_path / "out")}
    assert res["a"]["error"] == f"{tmp_path / 'nodata'}: no such dataset folder"
    assert res["b"]["error"] == f"{tmp_path / 'nocams.json'}: no such cameras file"
    assert res["c"]["error"] == f"{tmp_path / 'missing.ply'}: no such model file"
    assert all(r["status"] == "failed" and not r["retry"] and r["traceback"] is None for r in res.values())
