"""The one job function of a batch: build one scene's checkpoint unless it is up to date, and say how it went.

Every runner (local, Ray) calls :func:`run_job` with a :class:`~rave_viewer.batch.jobs.JobSpec` and gets a
plain dict back (picklable, JSON-able); failures are results too, never exceptions, so one bad scene cannot
stop the others. Beside each checkpoint ``<name>.ckpt`` a sidecar ``<name>.build.json`` (written atomically,
after the checkpoint) records the inputs' hashes, the checkpoint's size and SHA-256 and the summary the
catalogue shows: a re-run skips the scene only when the checkpoint is the complete file that sidecar describes
and the inputs hash the same. A worker killed mid-build leaves at most a hidden ``.rave-*.tmp`` file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
import warnings
from pathlib import Path

from ..errors import RaveError
from .fingerprint import HashCache, changes, file_sha256, fingerprint
from .jobs import JobSpec

#: ``format`` of the sidecar files.
SIDECAR_FORMAT = "rave-build-all/1"
MAX_SIDECAR_BYTES = 64 << 20
#: Result statuses: built in this run, skipped (checkpoint and inputs unchanged), failed.
BUILT, UP_TO_DATE, FAILED = "built", "up to date", "failed"


def sidecar_path(out: str | os.PathLike) -> Path:
    """``OUT_DIR/<name>.build.json`` for ``OUT_DIR/<name>.ckpt``."""
    out = Path(out)
    return out.with_name(out.stem + ".build.json")


def read_sidecar(out: str | os.PathLike) -> dict | None:
    """The sidecar of checkpoint ``out`` as a dict, or None when it is missing or unreadable."""
    p = sidecar_path(out)
    try:
        if p.stat().st_size > MAX_SIDECAR_BYTES:
            return None
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT or not isinstance(doc.get("inputs"), dict) \
            or not isinstance(doc.get("ckpt"), dict) or not isinstance(doc.get("summary"), dict):
        return None
    return doc


def up_to_date(out: str | os.PathLike, fp: dict, side: dict | None = None) -> tuple[dict | None, str]:
    """(the sidecar, "") when ``out`` is complete and was built from inputs hashing to ``fp``; else (None, why).

    ``side``: the sidecar already read (else it is read here). The checkpoint counts as the one the sidecar
    describes when its size and mtime_ns are those recorded after writing it, else when its SHA-256 matches.
    """
    side = side if side is not None else read_sidecar(out)
    if side is None:
        return None, "not built yet" if not Path(out).exists() else "no record of how the checkpoint was built"
    try:
        st = os.stat(out)
    except OSError:
        return None, "the checkpoint is missing"
    ck = side["ckpt"]
    same_stat = st.st_mtime_ns == ck.get("mtime_ns")
    if st.st_size != ck.get("bytes") or (not same_stat and file_sha256(out) != ck.get("sha256")):
        return None, "the checkpoint is incomplete or was replaced"
    what = changes(side["inputs"], fp)
    if what:
        return None, f"{', '.join(what)} changed"
    return side, ""


def summary(ckpt) -> dict:
    """What the catalogue shows of a checkpoint: sizes, levels, exact level rates, the stored RD table."""
    rd = ckpt.rd or {}
    meta = ckpt.meta or {}
    return {
        "gaussians": len(ckpt),  # ranked units (Gaussians or anchors: "unit")
        "unit": str(getattr(ckpt, "unit_label", "Gaussians")),
        "input_gaussians": int(meta.get("input_gaussians", len(ckpt))),
        "levels": int(ckpt.num_levels),
        "level_sizes": [int(x) for x in ckpt.level_sizes],
        "level_rates": [int(x) for x in ckpt.level_rates],
        "rd": {k: list(rd.get(k, [])) for k in ("count", "bytes", "psnr")},
        "psnr_vs": "full model" if meta.get("targets") == "self" else "photos",
        "backend": str((meta.get("config") or {}).get("backend", "")),
    }


def _result(spec: JobSpec, status: str, **kw) -> dict:
    r = {"name": spec.name, "status": status, "error": None, "retry": False, "reason": "", "seconds": 0.0,
         "summary": None, "notes": [], "traceback": None, "host": socket.gethostname(), "pid": os.getpid()}
    r.update(kw)
    return r


def one_line(e: BaseException) -> str:
    """An exception as one line: a RaveError's message, else "Type: message" (at most 300 characters)."""
    msg = " ".join(str(e).split())
    text = msg if isinstance(e, RaveError) else f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _config(spec: JobSpec):
    from ..rave.config import BuildConfig, load_config

    cfg = load_config(spec.config) if spec.config else BuildConfig()
    return cfg.replace(**spec.overrides) if spec.overrides else cfg


