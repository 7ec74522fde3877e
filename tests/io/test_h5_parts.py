"""sekd_plugin.io.h5_parts: the one write path (finished parts, atomic publish), and the
regressions of issue 34's D1 (concurrent openers of a file left by a killed writer lost it)
and D6 (a kill during a copy left a temporary file for ever)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sekd_plugin.common.errors import DiskFullError
from sekd_plugin.io import h5_parts
from sekd_plugin.io.h5 import (PartWriter, features_entry, finished_parts, list_names, publish, read_features,
                               write_features)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pred(seed):
    rng = np.random.default_rng(seed)
    return {"keypoints": rng.random((4, 2), dtype=np.float32), "descriptors": rng.random((8, 4), dtype=np.float32)}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _python(code, *args, **kw):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env, cwd=ROOT, **kw)


def _beside(path):
    """What is on disk beside ``path``, its 0-byte lock file left out."""
    lock = h5_parts.lock_path(path)
    assert not lock.exists() or lock.stat().st_size == 0
    return sorted(p.name for p in path.parent.iterdir() if p != lock)


def test_entries_reach_the_file_only_when_published(tmp_path):
    path = tmp_path / "f.h5"
    writer = PartWriter(path, "features", {"model": "x"})
    for i, name in enumerate(("a.jpg", "sub/b.jpg")):
        writer.put(**features_entry(name, _pred(i)))
    writer.close()
    assert not path.exists()  # no user file before the first publish
    parts = finished_parts(path)
    assert parts and all(not p.name.startswith(".") for p in parts)
    assert sorted(n for p in parts for n in list_names(p)) == ["a.jpg", "sub/b.jpg"]
    assert publish(path, "features", {"model": "x"}) == 2
    assert list_names(path) == ["a.jpg", "sub/b.jpg"] and not finished_parts(path)
    assert np.array_equal(read_features(path, "sub/b.jpg")["keypoints"], _pred(1)["keypoints"])
    assert _beside(path) == ["f.h5"]  # parts folder gone


def test_a_writer_closes_parts_without_waiting_for_the_next_entry(tmp_path):
    path = tmp_path / "f.h5"
    writer = PartWriter(path, "features")
    writer.put(**features_entry("a.jpg", _pred(0)))
    deadline = time.monotonic() + 10 * h5_parts.PART_S
    while not finished_parts(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [n for p in finished_parts(path) for n in list_names(p)] == ["a.jpg"]  # what a SIGKILL now keeps
    writer.close()


def test_publish_replaces_the_other_orders_of_a_pair(tmp_path):
    from sekd_plugin.io.h5 import get_matches, write_matches

    path = tmp_path / "m.h5"
    write_matches(path, "b", "a", np.array([0, -1]), np.ones(2))
    write_matches(path, "a", "b", np.array([1, 0]), np.ones(2))
    assert list_names_of_matches(path) == ["a/b"]
    assert get_matches(path, "a", "b")[0].tolist() == [[0, 1], [1, 0]]


def list_names_of_matches(path):
    import h5py

    with h5py.File(path, "r") as fd:
        out = []
        fd.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Group) and "matches0" in o else None)
        return out


def test_a_full_disk_leaves_the_file_and_nothing_else(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    before = _sha(path)
    from sekd_plugin.common import files

    monkeypatch.setattr(files, "free_bytes", lambda p: 4096)
    writer = PartWriter(path, "features", unit="images")
    writer.put(**features_entry("b.jpg", _pred(1)))
    with pytest.raises(DiskFullError, match=rf"^{path}: no space left on device \(0 images written"):
        writer.close()
    assert _sha(path) == before and _beside(path) == ["f.h5"]


# ------------------------------------------------------------------ D6: a kill leaves nothing for ever

KILLED_PUBLISH = """
import shutil, sys, time
from sekd_plugin.io import h5_merge
from sekd_plugin.io.h5 import features_entry, write_features
import numpy as np

