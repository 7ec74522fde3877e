"""Helpers of the fault suite: run a package CLI in a subprocess and SIGKILL it mid-work."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sekd_plugin
from sekd_plugin.io.h5 import finished_parts

PACKAGE_ROOT = Path(sekd_plugin.__file__).resolve().parents[1]


def cli_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def run_cli(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run to the end (the tested package first on the path, whatever the working directory)."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def kill_during_work(cmd: list[str], cwd: Path, watch: Path, rng: random.Random, max_delay: float = 1.5,
                     timeout: float = 300) -> bool:
    """Start ``cmd``, wait until it has changed ``watch`` (a file or folder it writes), then
    SIGKILL it after a random delay. Returns False when it finished before the kill."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stamp():
        if not watch.exists():
            return None
        if watch.is_file():
            return watch.stat().st_mtime_ns, watch.stat().st_size
        found = []
        for p in watch.rglob("*"):
            try:
                found.append((str(p), p.stat().st_mtime_ns))
            except OSError:  # renamed or removed meanwhile
                continue
        return tuple(sorted(found))

    before, start = stamp(), time.monotonic()
    while proc.poll() is None and stamp() == before and time.monotonic() - start < timeout:
        time.sleep(0.02)  # watch by stat only: opening the file would contend for its lock
    time.sleep(rng.uniform(0, max_delay))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def finished_files(path: Path) -> list[Path]:
    """Where the finished entries of an output are: the output (when there is one) and its
    finished parts, which the next run publishes into it before anything else."""
    return [p for p in [path, *finished_parts(path)] if p.exists()]
