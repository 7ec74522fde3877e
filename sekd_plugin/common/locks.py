"""One process at a time: the lock of a work folder and of a training run folder (:mod:`filelock`).

Two benchmark runs into one ``--work`` folder would share its cached features, matches and
COLMAP databases (one "succeeds" with a disk I/O error), and two trainers in one run folder
would overwrite each other's checkpoints. :class:`ProcessLock` holds a lock file
(``fcntl.flock`` through filelock): the kernel releases it when the holder ends, killed or not,
so a lock file left on disk never blocks. A second process waits (saying for whom, once) or
is refused at once; ``$SEKD_PLUGIN_LOCK_TIMEOUT`` (seconds) bounds the wait of both. A refusal
is one line naming the folder and, where this machine can tell (Linux ``/proc``), the holder.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import UserError

logger = logging.getLogger(__name__)

LOCK_NAME = ".sekd_plugin.lock"
TIMEOUT_ENV = "SEKD_PLUGIN_LOCK_TIMEOUT"


class FolderLockedError(UserError):
    """Another process holds the folder (the message names it and, where known, the holder)."""


def holders(path: str | os.PathLike) -> list[int]:
    """Ids of the other local processes that have ``path`` open (Linux ``/proc``; else [])."""
    try:
        target = os.path.realpath(path)
        pids = [p for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            if any(os.path.realpath(fd) == target for fd in (pid / "fd").iterdir()):
                found.append(int(pid.name))
        except OSError:  # gone, or not ours to inspect
            continue
    return sorted(found)


def holders_text(path: str | os.PathLike) -> str:
    """``process 123 (python -m ...)``, or what can be said when no holder can be named."""
    names = []
    for pid in holders(path):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = ""
        cmd = " ".join(cmd.split())  # one line, whatever the command held
        names.append(f"{pid} ({cmd[:120]})" if cmd else str(pid))
    return ("process " + ", ".join(names)) if names else \
        "a process this machine cannot name (another user, host or container)"


def timeout_s(default: float) -> float:
    """``$SEKD_PLUGIN_LOCK_TIMEOUT`` in seconds (``default`` when unset; -1 waits for ever)."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        raise FolderLockedError(f"${TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None


class ProcessLock:
    """``path`` held by this process between :meth:`acquire` and :meth:`release` (or ``with``).

    ``wait``: wait for the holder (by default for ever) instead of refusing at once; either
    way ``$SEKD_PLUGIN_LOCK_TIMEOUT`` sets how long. ``refusal`` is the message after
    ``<what> is in use by <holder>``; ``error`` the exception raised with it.
    """

    def __init__(self, path: str | os.PathLike, what: str, refusal: str, error: type[Exception] = FolderLockedError,
                 wait: bool = True):
        self.path, self.what, self.refusal, self.error, self.wait = Path(path), what, refusal, error, wait
        self.lock: FileLock | None = None

    def acquire(self) -> None:
        timeout = timeout_s(-1.0 if self.wait else 0.0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if timeout != 0:
                logger.warning("waiting for %s, which is using %s", holders_text(self.path), self.what)
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                raise self.error(f"{self.what} is in use by {holders_text(self.path)}; {self.refusal}") from None
        self.lock = lock

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> "ProcessLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "") -> Iterator[Path]:
    """Hold the work folder ``folder`` (created if needed) within the block: a second run waits
    for the first and goes on when it is done, reusing what it cached. ``what`` names the work
    in messages (e.g. ``fountain-P11/colmap-sift``)."""
    folder = Path(folder)
    label = f"{what} ({folder})" if what else str(folder)
    with ProcessLock(folder / LOCK_NAME, label, "another run into the same work folder; "
                     "wait for it to finish or use another --work"):
        yield folder / LOCK_NAME
