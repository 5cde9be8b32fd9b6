"""Which scenes a batch builds: a documented folder layout or a small YAML/CSV manifest -> one JobSpec each.

Folder layout (``rave build-all SCENES_DIR``), entries whose names start with "." are ignored::

    SCENES_DIR/<name>/scene.ply      the trained model (or the folder's only model file: *.ply, *.scaffold)
    SCENES_DIR/<name>/data/          optional: its dataset (COLMAP or transforms.json); else self-distillation
    SCENES_DIR/<name>/cameras.json   optional, without data/: poses for self-distillation instead of the rig
    SCENES_DIR/<name>/rave.yaml      optional: this scene's build options (instead of --config)
    SCENES_DIR/<name>.ply            a model without dataset (self-distillation on a rig); also <name>.scaffold

Model files are those of every registered backbone (rave/backbone.py: 3DGS ``.ply``, Scaffold-GS ``.scaffold``);
``scene.<suffix>`` in a folder is the model whatever else the folder holds.

Manifest: ``SCENES_DIR/scenes.yaml`` / ``scenes.csv`` (or that file given instead of the folder), one scene per
entry / row with ``ply`` (required; ``model`` is the same key, for .scaffold files), ``name``, ``data``,
``cameras``, ``config``; relative paths are relative
to the manifest's folder. YAML: a list of mappings, or ``scenes:`` holding that list.

A folder that is not a usable scene (no model file, several) becomes a job with a ``problem``: it is reported
as failed in the catalogue, the others still build.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import RaveError, shown

#: Manifest files looked for in SCENES_DIR (in this order).
MANIFEST_NAMES = ("scenes.yaml", "scenes.yml", "scenes.csv")
#: Keys of a manifest entry.
MANIFEST_KEYS = ("name", "ply", "model", "data", "cameras", "config")
MAX_MANIFEST_BYTES = 4 << 20
MAX_SCENES = 100_000
#: A scene name is a file name stem in OUT_DIR: letters, digits, ".", "_", "-", not starting with ".".
NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
#: Names the catalogue uses in OUT_DIR: a scene may not be called so.
RESERVED = ("catalogue",)


@dataclass(frozen=True)
class JobSpec:
    """One scene to build: inputs, the output checkpoint, and how to build it (what a worker needs, picklable)."""

    name: str
    ply: str | None  # the model file (.ply, .scaffold: any backbone's)
    out: str = ""  # OUT_DIR/<name>.ckpt
    data: str | None = None
    cameras: str | None = None
    config: str | None = None  # YAML build config of this scene (else the batch's)
    overrides: dict = field(default_factory=dict)  # BuildConfig fields set for every scene (e.g. backend)
    allow_outside_paths: bool = False
    threads: int | None = None  # torch threads of the build (the task's CPUs)
    exclude: tuple[str, ...] = ()  # folders never hashed as inputs (OUT_DIR)
    rebuild: bool = False  # build even when the checkpoint is up to date
    problem: str | None = None  # set at discovery: not a usable scene, reported without running

    def with_(self, **changes) -> "JobSpec":
        return replace(self, **changes)

    def absolute(self) -> "JobSpec":
        """The same job with absolute paths (a worker on another machine has another working folder)."""
        ab = lambda p: None if p is None else os.path.abspath(p)  # noqa: E731
        return replace(self, ply=ab(self.ply), out=ab(self.out) if self.out else self.out, data=ab(self.data),
                       cameras=ab(self.cameras), config=ab(self.config))


def _check_name(name: str, where) -> str:
    if not NAME_RE.fullmatch(name) or name.lower() in RESERVED:
        raise RaveError(f"scene name {shown(name)} is not usable as a file name in the output folder (letters, "
                        "digits, '.', '_', '-'; not starting with '.'; not 'catalogue')", where)
    return name


def model_suffixes() -> tuple[str, ...]:
    """File suffixes of every registered backbone's model (".ply", ".scaffold"), lower case."""
    from ..rave.backbone import backbone_classes

    return tuple(s for cls in backbone_classes() for s in cls.suffixes)


def _is_model(p: Path, suffixes: tuple[str, ...]) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes


def _scene_folder(d: Path, suffixes: tuple[str, ...]) -> JobSpec:
    """A ``SCENES_DIR/<name>/`` folder as a job (with a problem when it holds no single model)."""
    name = d.name
    named = [d / f"scene{s}" for s in suffixes if (d / f"scene{s}").is_file()]
    models = named or sorted(p for p in d.iterdir() if _is_model(p, suffixes))
    if len(models) == 1:
        ply = models[0]
    else:
        kinds = " or ".join(suffixes)
        what = (f"no model file ({kinds})" if not models else
                f"{len(models)} model files ({', '.join(p.name for p in models)}) and no single scene.*")
        return JobSpec(name, None, problem=f"{d}: {what} in the scene folder (expected {name}/scene.ply)")
    data = d / "data"
    cams = d / "cameras.json"
    cfg = d / "rave.yaml"
    return JobSpec(name, str(ply), data=str(data) if data.is_dir() else None,
                   cameras=str(cams) if cams.is_file() and not data.is_dir() else None,
                   config=str(cfg) if cfg.is_file() else None)