def _build(spec: JobSpec, cfg, fp: dict, files: dict) -> tuple[dict, list[str], float]:
    """Build and write the checkpoint, then its sidecar; (summary, warning lines, seconds)."""
    import torch

    from ..fileio import atomic_write_text
    from ..rave.build import build

    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ckpt = build(spec.ply, spec.data, spec.out, cfg, progress=False,
                         allow_outside_paths=spec.allow_outside_paths, cameras=spec.cameras)
    finally:
        torch.set_num_threads(threads)
    seconds = round(time.perf_counter() - t0, 3)
    notes = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    summ = summary(ckpt)
    st = os.stat(spec.out)
    side = {"format": SIDECAR_FORMAT, "name": spec.name, "inputs": fp,
            "ckpt": {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(spec.out)},
            "summary": summ, "notes": notes, "seconds": seconds, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": socket.gethostname(),
            "sources": {"ply": spec.ply, "data": spec.data, "cameras": spec.cameras, "config": spec.config},
            "files": files}
    atomic_write_text(sidecar_path(spec.out), json.dumps(side, indent=1, allow_nan=False) + "\n")
    return summ, notes, seconds


def run_job(spec: JobSpec) -> dict:
    """Build ``spec``'s scene (or find it up to date); a result dict, whatever happens short of Ctrl-C.

    Keys: name, status (built / up to date / failed), error (one line), retry (worth another attempt: not a
    problem of the input), reason (why it was (re)built), seconds (the build's wall time), summary (see
    :func:`summary`), notes (the build's warnings), traceback (unexpected errors only), host, pid.
    """
    if spec.problem:
        return _result(spec, FAILED, error=spec.problem)
    try:
        from ..fileio import check_output

        if spec.ply is None:
            raise RaveError("no model to build from", spec.name)
        ply = Path(spec.ply)
        if not ply.is_file():
            raise RaveError("no such model file" if not ply.exists() else "is not a file", ply)
        for path, what in ((spec.data, "dataset folder"), (spec.cameras, "cameras file")):
            if path is not None and not os.path.exists(path):
                raise RaveError(f"no such {what}", path)
        cfg = _config(spec)
        check_output(spec.out, spec.ply, ply.with_suffix(".json"), spec.data, spec.cameras, spec.config)
        old = read_sidecar(spec.out)
        cache = HashCache(old.get("files") if old else None)
        try:
            fp = fingerprint(spec.ply, cfg.to_dict(), data=spec.data, cameras=spec.cameras,
                             exclude=spec.exclude, cache=cache)
        except OSError as e:
            raise RaveError(f"cannot read an input: {e.strerror or e}", e.filename or spec.ply) from None
        side, why = (None, "--rebuild") if spec.rebuild else up_to_date(spec.out, fp, old)
        if side is not None:
            return _result(spec, UP_TO_DATE, summary=side["summary"], notes=list(side.get("notes") or []),
                           seconds=float(side.get("seconds") or 0.0))
        summ, notes, seconds = _build(spec, cfg, fp, cache.seen)
        return _result(spec, BUILT, summary=summ, notes=notes, seconds=seconds, reason=why)
    except RaveError as e:  # bad input: the same next time
        return _result(spec, FAILED, error=one_line(e))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # a bug, or the machine (memory, disk): worth a retry
        return _result(spec, FAILED, error=one_line(e), retry=True,
                       traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)))
    finally:
        sys.stderr.flush()


__all__ = ["BUILT", "FAILED", "UP_TO_DATE", "read_sidecar", "run_job", "sidecar_path", "summary", "up_to_date"]
