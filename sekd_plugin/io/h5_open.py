"""Opening hloc .h5 files: kind checks, HDF5's file lock, and the completion marks.

One place decides whether a path is a features / matches file (the ``sekd_plugin_format``
root attribute, else hloc's rule: a group holding datasets is an entry), waits while another
process holds HDF5's lock (naming it, from ``/proc``, when the wait runs out) and turns h5py's
errors into one-line :class:`H5FileError` / :class:`~sekd_plugin.common.errors.DiskFullError`.
See :mod:`sekd_plugin.io.h5` for the layout and the completeness guarantee.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import h5py

from ..common.errors import InputError
from ..common.files import disk_full_error, ensure_free_space, is_disk_full, quiet_disk_full_reports
from ..common.locks import holders_text
from ..common.text import first_line

logger = logging.getLogger(__name__)

FORMAT_ATTR = "sekd_plugin_format"
LOCK_TIMEOUT_ENV = "SEKD_PLUGIN_H5_LOCK_TIMEOUT"  # seconds to wait for another process's lock
DEFAULT_LOCK_TIMEOUT = 120.0
COMPLETE_ATTR = "complete"
# A dataset that identifies a group as an entry of each kind in files without FORMAT_ATTR.
_KIND_DATASETS = {
    "features": ("keypoints", "descriptors", "global_descriptor"),
    "matches": ("matches0",),
}


class H5FileError(InputError):
    """An .h5 file is not HDF5, is of another kind, or is missing an entry."""


def list_entries(fd: h5py.File, complete_only: bool) -> list[str]:
    """Names of the groups holding datasets (optionally only the complete ones)."""
    names = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in obj.values()):
            if not complete_only or obj.attrs.get(COMPLETE_ATTR, 0) == 1:
                names.append(name)

    fd.visititems(visit)
    return sorted(names)


def is_complete(fd: h5py.File, key: str) -> bool:
    if key not in fd or not isinstance(fd[key], h5py.Group):
        return False
    if FORMAT_ATTR not in fd.attrs:  # written by hloc: an entry is complete when present
        return any(isinstance(v, h5py.Dataset) for v in fd[key].values())
    return fd[key].attrs.get(COMPLETE_ATTR, 0) == 1


def check_entries(fd: h5py.File, path: Path, kind: str, entries: list[str]) -> None:
    """Raise if an entry of an unmarked file lacks the datasets of ``kind``."""
    markers = _KIND_DATASETS[kind]
    for name in entries:
        if not any(m in fd[name] for m in markers):
            raise H5FileError(
                f"{path} is an HDF5 file but not an hloc {kind} file "
                f"(group '{name}' has none of the datasets {list(markers)})"
            )


def _check_kind(fd: h5py.File, path: Path, kind: str, adopt: bool) -> None:
    found = fd.attrs.get(FORMAT_ATTR)
    if isinstance(found, bytes):
        found = found.decode()
    if found is not None:
        if found != kind:
            raise H5FileError(f"{path} is a {found} file, expected a {kind} file")
        return
    if not adopt:
        return
    # No marker: empty, or written by hloc. Check the entries look right, then adopt them.
    entries = list_entries(fd, complete_only=False)
    check_entries(fd, path, kind, entries)
    for name in entries:
        fd[name].attrs[COMPLETE_ATTR] = 1
    fd.attrs[FORMAT_ATTR] = kind


# The HDF5 1.8 file format: read by every HDF5 since 2008 and, unlike the newest format, no
# "open for write" superblock flags that a killed writer would leave set.
LIBVER = ("earliest", "v108")


@contextmanager
def open_h5(path: str | os.PathLike, mode: str, kind: str) -> Iterator[h5py.File]:
    """Open an hloc ``kind`` ("features" or "matches") file with a clear error if it is not one.

    ``mode`` is ``"r"`` or ``"a"`` (created when missing; a 0-byte file counts as missing);
    ``"a"`` is for files private to one process (parts, a merge's temporary copy): a user's
    file is only ever replaced (:mod:`sekd_plugin.io.h5_parts`).
    """
    path = Path(path)
    if path.is_dir():
        raise H5FileError(f"expected a {kind} .h5 file, got a directory: {path}")
    if mode == "r" and not path.exists():
        raise H5FileError(f"{kind} file not found: {path}")
    if mode == "a" and path.exists() and path.is_file() and path.stat().st_size == 0:
        path.unlink()  # e.g. a run killed while creating it: nothing to lose
    if path.exists() and not h5py.is_hdf5(path):
        raise H5FileError(f"{path} is not an HDF5 file (or it is damaged); delete it or choose another output")
    if mode != "r":
        ensure_free_space(path)  # a full disk can damage an HDF5 file: never open one for writing there
        quiet_disk_full_reports()  # h5py reports a failed write of a released object only as "ignored"
    fd = _open_waiting(path, mode)
    done = False
    try:
        _check_kind(fd, path, kind, adopt=(mode != "r"))
        yield fd
        done = True
    except (RuntimeError, OSError) as error:  # h5py's errors for damaged metadata or data
        if is_disk_full(error):  # the file is fine up to here: say what happened
            raise disk_full_error(path, error) from None
        raise H5FileError(f"{path}: damaged HDF5 file ({first_line(error)})") from None
    except KeyError as error:
        if not str(error).strip("'\"").startswith("Unable to"):  # not h5py's: a bug, keep it
            raise
        if is_disk_full(error):
            raise disk_full_error(path, error) from None
        raise H5FileError(f"{path}: damaged HDF5 file ({first_line(error)})") from None
    finally:
        try:
            fd.close()
        except (RuntimeError, OSError) as error:  # closing a damaged file: the error above says it
            if done and is_disk_full(error):
                raise disk_full_error(path, error) from None


def _open_waiting(path: Path, mode: str) -> h5py.File:
    """``h5py.File(path, mode)``, waiting while another process holds HDF5's file lock.

    HDF5 locks a file for as long as a writer has it open (ours only write private files; this
    waits for other programs, e.g. hloc writing the file in place); a lock held longer than
    ``$SEKD_PLUGIN_H5_LOCK_TIMEOUT`` seconds (default 120) is an :class:`H5FileError` that
    names the process holding it when it can be known (same machine, Linux).
    """
    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return h5py.File(path, mode, libver=LIBVER)
        except OSError as error:
            if is_disk_full(error):
                raise disk_full_error(path, error) from None
            if "unable to lock file" not in str(error).lower():  # not e.g. "sblock->base_addr"
                raise H5FileError(f"cannot open {path} as HDF5: {first_line(error)}") from None
            if time.monotonic() >= deadline:
                who = holders_text(path)
                raise H5FileError(
                    f"another process holds {path} open (HDF5 file lock): {who}; waited {timeout:g} s. "
                    f"Wait for it to finish or write to another file (${LOCK_TIMEOUT_ENV} sets the wait)"
                ) from None
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


def check_name(name: str) -> None:
    """Raise :class:`H5FileError` when ``name`` cannot be an HDF5 group name (not valid UTF-8).

    Python turns undecodable bytes of file names into lone surrogates; HDF5 names are UTF-8.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise H5FileError(f"the file name {shown!r} is not valid UTF-8 and cannot be stored in an .h5 file "
                          "(HDF5 names are UTF-8); rename the file") from None


def entry_name(name: str) -> str:
    """The key under which HDF5 stores group ``name``: ``/``-separated, without empty or ``.``
    parts (``./a.jpg``, ``/abs/a.jpg`` and ``x//a.jpg`` are stored as ``a.jpg``, ``abs/a.jpg``
    and ``x/a.jpg``); what :func:`list_names` returns for it."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))
