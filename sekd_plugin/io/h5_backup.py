"""A copy of each .h5 file as it was before a process wrote to it, for the one damage that the
completion marks cannot prevent: a hard kill (SIGKILL, the OOM killer, power loss) while HDF5
writes metadata. HDF5 has no journal, so such a kill can leave the whole file unreadable.

* Before a process first writes a file (and again every :data:`REFRESH_S` seconds, or 20 times
  the copy's duration if longer, while it keeps writing), it copies the file, just flushed under
  its write lock, to ``<file>.backup-<pid>`` (temporary name, fsync, rename).
* The copy is deleted when the job that wrote the file ends (:func:`release`; at exit for
  other writers), also when it ends with an exception: only a hard kill leaves one behind.
* Whoever next opens the file checks it once (:func:`restore_if_damaged`): a damaged file is
  moved to ``<file>.damaged-<time>`` and the newest readable copy left by a dead process takes
  its place, with one warning. The entries written after that copy are missing and are
  computed again on resume. A readable file makes such copies redundant: they are deleted.
* Only copies of dead processes are used: a live writer's file is not damaged by a kill.
* No copy is made when the disk lacks twice its size plus the safety margin, or with
  ``$SEKD_PLUGIN_H5_BACKUP=0``; then a hard kill can still damage the file, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import time
from pathlib import Path

import h5py

from ..common.errors import DiskFullError
from ..common.files import free_bytes, min_free_bytes, write_atomic

logger = logging.getLogger(__name__)

BACKUP_ENV = "SEKD_PLUGIN_H5_BACKUP"  # "0": no copies
REFRESH_S = 60.0  # at least this long between two copies of one file by one process
_SUFFIX = ".backup-"

_taken: dict[Path, tuple[float, float]] = {}  # file -> (monotonic time of the copy, refresh interval)
_checked: dict[Path, tuple[int, int, int]] = {}  # file -> (inode, size, mtime_ns) when last known readable


def backup_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f"{path.name}{_SUFFIX}{os.getpid() if pid is None else pid}")


def _enabled() -> bool:
    return os.environ.get(BACKUP_ENV, "1").strip() not in ("0", "false", "no", "off")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _left_behind(path: Path) -> list[Path]:
    """Copies of ``path`` whose process is dead, newest first."""
    found = []
    for copy in path.parent.glob(f"{path.name}{_SUFFIX}*"):
        pid = copy.name[len(path.name) + len(_SUFFIX):]
        stamp = _stamp(copy)  # None: another process just removed it
        if pid.isdigit() and stamp is not None and not _pid_alive(int(pid)):
            found.append((stamp[2], copy))
    return [copy for _, copy in sorted(found, reverse=True)]


def _probe(path: Path) -> str:
    """"ok" (opens, every object lists), "busy" (a live writer holds HDF5's lock) or "damaged"."""
    try:
        with h5py.File(path, "r") as fd:
            fd.visititems(lambda name, obj: None)
            dict(fd.attrs)
        return "ok"
    except Exception as error:  # noqa: BLE001 - any failure to read is what is being tested
        return "busy" if "unable to lock file" in str(error).lower() else "damaged"


def restore_if_damaged(path: str | os.PathLike) -> None:
    """Replace a damaged ``path`` by the newest readable copy a killed writer left (see module doc)."""
    path = Path(os.path.abspath(path))
    stamp = _stamp(path)
    if stamp is None or _checked.get(path) == stamp:
        return
    copies = _left_behind(path)
    state = _probe(path) if copies else "ok"
    if state == "busy":  # its writer is alive; look again at the next open
        return
    if state == "ok":
        for copy in copies:  # what they saved is in the file
            copy.unlink(missing_ok=True)
        _checked[path] = stamp
        return
    good = next((c for c in copies if _probe(c) == "ok"), None)
    if good is None:
        return  # nothing to restore from: the caller reports the damaged file
    damaged = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, damaged)
    write_atomic(path, lambda tmp: shutil.copyfile(good, tmp))
    for copy in copies:
        copy.unlink(missing_ok=True)
    logger.warning("%s was damaged by a process killed while writing it; restored the copy saved before "
                   "that write (the damaged file is kept as %s); what was written after the copy is computed "
                   "again", path, damaged.name)
    _checked[path] = _stamp(path)


def after_open_for_write(fd: h5py.File, path: str | os.PathLike) -> None:
    """Copy the just-opened ``path`` (flushed, under its write lock) when this process is due to."""
    path = Path(os.path.abspath(path))
    if not _enabled():
        return
    now = time.monotonic()
    last = _taken.get(path)
    if last is not None and now - last[0] < last[1]:
        return
    fd.flush()  # the file on disk is now what the copy must hold
    size = path.stat().st_size
    free = free_bytes(path)
    if free is not None and free < 2 * size + min_free_bytes():  # the copy, and as much again to write
        logger.debug("no room for a copy of %s (%d bytes)", path, size)
        _taken[path] = (now, REFRESH_S)
        return
    start = time.perf_counter()
    try:
        write_atomic(backup_path(path), lambda tmp: shutil.copyfile(path, tmp))
    except (DiskFullError, OSError) as error:
        logger.debug("no copy of %s: %s", path, error)
        _taken[path] = (now, REFRESH_S)
        return
    _taken[path] = (now, max(REFRESH_S, 20.0 * (time.perf_counter() - start)))  # <= 5 % of the time


def after_close(path: str | os.PathLike) -> None:
    """This process's own write left ``path`` readable: no need to check it at the next open."""
    path = Path(os.path.abspath(path))
    _checked[path] = _stamp(path)


def release(path: str | os.PathLike) -> None:
    """Delete this process's copy of ``path``: the job that wrote it has ended (successfully or
    with an exception; either way the file is readable)."""
    path = Path(os.path.abspath(path))
    _taken.pop(path, None)
    backup_path(path).unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    for path in list(_taken):
        try:
            release(path)
        except OSError:
            pass
