"""Atomic file writes (temp file + rename) and output checks, so bad input never loses or replaces a user file."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import RaveError

#: Prefix and suffix of atomic_write's temp files: short, so any valid file name can be written. A process
#: killed with SIGKILL (or a power cut) may leave one behind; later writes never touch such a file.
TEMP_PREFIX, TEMP_SUFFIX = ".rave-", ".tmp"

# Errors of writing the file body that are about the output, not a bug: reported as one line naming it.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _write_error(e: OSError, path: Path) -> RaveError:
    return RaveError(f"cannot write the file: {e.strerror or e}", path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block finishes without error.

    The temp file is ``.rave-XXXXXXXX.tmp`` in the same folder (any file name fits) and is removed on any
    exception, including KeyboardInterrupt and :class:`~rave_viewer.errors.Terminated` (SIGTERM under
    :func:`~rave_viewer.errors.guarded`). The rename replaces a symlink at ``path`` by the file, never
    writing through it; refuse such outputs first with :func:`check_output`. OS errors of the folder, the
    temp file or the rename (and a full disk) are RaveErrors naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise _write_error(e, path) from None
    try:
        try:
            os.chmod(tmp, _target_mode(path))  # mkstemp makes 0600; give the file the usual permissions
            f = os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and (
                e.errno in _WRITE_ERRNOS or e.filename in (tmp, os.fspath(path))):
            raise _write_error(e, path) from None
        raise


def _target_mode(path: Path) -> int:
    """Permissions of the file being replaced, else 0666 minus the umask (what open() would give)."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o7777
    except OSError:  # missing, a dangling symlink, a loop
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _same(a: Path, b: Path, follow: bool) -> bool:
    """Whether paths ``a`` and ``b`` name one file (same inode, or the same absolute path when one is missing)."""
    try:
        sa, sb = (os.stat(a), os.stat(b)) if follow else (os.lstat(a), os.lstat(b))
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    except OSError:
        pass
    try:
        ra = a.resolve() if follow else a.parent.resolve() / a.name
        rb = b.resolve() if follow else b.parent.resolve() / b.name
    except (OSError, RuntimeError):
        ra, rb = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return ra == rb


def _kind(mode: int) -> str:
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def check_output(out: str | os.PathLike, *inputs: str | os.PathLike | None, force: bool = False,
                 flag: str = "-o/--output") -> Path:
    """Refuse, before any work, an output file path that would destroy something; returns ``Path(out)``.

    Raises :class:`RaveError` (one line naming ``out`` and ``flag``) when ``out``

    * is one of ``inputs`` (``None`` entries are skipped): the same path after resolving symlinks, or the
      same inode (a hard link, ``os.path.samefile``) -- refused even with ``force``;
    * is an existing folder (always), or an existing symlink, FIFO, device or socket, or a read-only file
      (unless ``force``: then :func:`atomic_write` replaces the link or special file by a regular file, never
      writing through it);
    * has a name too long for its folder, or a folder that cannot be created or written.

    Call it in every command that writes a file the user named, with every file the command reads.
    """
    out = Path(out)
    anc = _existing_ancestor(out)
    try:
        name_max = os.pathconf(anc, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(out.name)) > name_max:
        raise RaveError(f"{flag}: the file name is longer than {name_max} bytes", out)
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:  # ENAMETOOLONG, ENOTDIR, ELOOP, EACCES on a parent ...
        raise RaveError(f"{flag}: cannot use this output path: {e.strerror or e}", out) from None
    is_link = st is not None and stat.S_ISLNK(st.st_mode)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        # With force a symlink output is replaced, not followed: only the link itself can be the input then.
        if _same(out, inp, follow=not (is_link and force)):
            raise RaveError(f"{flag} is the same file as the input {inp}; choose another output name", out)
    if st is not None:
        target = None
        if is_link:
            with contextlib.suppress(OSError):
                target = os.stat(out)
            if not force:
                raise RaveError(f"{flag} is a symbolic link (to {os.readlink(out)}); refusing to write through "
                                "it (--force replaces the link by a regular file)", out)
        if stat.S_ISDIR(st.st_mode) or (target is not None and stat.S_ISDIR(target.st_mode) and not force):
            raise RaveError(f"{flag} is a folder, expected a file path", out)
        if not is_link and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode) and not force:
            raise RaveError(f"{flag} exists and is {_kind(st.st_mode)}; refusing to replace it (--force does)",
                            out)
        if (stat.S_ISREG(st.st_mode) and not force
                and (not st.st_mode & 0o222 or not os.access(out, os.W_OK, follow_symlinks=False))):
            raise RaveError(f"{flag} exists and is read-only; refusing to replace it (--force does)", out)
    if not anc.is_dir():
        raise RaveError(f"{flag}: cannot create the output folder: {anc} is not a folder", out)
    if not os.access(anc, os.W_OK | os.X_OK):
        raise RaveError(f"{flag}: cannot write to the folder {anc} (permission denied)", out)
    return out


def _existing_ancestor(out: Path) -> Path:
    """The output's folder, or its nearest ancestor that exists (the one atomic_write creates folders in)."""
    anc = out.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    return anc
