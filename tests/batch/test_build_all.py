"""`rave build-all` end to end on three tiny trained scenes: a local Ray runtime (2 CPUs, loopback) and the local
runner give the same catalogue; a scene with a corrupt input fails alone and is reported; re-runs build only
what is missing; a worker killed mid-write leaves no file under the final name and is retried."""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from batch_helpers import NAMES, run_cli
from rave_viewer.batch import RayRunner, discover, run_job, run_jobs
from rave_viewer.batch.catalogue import read_csv
from rave_viewer.batch.job import up_to_date
from rave_viewer.rave.checkpoint import load_checkpoint

#: Catalogue columns that depend only on the inputs (not on the run: status, build time, warnings).
SAME = ("scene", "gaussians", "levels", "rate_min_bytes", "rate_max_bytes", "psnr_min_db", "psnr_max_db", "psnr_vs",
        "level_sizes", "level_rates", "checkpoint", "error")


def catalogue(out: Path) -> dict[str, dict]:
    return {r["scene"]: r for r in read_csv(out / "catalogue.csv")}


def check_built(out: Path, rows: dict[str, dict], names) -> None:
    """Each named row describes the checkpoint beside it: Gaussians, levels, exact level rates, RD table PSNRs."""
    for name in names:
        r = rows[name]
        ck = load_checkpoint(out / r["checkpoint"])
        assert int(r["gaussians"]) == len(ck) > 0
        assert int(r["levels"]) == ck.num_levels == 3
        assert r["level_rates"] == ";".join(map(str, ck.level_rates))
        assert r["level_sizes"] == ";".join(map(str, ck.level_sizes))
        assert (int(r["rate_min_bytes"]), int(r["rate_max_bytes"])) == (ck.level_rates[0], ck.level_rates[-1])
        assert ck.level_rates[0] < ck.level_rates[-1]
        lo, hi = float(r["psnr_min_db"]), float(r["psnr_max_db"])
        assert (lo, hi) == (round(min(ck.rd["psnr"]), 4), round(max(ck.rd["psnr"]), 4))
        assert 8 < lo <= hi < 60 and math.isfinite(float(r["build_seconds"]))
        assert r["psnr_vs"] == "photos" and r["error"] == ""
        assert up_to_date(out / r["checkpoint"], read_fp(out, name))[0] is not None


def read_fp(out: Path, name: str) -> dict:
    import json

    return json.loads((out / f"{name}.build.json").read_text())["inputs"]


def check_report(out: Path, rows: dict[str, dict]) -> None:
    md = (out / "catalogue.md").read_text()
    for name, r in rows.items():
        assert f"| {name} | {r['status']} |" in md
    with Image.open(out / "catalogue.png") as im:
        assert im.size == (960, 640)
        # one coloured curve per built scene: the palette's first colours are on the picture
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    built = sum(r["status"] != "failed" for r in rows.values())
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44)][:built]
    assert all(any(sum(abs(a - b) for a, b in zip(p, c)) < 12 for c in colours) for p in palette)


def mtimes(out: Path, name: str) -> tuple[int, int]:
    return os.stat(out / f"{name}.ckpt").st_mtime_ns, os.stat(out / f"{name}.build.json").st_mtime_ns


@pytest.fixture(scope="module")
def local_out(scene_tree, tmp_path_factory):
    """The catalogue folder of ``rave build-all`` without --ray on the pristine scenes, and its stderr."""
    out = tmp_path_factory.mktemp("local") / "out"
    import contextlib  # capsys is function-scoped: capture by hand here
    import io

    err = io.StringIO()
    from rave_viewer.cli import main

    with contextlib.redirect_stderr(err):
        code = main(["build-all", str(scene_tree), "-o", str(out), "--config", str(scene_tree.parent / "tiny.yaml"),
                     "--quiet"])
    return out, code, err.getvalue()


def test_local_build_all_catalogue(local_out):
    out, code, err = local_out
    assert code == 0, err
    rows = catalogue(out)
    assert sorted(rows) == list(NAMES) and {r["status"] for r in rows.values()} == {"built"}
    check_built(out, rows, NAMES)
    check_report(out, rows)
    assert err.strip().splitlines()[-1].startswith("build-all: 3 scenes: 3 built, 0 up to date, 0 failed")
    assert not list(out.glob(".rave-*.tmp"))


