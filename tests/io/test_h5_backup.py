"""sekd_plugin.io.h5_backup: the copy a writer keeps, and the restore of a file a killed writer damaged."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from sekd_plugin.common import files
from sekd_plugin.io import h5_backup
from sekd_plugin.io.h5 import BACKUP_ENV, H5FileError, list_names, read_features, release_backup, write_features


def _pred(seed):
    rng = np.random.default_rng(seed)
    return {"keypoints": rng.random((4, 2), dtype=np.float32), "descriptors": rng.random((8, 4), dtype=np.float32)}


def _dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _damage(path):
    """What a writer killed inside HDF5's metadata write leaves: metadata that no longer reads."""
    data = bytearray(path.read_bytes())
    data[96:len(data) // 2] = bytes(len(data) // 2 - 96)  # keep the signature, lose the root group
    path.write_bytes(bytes(data))


def _backups(folder):
    return sorted(p.name for p in folder.iterdir() if ".backup-" in p.name)


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    monkeypatch.setattr(h5_backup, "_taken", {})
    monkeypatch.setattr(h5_backup, "_checked", {})


def test_a_writer_keeps_the_file_as_it_was_before_it_wrote_and_drops_it_at_the_end(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    release_backup(path)  # a finished job
    assert _backups(tmp_path) == []
    write_features(path, "b.jpg", _pred(1))  # a new job: first write copies the file first
    write_features(path, "c.jpg", _pred(2))  # within the refresh interval: no new copy
    copy = h5_backup.backup_path(path)
    assert _backups(tmp_path) == [copy.name]
    assert list_names(copy) == ["a.jpg"]
    assert list_names(path) == ["a.jpg", "b.jpg", "c.jpg"]
    release_backup(path)
    assert _backups(tmp_path) == []


def test_a_damaged_file_is_restored_from_the_copy_a_killed_writer_left(tmp_path, caplog):
    path = tmp_path / "f.h5"
    for i, name in enumerate(("a.jpg", "b.jpg")):
        write_features(path, name, _pred(i))
    release_backup(path)
    left = h5_backup.backup_path(path, _dead_pid())
    left.write_bytes(path.read_bytes())  # the copy taken before the killed writer's first write
    _damage(path)
    damaged = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        assert list_names(path) == ["a.jpg", "b.jpg"]
    assert np.array_equal(read_features(path, "b.jpg")["keypoints"], _pred(1)["keypoints"])
    kept = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged  # nothing is thrown away
    assert _backups(tmp_path) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and kept[0].name in warnings[0]
    write_features(path, "c.jpg", _pred(2))  # and it is written to again
    assert list_names(path) == ["a.jpg", "b.jpg", "c.jpg"]
    release_backup(path)


def test_a_readable_file_drops_the_copies_of_dead_writers(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    release_backup(path)
    stale = h5_backup.backup_path(path, _dead_pid())
    stale.write_bytes(b"old")
    before = path.read_bytes()
    h5_backup._checked.clear()  # as a new process, which checks the file at its first open
    assert list_names(path) == ["a.jpg"]
    assert not stale.exists() and path.read_bytes() == before


def test_a_live_process_copy_is_never_used_and_the_damage_is_reported(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    assert h5_backup.backup_path(path).exists()  # ours: this process is alive, so no kill damaged it
    _damage(path)
    damaged = path.read_bytes()
    h5_backup._checked.clear()
    with pytest.raises(H5FileError, match=f"{path}"):
        list_names(path)
    assert path.read_bytes() == damaged  # left untouched, as every damaged file without a copy
    release_backup(path)


def test_no_copy_without_room_or_when_turned_off(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    release_backup(path)
    monkeypatch.setattr(h5_backup, "free_bytes", lambda p: 2 * path.stat().st_size + files.min_free_bytes() - 1)
    write_features(path, "b.jpg", _pred(1))
    assert _backups(tmp_path) == []  # the write itself goes on
    monkeypatch.setattr(h5_backup, "free_bytes", files.free_bytes)
    monkeypatch.setenv(BACKUP_ENV, "0")
    h5_backup._taken.clear()
    write_features(path, "c.jpg", _pred(2))
    assert _backups(tmp_path) == [] and list_names(path) == ["a.jpg", "b.jpg", "c.jpg"]
