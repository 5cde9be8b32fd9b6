"""Content hashes of a build's inputs (model, run record, dataset files, cameras, effective config).

A re-run compares them with those stored beside the checkpoint: equal hashes mean the same build, so it is
skipped; a difference names what changed. Hashes are of file contents (SHA-256), so a copied or touched file
does not trigger a rebuild and an edited one always does. A :class:`HashCache` of (size, mtime_ns, sha256)
per file, kept in the sidecar, spares re-reading files whose size and modification time are those they had
when hashed (hundreds of scenes of thousands of photos are not read again on every re-run).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import __version__

#: Bumped when the stored fingerprint changes meaning (old sidecars then never match: a rebuild).
FINGERPRINT_VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's contents."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashCache:
    """SHA-256 of files, reusing a known digest while a file's size and mtime_ns are unchanged."""

    def __init__(self, known: dict | None = None):
        self.known = known if isinstance(known, dict) else {}
        self.seen: dict[str, list] = {}  # absolute path -> [size, mtime_ns, sha256] of the files hashed now
        self.read = 0  # files actually read

    def sha(self, path: str | os.PathLike) -> str:
        key = os.path.abspath(path)
        st = os.stat(key)
        k = self.known.get(key)
        if isinstance(k, list) and len(k) == 3 and k[0] == st.st_size and k[1] == st.st_mtime_ns \
                and isinstance(k[2], str):
            digest = k[2]
        else:
            digest = file_sha256(key)
            self.read += 1
        self.seen[key] = [st.st_size, st.st_mtime_ns, digest]
        return digest


def _walk(root: Path, exclude: set[str]):
    """Regular files under ``root`` (following symlinks, each real folder once), sorted, hidden names skipped."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        real = os.path.realpath(d)
        if real in seen or real in exclude:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):  # .rave-*.tmp of interrupted writes, .DS_Store, .git
                continue
            if e.is_dir():
                subdirs.append(Path(e.path))
            elif e.is_file():
                yield Path(e.path)
        stack.extend(reversed(subdirs))


def folder_sha256(root: str | os.PathLike, exclude: tuple[str, ...] = (),
                  cache: HashCache | None = None) -> tuple[str, int]:
    """One digest of every file's relative path and contents under ``root`` (or of the file ``root``), and the
    number of files."""
    sha = cache.sha if cache is not None else file_sha256
    root = Path(root)
    if root.is_file():
        return sha(root), 1
    h = hashlib.sha256()
    n = 0
    for p in _walk(root, {os.path.realpath(x) for x in exclude}):
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + sha(p).encode() + b"\n")
        n += 1
    return h.hexdigest(), n


def config_sha256(cfg_dict: dict) -> str:
    """Digest of a build config (its canonical JSON)."""
    return hashlib.sha256(json.dumps(cfg_dict, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fingerprint(ply: str | os.PathLike, cfg_dict: dict, *, data=None, cameras=None,
                exclude: tuple[str, ...] = (), cache: HashCache | None = None) -> dict:
    """Hashes of everything a build reads: {"ply", "record", "data", "data_files", "cameras", "config", ...}.

    ``record`` is the run record ``rave train`` writes beside the model (it sets the default fine-tuning
    length and downscale); ``data`` covers every file of the dataset folder except ``exclude`` folders.
    """
    sha = cache.sha if cache is not None else file_sha256
    ply = Path(ply)
    rec = ply.with_suffix(".json")
    out = {"version": FINGERPRINT_VERSION, "rave_viewer": __version__, "ply": sha(ply),
           "record": sha(rec) if rec.is_file() else None, "data": None, "data_files": 0,
           "cameras": sha(cameras) if cameras is not None else None, "config": config_sha256(cfg_dict)}
    if data is not None:
        out["data"], out["data_files"] = folder_sha256(data, exclude, cache)
    return out


#: What each fingerprint key is, for "rebuilding: <what> changed".
WHAT = {"ply": "the model (.ply)", "record": "its run record (.json beside it)", "data": "the dataset",
        "data_files": "the dataset", "cameras": "the cameras file", "config": "the build options",
        "version": "the checkpoint bookkeeping", "rave_viewer": "the rave_viewer version"}


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints, in words (no duplicates, in a fixed order)."""
    out: list[str] = []
    for k, what in WHAT.items():
        if old.get(k) != new.get(k) and what not in out:
            out.append(what)
    return out


__all__ = ["HashCache", "changes", "config_sha256", "file_sha256", "fingerprint", "folder_sha256"]