def test_ray_bad_input_fails_alone_and_rerun_builds_only_what_is_missing(scenes, ray_runtime, local_out, capsys):
    out = scenes.parent / "out"
    cfg = scenes.parent / "tiny.yaml"
    good = (scenes / "charlie" / "scene.ply").read_bytes()
    (scenes / "charlie" / "scene.ply").write_bytes(good[: len(good) // 3])  # a truncated upload

    code, err = run_cli(capsys, "build-all", scenes, "-o", out, "--ray", "auto", "--config", cfg, "--quiet")
    assert code == 1
    rows = catalogue(out)
    assert [rows[n]["status"] for n in NAMES] == ["built", "built", "failed"]
    check_built(out, rows, ("alpha", "bravo"))
    bad = [ln for ln in err.splitlines() if ln.startswith("error: charlie:")]
    assert len(bad) == 1 and "scene.ply" in bad[0] and "truncated" in bad[0], err
    assert "scene.ply" in rows["charlie"]["error"] and "Traceback" not in err
    assert not (out / "charlie.ckpt").exists() and not (out / "charlie.build.json").exists()
    check_report(out, rows)
    assert "## Failed" in (out / "catalogue.md").read_text()

    # fix charlie; damage alpha's checkpoint (a file cut short); bravo is untouched
    (scenes / "charlie" / "scene.ply").write_bytes(good)
    ck = (out / "alpha.ckpt").read_bytes()
    (out / "alpha.ckpt").write_bytes(ck[:-100])
    before = mtimes(out, "bravo")
    code, err = run_cli(capsys, "build-all", scenes, "-o", out, "--ray", "auto", "--config", cfg, "--quiet")
    assert code == 0, err
    rows = catalogue(out)
    assert [rows[n]["status"] for n in NAMES] == ["built", "up to date", "built"]
    assert mtimes(out, "bravo") == before  # not rebuilt, not rewritten
    check_built(out, rows, NAMES)
    assert "2 built, 1 up to date, 0 failed" in err

    # the same inputs without --ray: the same catalogue (levels, exact rates, PSNR ranges)
    local = catalogue(local_out[0])
    assert {n: {k: rows[n][k] for k in SAME} for n in NAMES} == {n: {k: local[n][k] for k in SAME} for n in NAMES}

    # nothing changed: nothing is built or rewritten
    before = {n: mtimes(out, n) for n in NAMES}
    code, err = run_cli(capsys, "build-all", scenes, "-o", out, "--ray", "auto", "--config", cfg, "--quiet")
    assert code == 0 and "0 built, 3 up to date, 0 failed" in err
    assert {n: mtimes(out, n) for n in NAMES} == before


def die_at_rename(spec):
    """Run the job in a worker that dies (os._exit) just before the checkpoint's temp file gets its final name,
    the first time only (a marker file beside the output remembers)."""
    import os as _os

    marker = spec.out + ".died"
    if not _os.path.exists(marker):
        open(marker, "w").close()
        real = _os.replace

        def replace(src, dst):
            if str(dst).endswith(".ckpt"):
                _os._exit(1)
            return real(src, dst)

        _os.replace = replace  # this worker process only; it dies
    return run_job(spec)


def die_at_start(spec):
    os._exit(3)


def test_ray_worker_killed_mid_write_is_retried(scene_tree, ray_runtime, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ray_runtime.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    specs = [s.with_(config=str(scene_tree.parent / "tiny.yaml"), threads=1)
             for s in discover(scene_tree, out) if s.name == "alpha"]
    lines: list[str] = []
    res = run_jobs(specs, RayRunner(), fn=die_at_rename, retries=1, progress=False, say=lines.append)
    r = res["alpha"]
    assert r["status"] == "built" and r["attempts"] == 2, r
    assert len(lines) == 1 and "attempt 1 failed (the Ray worker died" in lines[0] and "retrying" in lines[0]
    # the killed attempt left its temp file, never a file under the final name; the retry wrote a whole one
    assert len(list(out.glob(".rave-*.tmp"))) == 1
    assert len(load_checkpoint(out / "alpha.ckpt")) > 0

    lines.clear()
    specs = [s.with_(name="bravo", out=str(out / "bravo.ckpt")) for s in specs]
    res = run_jobs(specs, RayRunner(), fn=die_at_start, retries=1, progress=False, say=lines.append)
    r = res["bravo"]
    assert r["status"] == "failed" and r["attempts"] == 2 and "the Ray worker died" in r["error"]
    assert len(lines) == 2 and lines[-1].startswith("error: bravo: the Ray worker died") and "(after 2 attempts)" in lines[-1]


def test_ray_missing_is_one_line(scene_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError, as without the extra
    code, err = run_cli(capsys, "build-all", scene_tree, "-o", tmp_path / "out", "--ray", "auto")
    assert code == 2
    assert err.strip().splitlines() == ["error: --ray needs Ray, which is not installed: pip install "
                                        "'rave_viewer[ray]' (or pip install ray)"]


def test_base_install_does_not_import_ray():
    import subprocess

    code = ("import sys; from rave_viewer.cli import build_parser; build_parser(); import rave_viewer.batch, "
            "rave_viewer.commands.build_all; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_second_batch_on_one_folder_is_refused(scene_tree, tmp_path, capsys):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".build-all.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        code, err = run_cli(capsys, "build-all", scene_tree, "-o", out)
    assert code == 2 and "another rave build-all is writing to this folder" in err
    assert len(err.strip().splitlines()) == 1
    shutil.rmtree(out)


def test_manifest_scene_without_photos_self_distils(scene_tree, tmp_path, capsys):
    """A CSV manifest row with a model and no dataset: the build self-distils on a rig; PSNR is vs the model."""
    cfg = tmp_path / "rig.yaml"
    cfg.write_text("num_levels: 3\nsteps: 2\nrd_points: 64\nrig_views: 8\nrig_size: 24\n")
    man = tmp_path / "scenes.csv"
    man.write_text(f"name,ply,config\necho,{scene_tree / 'alpha' / 'scene.ply'},rig.yaml\n")
    code, err = run_cli(capsys, "build-all", man, "-o", tmp_path / "out", "--quiet")
    assert code == 0, err
    r = catalogue(tmp_path / "out")["echo"]
    assert r["status"] == "built" and r["psnr_vs"] == "full model" and r["levels"] == "3"
    ck = load_checkpoint(tmp_path / "out" / "echo.ckpt")
    assert ck.meta["targets"] == "self" and r["level_rates"] == ";".join(map(str, ck.level_rates))


class Ref:
    def __init__(self, result):
        self.result = result


class FakeRay:
    """Enough of the ``ray`` module for RayRunner on a pretend cluster with GPUs; records each task's options."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            pass

    def __init__(self, cpus: float = 8, gpus: float = 2):
        self.res = {"CPU": float(cpus), "GPU": float(gpus)}
        self.tasks: list[tuple[dict, object]] = []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return self.res

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, **opts):
                class Bound:
                    def remote(self, spec):
                        fake.tasks.append((opts, spec))
                        return Ref({"name": spec.name, "status": "failed", "error": "not run (fake cluster)",
                                    "retry": False, "summary": None})

                return Bound()

        return Task()

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        return ref.result

    def cancel(self, ref, force=False):
        pass


@pytest.mark.parametrize("flags,gpus,backend", [((), 1.0, "gsplat"), (("--backend", "cpu"), 1.0, "cpu"),
                                                (("--gpus-per-job", "0"), 0.0, None)])
def test_ray_tasks_on_a_gpu_cluster_ask_for_a_gpu_and_use_gsplat(scene_tree, tmp_path, capsys, monkeypatch, flags,
                                                                 gpus, backend):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    code, _ = run_cli(capsys, "build-all", scene_tree, "-o", tmp_path / "out", "--ray", "auto", "--cpus-per-job",
                      "2", "--quiet", *flags)
    assert code == 1  # the fake cluster runs nothing
    assert sorted(s.name for _, s in fake.tasks) == list(NAMES)
    for opts, spec in fake.tasks:
        assert (opts["num_cpus"], opts["num_gpus"], opts["max_retries"]) == (2.0, gpus, 0)
        assert spec.overrides.get("backend") == backend and spec.threads == 2