copy = shutil.copyfile

def slow_copy(src, dst):  # the merged copy is being built when the kill comes
    copy(src, dst)
    print("copying", flush=True)
    time.sleep(60)

h5_merge.shutil.copyfile = slow_copy
write_features(sys.argv[1], "b.jpg", {"keypoints": np.ones((3, 2), np.float32)})
"""


def test_d6_a_kill_during_a_publish_leaves_the_file_and_its_temporary_is_removed(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    before = _sha(path)
    proc = _python(KILLED_PUBLISH, path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "copying"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _beside(path)
    assert f".f.h5.tmp{proc.pid}" in left and "f.h5.parts" in left  # what the kill left: a copy, its part
    assert _sha(path) == before and list_names(path) == ["a.jpg"]  # the file is as it was
    write_features(path, "c.jpg", _pred(2))  # the next write publishes the dead process's part too
    assert list_names(path) == ["a.jpg", "b.jpg", "c.jpg"]
    assert _beside(path) == ["f.h5"]


def test_d6_a_kill_while_writing_a_part_leaves_a_temporary_the_next_publish_removes(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path, "a.jpg", _pred(0))
    folder = h5_parts.parts_dir(path)
    folder.mkdir()
    dead = folder / f".{h5_parts._HOST}_{_dead_pid()}_0123abcd_000000.h5.tmp"
    dead.write_bytes(b"\x89HDF half written")
    live = folder / f".{h5_parts._HOST}_{os.getpid()}_0123abcd_000001.h5.tmp"  # a live writer's: kept
    live.write_bytes(b"")
    publish(path, "features")
    assert not dead.exists() and live.exists() and list_names(path) == ["a.jpg"]
    live.unlink()
    publish(path, "features")
    assert _beside(path) == ["f.h5"]


# ------------------------------------------------------------------ D1: concurrent openers never lose the file

READER = """
import sys
from sekd_plugin.io.h5 import list_names, read_features
names = list_names(sys.argv[1])
for name in names:
    read_features(sys.argv[1], name)
print(len(names))
"""

WRITER = """
import sys
import numpy as np
from sekd_plugin.io.h5 import write_features
for i in range(4):
    write_features(sys.argv[1], f"{sys.argv[2]}-{i}.jpg", {"keypoints": np.full((3, 2), i, np.float32)})
"""


@pytest.mark.integration
def test_d1_concurrent_readers_of_a_file_a_killed_writer_left_never_change_it(tmp_path):
    path = tmp_path / "f.h5"
    for i in range(3):
        write_features(path, f"{i}.jpg", _pred(i))
    # what a writer killed mid-run leaves: a finished part, a half-written part, a merge's copy
    write_features(tmp_path / "part.h5", "3.jpg", _pred(3))
    h5_parts.parts_dir(path).mkdir()
    os.replace(tmp_path / "part.h5", h5_parts.parts_dir(path) / "x_1_0_000000.h5")
    (h5_parts.parts_dir(path) / f".{h5_parts._HOST}_{_dead_pid()}_0_000001.h5.tmp").write_bytes(b"\x89HDF")
    (tmp_path / f".f.h5.tmp{_dead_pid()}").write_bytes(b"\x89HDF")
    before = _sha(path)
    readers = [_python(READER, path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [r.communicate(timeout=120) for r in readers]
    assert all(r.returncode == 0 for r in readers), [e for _, e in results]
    assert [int(o) for o, _ in results] == [3] * 8
    assert _sha(path) == before  # readers never write, restore or delete


def test_d1_concurrent_writers_of_one_file_lose_no_entry(tmp_path):
    path = tmp_path / "f.h5"
    writers = [_python(WRITER, path, w, stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    assert list_names(path) == sorted(f"{w}-{i}.jpg" for w in range(4) for i in range(4))
    assert _beside(path) == ["f.h5"]
