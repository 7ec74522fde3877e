"""sekd_plugin.common.locks: one lock (filelock) for work folders and training run folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sekd_plugin.common.locks import LOCK_NAME, FolderLockedError, ProcessLock, folder_lock
from sekd_plugin.train.state import RunError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _holder(path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from filelock import FileLock
        lock = FileLock({str(path)!r})
        lock.acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_held_folder_is_refused_after_the_timeout_in_one_line_naming_the_holder(tmp_path, monkeypatch):
    holder = _holder(tmp_path / LOCK_NAME)
    try:
        monkeypatch.setenv("SEKD_PLUGIN_LOCK_TIMEOUT", "0.5")
        start = time.monotonic()
        with pytest.raises(FolderLockedError) as error:
            with folder_lock(tmp_path, "scene/method"):
                pass
        assert time.monotonic() - start >= 0.5
        message = str(error.value)
        assert "\n" not in message and "scene/method" in message and str(tmp_path) in message
        assert f"process {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path, monkeypatch):
    holder = _holder(tmp_path / LOCK_NAME)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the lock does not
    monkeypatch.setenv("SEKD_PLUGIN_LOCK_TIMEOUT", "0")
    with folder_lock(tmp_path):
        pass


def test_a_run_folder_lock_refuses_at_once_and_is_free_after_release(tmp_path, monkeypatch):
    monkeypatch.delenv("SEKD_PLUGIN_LOCK_TIMEOUT", raising=False)
    holder = _holder(tmp_path / ".lock")
    try:
        lock = ProcessLock(tmp_path / ".lock", str(tmp_path), "one run folder holds one run", error=RunError,
                           wait=False)
        with pytest.raises(RunError, match=rf"in use by process {holder.pid}"):
            lock.acquire()
    finally:
        holder.kill()
        holder.wait()
    with lock:
        with pytest.raises(RunError):  # a second holder in this process is refused too
            ProcessLock(tmp_path / ".lock", "x", "y", error=RunError, wait=False).acquire()
    with lock:
        pass


def test_a_bad_timeout_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SEKD_PLUGIN_LOCK_TIMEOUT", "soon")
    with pytest.raises(FolderLockedError, match="SEKD_PLUGIN_LOCK_TIMEOUT must be a number of seconds"):
        with folder_lock(tmp_path):
            pass
