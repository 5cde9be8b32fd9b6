"""Atomic writes: the old file survives a failed write, temp names are short and never clobbered, errors are one line."""

import os

import pytest

from rave_viewer.fileio import atomic_write, atomic_write_bytes


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "scene.ply"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"original"
    assert sorted(os.listdir(tmp_path)) == ["scene.ply"]


def test_new_file_permissions_follow_umask_and_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
        (tmp_path / "b.bin").write_bytes(b"y")
        os.chmod(tmp_path / "b.bin", 0o640)
        atomic_write_bytes(tmp_path / "b.bin", b"z")
        assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "b.bin").read_bytes() == b"z"
    finally:
        os.umask(old)


def test_temp_file_has_a_short_name_so_a_250_character_name_works(tmp_path):
    target = tmp_path / ("n" * 246 + ".ply")  # 250 characters: valid on every common file system
    with atomic_write(target) as f:
        f.write(b"data")
        tmps = [p for p in os.listdir(tmp_path) if p != target.name]
        assert len(tmps) == 1 and tmps[0].startswith(".rave-") and tmps[0].endswith(".tmp")
        assert len(tmps[0]) == len(".rave-") + 8 + len(".tmp")
    assert target.read_bytes() == b"data"
    assert os.listdir(tmp_path) == [target.name]


def test_a_leftover_temp_file_is_never_clobbered(tmp_path):
    stale = tmp_path / ".rave-abcdefgh.tmp"  # what a SIGKILL-ed write leaves behind
    stale.write_bytes(b"stale")
    for _ in range(20):
        atomic_write_bytes(tmp_path / "out.bin", b"new")
    assert stale.read_bytes() == b"stale"
    assert sorted(os.listdir(tmp_path)) == [".rave-abcdefgh.tmp", "out.bin"]


def test_os_errors_of_the_write_are_one_line_rave_errors_naming_the_file(tmp_path, monkeypatch):
    import errno

    from rave_viewer.errors import RaveError

    target = tmp_path / "out.bin"
    target.write_bytes(b"original")

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RaveError) as e:
        atomic_write_bytes(target, b"new")
    assert str(e.value) == f"{target}: cannot write the file: No space left on device"
    assert target.read_bytes() == b"original" and os.listdir(tmp_path) == ["out.bin"]
    monkeypatch.undo()
    with pytest.raises(RaveError, match="cannot write the file"):  # the folder is a file
        atomic_write_bytes(target / "x.bin", b"new")


def test_a_symlink_is_replaced_by_the_file_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    link = tmp_path / "out.bin"
    link.symlink_to(victim)
    atomic_write_bytes(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert victim.read_bytes() == b"keep me"
