"""One process at a time in a work folder (an ``fcntl`` lock file, released when the holder ends).

Two benchmark runs into one ``--work`` folder share its per-scene / per-method folders (cached
features, matches, COLMAP databases); without a lock both write the same SQLite database and
one "succeeds" with a disk I/O error. :func:`folder_lock` takes ``<folder>/.sekd_plugin.lock``:
a second run waits for the first (saying whom it waits for, once) and goes on when it is done,
reusing what it cached; with ``$SEKD_PLUGIN_LOCK_TIMEOUT`` (seconds) it is refused after that
long, naming the folder and the holder. The kernel releases the lock when the holder exits,
killed or not, so a stale file never blocks.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from .errors import UserError

logger = logging.getLogger(__name__)

LOCK_NAME = ".sekd_plugin.lock"
TIMEOUT_ENV = "SEKD_PLUGIN_LOCK_TIMEOUT"


class FolderLockedError(UserError):
    """Another process holds the folder (the message names it and the holder's process id)."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid else "another process"


def _timeout() -> float | None:
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        raise FolderLockedError(f"${TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "") -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for this process within the block; see the module
    docstring. ``what`` names the work in messages (e.g. ``fountain-P11/colmap-sift``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        timeout, start, said = _timeout(), time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                label = f"{what} ({folder})" if what else str(folder)
                if timeout is not None and time.monotonic() - start >= timeout:
                    raise FolderLockedError(
                        f"{label} is in use by {_holder(path)} (another run into the same work folder); "
                        "wait for it to finish or use another --work") from None
                if not said:
                    logger.warning("waiting for %s, which is using %s", _holder(path), label)
                    said = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