def _from_layout(root: Path, skip: list[Path]) -> list[JobSpec]:
    jobs: list[JobSpec] = []
    suffixes = model_suffixes()
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise RaveError(f"cannot list the scenes folder: {e.strerror or e}", root) from None
    for e in entries:
        if e.name.startswith(".") or any(_same_dir(e, s) for s in skip):
            continue
        if e.is_dir():
            jobs.append(_scene_folder(e, suffixes))
        elif _is_model(e, suffixes):
            jobs.append(JobSpec(e.stem, str(e)))
    return jobs


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.is_dir() and b.is_dir() and os.path.samefile(a, b)
    except OSError:
        return False


def _read_manifest(path: Path) -> list[dict]:
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise RaveError(f"is too large for a scenes manifest ({size:,} bytes; at most {MAX_MANIFEST_BYTES:,})",
                            path)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RaveError(f"cannot read the scenes manifest: {e.strerror or e}", path) from None
    except UnicodeDecodeError:
        raise RaveError("cannot read the scenes manifest: not UTF-8 text", path) from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and None in rows[0]:
            raise RaveError("a CSV row has more fields than the header", path)
        return [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k is not None}
                for r in rows]
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        lines = str(e).splitlines()
        raise RaveError(f"not valid YAML: {lines[0] if lines else 'malformed'}", path) from None
    except (RecursionError, ValueError, OverflowError):
        raise RaveError("not valid YAML (nested too deeply or an unreadable value)", path) from None
    if isinstance(doc, dict) and set(doc) == {"scenes"}:
        doc = doc["scenes"]
    if not isinstance(doc, list):
        raise RaveError("a scenes manifest is a list of scenes (or 'scenes:' holding one), each a mapping with "
                        "at least 'ply'", path)
    return doc


def _from_manifest(path: Path) -> list[JobSpec]:
    rows = _read_manifest(path)
    base = path.parent
    jobs = []
    for i, row in enumerate(rows, 1):
        where = f"scene {i}"
        if not isinstance(row, dict):
            raise RaveError(f"{where} is not a mapping of {', '.join(MANIFEST_KEYS)}", path)
        unknown = sorted(str(k) for k in row if k not in MANIFEST_KEYS)
        if unknown:
            raise RaveError(f"{where}: unknown key(s) {', '.join(map(shown, unknown))} (known: "
                            f"{', '.join(MANIFEST_KEYS)})", path)
        vals = {}
        for k in MANIFEST_KEYS:
            v = row.get(k)
            if v is None or v == "":
                continue
            if not isinstance(v, str):
                raise RaveError(f"{where}: '{k}' must be a text (a name or a path), got {shown(v)}", path)
            vals[k] = v
        if "ply" in vals and "model" in vals:
            raise RaveError(f"{where}: both 'ply' and 'model' (the same key: give one)", path)
        if "model" in vals:
            vals["ply"] = vals.pop("model")
        if "ply" not in vals:
            raise RaveError(f"{where}: no 'ply' (the trained model to build from)", path)
        ply = base / vals["ply"]
        name = vals.get("name") or (ply.parent.name if ply.stem in ("scene", "point_cloud") else ply.stem)
        _check_name(name, path)
        p = {k: str(base / vals[k]) if k in vals else None for k in ("data", "cameras", "config")}
        jobs.append(JobSpec(name, str(ply), **p))
    return jobs


def manifest_of(scenes: str | os.PathLike) -> Path | None:
    """The manifest file ``scenes`` is or holds, else None (a folder layout)."""
    p = Path(scenes)
    if p.is_file():
        return p
    for n in MANIFEST_NAMES:
        if (p / n).is_file():
            return p / n
    return None


def discover(scenes: str | os.PathLike, out_dir: str | os.PathLike) -> list[JobSpec]:
    """The jobs for ``scenes`` (a folder in the layout above, or a manifest) writing into ``out_dir``, by name."""
    root = Path(scenes)
    out = Path(out_dir)
    if not root.exists():
        raise RaveError("no such scenes folder or manifest", root)
    man = manifest_of(root)
    if man is not None:
        if man.suffix.lower() not in (".yaml", ".yml", ".csv"):
            raise RaveError("a scenes manifest is a .yaml, .yml or .csv file (or give a folder of scenes)", man)
        jobs = _from_manifest(man)
    else:
        jobs = _from_layout(root, [out])
    if not jobs:
        raise RaveError("no scenes found (expected <name>/scene.ply folders, <name>.ply or <name>.scaffold files or a "
                        "scenes.yaml / scenes.csv manifest; see rave build-all --help)", root)
    if len(jobs) > MAX_SCENES:
        raise RaveError(f"{len(jobs):,} scenes; at most {MAX_SCENES:,} in one batch", root)
    seen: dict[str, int] = {}
    for i, j in enumerate(jobs):
        if j.problem is None:
            try:
                _check_name(j.name, man or root)
            except RaveError as e:
                if man is not None:
                    raise
                jobs[i] = j = j.with_(problem=str(e))
        key = j.name.lower()  # one .ckpt per name, also on case-insensitive file systems
        if key in seen:
            raise RaveError(f"two scenes are named {shown(j.name)} (their checkpoints would collide in the output "
                            "folder); rename one (or give 'name' in the manifest)", man or root)
        seen[key] = 1
    exclude = (str(out.resolve()),)
    return sorted((j.with_(out=str(out / f"{j.name}.ckpt"), exclude=exclude) for j in jobs), key=lambda j: j.name)


__all__ = ["JobSpec", "MANIFEST_NAMES", "discover", "manifest_of"]
