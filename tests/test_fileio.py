"""Atomic writes: the old file survives a failed write, and new files get normal permissions."""

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
