"""The one write path of features and matches files: finished parts, then an atomic publish.

No process writes a user's ``<file>`` in place. A writer puts its entries into parts of its
own, ``<file>.parts/<host>_<pid>_<token>_<n>.h5``: a part is built under a hidden temporary
name, every group marked ``complete = 1``, fsynced and renamed, so a part that exists is
finished and immutable, whoever reads it. Finished entries reach ``<file>`` only through
:func:`publish`: under the file's lock (``.<file>.lock``, :mod:`filelock`) the file and the
finished parts are merged into a temporary copy that replaces the file (``os.replace``,
:func:`~sekd_plugin.io.h5_merge.merge_files`), then the merged parts are deleted.

A SIGKILL therefore leaves the file as it was before or after a publish, never half written;
finished parts, which the next run publishes before it starts; and at most one temporary file
of the dead process, which the next publish deletes. A writer closes a part at most
:data:`PART_S` seconds after its first entry: a hard kill costs at most that much work (plus
what was queued), computed again on resume.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import queue
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np
from filelock import FileLock

from ..common.errors import DiskFullError
from ..common.files import disk_full_error, ensure_free_space, is_disk_full
from .h5_merge import REPLACES_ATTR, merge_files
from .h5_open import COMPLETE_ATTR, FORMAT_ATTR, LIBVER, open_h5
from .provenance import CONF_ATTR

PART_S = 0.5  # a part is closed at most this long after its first entry
PART_BYTES = 64 * 2**20  # ... or once its entries reach this size

_HOST = socket.gethostname().replace("_", "-")
_TOKEN = secrets.token_hex(4)  # a reused process id never reuses a part name
_numbers = itertools.count()

# (key, arrays, attributes by dataset name, keys it replaces)
Entry = tuple[str, dict[str, np.ndarray], dict[str, dict[str, Any]], tuple[str, ...]]


def parts_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".parts")


def lock_path(path: str | os.PathLike) -> Path:
    """The publish lock of ``path``: a 0-byte hidden file beside it, kept (see :func:`publish`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def finished_parts(path: str | os.PathLike) -> list[Path]:
    """The finished parts of ``path`` there are now, in the order they were written per writer."""
    folder = parts_dir(path)
    try:  # another process's publish may remove the folder at any moment: then there are none
        return sorted(p for p in folder.glob("*.h5") if not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _dead(host: str, pid: str) -> bool:
    """A process of this host that no longer runs (another host's is never judged dead)."""
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _clean(path: Path) -> None:
    """Delete what dead writers left unfinished (called under the publish lock)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):  # a publish's copy: publishers hold the lock
        tmp.unlink(missing_ok=True)
    folder = parts_dir(path)
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:  # ".<host>_<pid>_<token>_<n>.h5.tmp"
        fields = tmp.name[1:].rsplit("_", 3)
        if len(fields) == 4 and _dead(fields[0], fields[1]):
            tmp.unlink(missing_ok=True)


def publish(path: str | os.PathLike, kind: str, conf: dict[str, Any] | None = None, drop: bool = False,
            force: bool = False) -> int:
    """Merge the finished parts of ``path`` into it atomically and delete them; returns the
    number of entries published.

    ``conf`` is recorded as the file's provenance (None: the file's own is kept); ``drop``
    deletes the parts without publishing them; ``force`` rewrites the file even without parts
    (to record ``conf``). The lock file stays: deleting a lock that another process may be
    waiting on would let two publishers in at once.
    """
    path = Path(path)
    with FileLock(str(lock_path(path))):
        _clean(path)
        parts = finished_parts(path)
        count = merge_files(parts, path, kind, conf=conf) if (parts and not drop) or force else 0
        for part in parts:
            part.unlink(missing_ok=True)
        try:
            parts_dir(path).rmdir()  # fails while a writer has a part under way: it is its folder too
        except OSError:
            pass
    return count


def _new_temporary(folder: Path) -> tuple[Path, Path]:
    """A fresh (temporary, final) name pair in ``folder``, the temporary file created."""
    name = f"{_HOST}_{os.getpid()}_{_TOKEN}_{next(_numbers):06d}.h5"
    tmp = folder / f".{name}.tmp"
    while True:  # a publish removes the folder when it finds it empty: make it again
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return tmp, folder / name
        except FileNotFoundError:
            continue


def write_part(path: str | os.PathLike, kind: str, entries: list[Entry], conf: dict[str, Any] | None = None) -> Path:
    """Write ``entries`` as one finished part of ``path``; returns the part.

    A full disk (checked first: the entries' size plus the margin must be free) raises a
    :class:`DiskFullError` naming ``path``; nothing is left behind on any error.
    """
    path = Path(path)
    needed = 2 * sum(np.asarray(a).nbytes for _, arrays, _, _ in entries for a in arrays.values()) + 64 * 1024
    ensure_free_space(path, needed)
    tmp, final = _new_temporary(parts_dir(path))
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as fd:
            fd.attrs[FORMAT_ATTR] = kind
            if conf is not None:
                fd.attrs[CONF_ATTR] = json.dumps(conf, sort_keys=True)
            for key, arrays, attrs, replaces in entries:
                if key in fd:  # the same entry twice in one part: the later one counts
                    del fd[key]
                group = fd.create_group(key)
                for name, value in arrays.items():
                    group.create_dataset(name, data=value)
                for name, values in attrs.items():
                    if name in group:
                        group[name].attrs.update(values)
                if replaces:
                    group.attrs[REPLACES_ATTR] = list(replaces)
                group.attrs[COMPLETE_ATTR] = 1
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)  # finished from here on
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(path, error) from None
        raise
    return final


def write_entry(path: str | os.PathLike, kind: str, key: str, arrays: dict[str, np.ndarray],
                replace: Iterable[str] = (), attrs: dict[str, dict[str, Any]] | None = None) -> None:
    """Write one entry into ``path`` now: a part of one entry, published (a copy of the file per
    call: to write many entries, use a :class:`PartWriter` and publish once)."""
    path = Path(path)
    if path.exists() and path.stat().st_size:
        with open_h5(path, "r", kind):
            pass  # a foreign or damaged file fails here, before anything is written
    write_part(path, kind, [(key, arrays, attrs or {}, tuple(replace))])
    publish(path, kind)


class PartWriter:
    """Writes the entries :meth:`put` to it into finished parts of ``path``, in a background
    thread (so that writing overlaps the next computation), one part per :data:`PART_S` seconds
    or :data:`PART_BYTES`. A write error is re-raised in the caller's thread at the next
    ``put`` or at :meth:`close`; a full disk as a :class:`DiskFullError` naming ``path`` with
    the count of entries written (``<written> <unit> written``)."""

    def __init__(self, path: str | os.PathLike, kind: str, conf: dict[str, Any] | None = None,
                 depth: int = 2, unit: str = "entries"):
        self.path, self.kind, self.conf, self.unit = Path(path), kind, conf, unit
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, depth))
        self.error: BaseException | None = None
        self.written = 0
        self.thread = threading.Thread(target=self._run, name=f"{kind}-part-writer", daemon=True)
        self.thread.start()

    def put(self, key: str, arrays: dict[str, np.ndarray], attrs: dict[str, dict[str, Any]] | None = None,
            replace: Iterable[str] = ()) -> None:
        self._raise()
        self.queue.put((key, arrays, attrs or {}, tuple(replace)))

    def close(self) -> None:
        """Write what is queued (also on interruption: it is computed already); idempotent."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self._raise()

    def _run(self) -> None:
        pending: list[Entry] = []
        size, deadline = 0, 0.0
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()) if pending else None)
            except queue.Empty:
                item = "flush"
            if item is None or item == "flush" or size >= PART_BYTES:
                if pending and self.error is None:
                    self._write(pending)
                pending, size = [], 0
            if item is None:
                return
            if item != "flush":
                if not pending:
                    deadline = time.monotonic() + PART_S
                pending.append(item)
                size += sum(np.asarray(a).nbytes for a in item[1].values())

    def _write(self, entries: list[Entry]) -> None:
        try:
            write_part(self.path, self.kind, entries, self.conf)
            self.written += len(entries)
        except DiskFullError:
            self.error = DiskFullError(self.path, written=self.written, unit=self.unit)
        except BaseException as error:  # re-raised in the caller's thread
            self.error = error

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def record_conf(path: str | os.PathLike, conf: dict[str, Any], kind: str = "features") -> None:
    """Store ``conf`` (JSON-serialisable) as the file's provenance (creating the file), by an
    atomic publish like every write."""
    publish(path, kind, conf, force=True)
