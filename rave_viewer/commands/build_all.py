"""`rave build-all`: build many scenes' checkpoints as independent, resumable jobs (locally or on Ray) + a catalogue."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..rave.config import BACKENDS
from ._args import float_in, int_in
from .build import OUTSIDE_PATHS_HELP

HELP = ("build a RAVE checkpoint for every scene of a folder or manifest, as independent jobs (one after another, "
        "or Ray tasks with --ray), skipping scenes already built from the same inputs, with a catalogue report")

LAYOUT = """\
scenes: SCENES_DIR/<name>/scene.ply (or the folder's only .ply) with an optional dataset in <name>/data/ (else
the build self-distils on a camera rig, or on the poses of <name>/cameras.json) and optional build options in
<name>/rave.yaml (instead of --config); SCENES_DIR/<name>.ply for models without dataset; or a manifest
SCENES_DIR/scenes.yaml / scenes.csv (or that file as SCENES_DIR): entries with ply and optional name, data,
cameras, config, paths relative to the manifest.

output: OUT_DIR/<name>.ckpt, <name>.build.json (input hashes: a re-run skips unchanged scenes),
catalogue.csv, catalogue.md and catalogue.png (every scene's RD curve); <name>.error.txt holds the traceback
of an unexpected failure. Exit status 1 when a scene failed.
"""

MAX_RETRIES = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = LAYOUT
    p.add_argument("scenes", nargs="?", metavar="SCENES_DIR", help="folder of scenes, or a scenes.yaml/.csv manifest")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="folder for the checkpoints and the catalogue "
                                                             "(created; required)")
    p.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run each scene as a Ray task: 'auto' joins the cluster Ray finds (RAY_ADDRESS, ray start) "
                        "or starts a local runtime; or a cluster address. Needs pip install 'rave_viewer[ray]'. "
                        "Without it the scenes are built here, one after another")
    p.add_argument("--config", metavar="rave.yaml", help="build options for every scene, as for rave build; a "
                                                          "scene's own rave.yaml replaces it")
    p.add_argument("--backend", choices=BACKENDS,
                   help="renderer for every scene; unset: the config's, or gsplat for Ray tasks given a GPU")
    p.add_argument("--retries", type=int_in(0, MAX_RETRIES), default=2, metavar="N",
                   help=f"attempts after the first for a scene that fails unexpectedly or whose worker dies, "
                        f"0..{MAX_RETRIES} (default 2); bad input is reported at once")
    p.add_argument("--cpus-per-job", type=float_in(0.01, 4096), default=1, metavar="N",
                   help="with --ray: CPUs each task asks for, 0.01..4096, also its torch threads (default 1)")
    p.add_argument("--gpus-per-job", type=float_in(0, 64), metavar="N",
                   help="with --ray: GPUs each task asks for, 0..64; unset: 1 when the cluster has GPUs, else 0")
    p.add_argument("--memory-per-job", type=float_in(0.01, 1e6), metavar="GB",
                   help="with --ray: memory each task reserves, in GB (10^9 bytes), 0.01..1e6; unset: none reserved")
    p.add_argument("--rebuild", action="store_true", help="build every scene, also those that are up to date")
    p.add_argument("--allow-outside-paths", action="store_true", help=OUTSIDE_PATHS_HELP)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors, warnings and the summary line")


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``OUT_DIR/.build-all.lock``: two batches writing one folder would undo each other's records."""
    from ..errors import RaveError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = out / ".build-all.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RaveError(f"cannot write to the output folder: {e.strerror or e}", out) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RaveError("another rave build-all is writing to this folder; wait for it or choose another "
                            "-o", out) from None
        yield
    finally:
        os.close(fd)


def _out_dir(path: str) -> Path:
    from ..errors import RaveError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise RaveError("-o/--output is a file; build-all writes a folder of checkpoints", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RaveError(f"cannot create the output folder: {e.strerror or e}", out) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RaveError("cannot write to the output folder (permission denied)", out)
    return out


def _error_logs(out: Path, results: dict) -> None:
    """``<name>.error.txt`` with the traceback of each unexpected failure (removed once the scene builds)."""
    from ..batch.job import FAILED
    from ..fileio import atomic_write_text

    for name, r in results.items():
        log = out / f"{name}.error.txt"
        if r["status"] == FAILED and r.get("traceback"):
            atomic_write_text(log, f"{r['error']}\n\n{r['traceback']}")
        elif r["status"] != FAILED:
            with contextlib.suppress(OSError):
                log.unlink()


def run(args: argparse.Namespace) -> int:
    from ..batch import catalogue
    from ..batch.job import BUILT, FAILED, UP_TO_DATE
    from ..batch.jobs import discover
    from ..batch.runners import make_runner
    from ..batch.schedule import run_jobs
    from ..errors import RaveError
    from ..rave.config import load_config

    missing = [name for name, v in (("SCENES_DIR", args.scenes), ("-o OUT_DIR", args.output)) if not v]
    if missing:
        raise RaveError(f"rave build-all needs {', '.join(missing)}")
    if args.ray is None:
        given = [f for f, v in (("--gpus-per-job", args.gpus_per_job), ("--memory-per-job", args.memory_per_job))
                 if v is not None]
        if given:
            raise RaveError(f"{given[0]} applies to Ray tasks (--ray); a local build uses this machine as it is")
    if args.config:
        load_config(args.config)  # a bad shared config is one line now, not one failure per scene
    jobs = discover(args.scenes, args.output)  # before creating the output folder: a typo creates nothing
    out = _out_dir(args.output)
    with _locked(out):
        runner = make_runner(args.ray, cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
                             memory_per_job=int(args.memory_per_job * 1e9) if args.memory_per_job else None,
                             quiet=args.quiet) if args.ray else make_runner(None)
        overrides = {"backend": args.backend} if args.backend else {}
        if runner.gpus_per_job and not args.backend:
            overrides = {"backend": "gsplat"}
        threads = max(1, int(args.cpus_per_job)) if args.ray else None
        specs = [j.with_(config=j.config or args.config, overrides=overrides, threads=threads,
                         allow_outside_paths=args.allow_outside_paths, rebuild=args.rebuild) for j in jobs]
        if args.ray:
            specs = [s.absolute() for s in specs]
        if not args.quiet:
            print(f"build-all: {len(specs)} scenes -> {out} ({runner.description})", file=sys.stderr)
        results = run_jobs(specs, runner, retries=args.retries, progress=not args.quiet)
        paths = catalogue.write(out, results, runner=runner.description)
        _error_logs(out, results)
    n = {s: sum(r["status"] == s for r in results.values()) for s in (BUILT, UP_TO_DATE, FAILED)}
    print(f"build-all: {len(results)} scenes: {n[BUILT]} built, {n[UP_TO_DATE]} up to date, {n[FAILED]} failed; "
          f"catalogue {paths['md']}", file=sys.stderr)
    return 1 if n[FAILED] else 0
