"""hloc's feature and match .h5 files, written so that an interruption loses at most
the image (or pair) being written.

Layout (identical to hloc, see HLOC_CONTRACT.md):

* features: one group per image name (``/`` in a name makes nested groups) holding
  ``keypoints`` N x 2, ``scores`` N, ``descriptors`` D x N, ``image_size`` (W, H) and any
  other array the extractor returned; ``keypoints`` may carry an ``uncertainty`` attribute.
* matches: one group per pair, ``names_to_pair(name0, name1)`` (a nested group
  ``name0_flat/name1_flat``), holding ``matches0`` (N0, index into image 1 or -1) and
  ``matching_scores0`` (N0, float16).

Completeness guarantee
----------------------
Every group is written in its own open -> write -> flush -> close cycle, and the attribute
``complete = 1`` is set on the group as the **last** write. Readers (``list_names``,
``read_features``, ``get_matches``...) treat a group without it as missing, and writers
delete such a group before writing it again. A Python-level interruption (an exception,
Ctrl-C, SIGTERM turned into an exception) therefore leaves every earlier group intact and
the current one marked incomplete. HDF5 has no journal: a hard kill (SIGKILL, power loss)
while the file is being closed can still damage it; the window is one image's write.

A full disk is the other way to damage an HDF5 file (a metadata write that fails half way),
so writers never let HDF5 meet one: the file is opened for writing, and every group
written, only while the entry's size plus a safety margin is free
(:func:`sekd_plugin.common.files.ensure_free_space`); otherwise, or when a write fails with
ENOSPC all the same, nothing more is written to the file and a
:class:`~sekd_plugin.common.errors.DiskFullError` names it.

Files written by this module carry a root attribute ``sekd_plugin_format`` ("features" or
"matches"). Files written by hloc itself have no such attribute; they are read with hloc's
rule (a group holding datasets is an entry) and, when appended to, adopted: their entries
are marked complete and the root attribute is added. A file that is not HDF5, or an HDF5
file of another kind, raises :class:`H5FileError` naming the file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import json
import logging
import shutil
import time

import h5py
import numpy as np

from ..common.errors import InputError
from ..common.files import disk_full_error, ensure_free_space, is_disk_full, quiet_disk_full_reports

logger = logging.getLogger(__name__)

FORMAT_ATTR = "sekd_plugin_format"
CONF_ATTR = "sekd_plugin_conf"  # JSON of what produced the entries (conf + weights fingerprint)
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


# --------------------------------------------------------------------------- opening


def _first_line(error: BaseException) -> str:
    text = str(error).strip("'\" \n")
    return text.splitlines()[0][:200] if text else type(error).__name__


def _entries(fd: h5py.File, complete_only: bool) -> list[str]:
    """Names of the groups holding datasets (optionally only the complete ones)."""
    names = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in obj.values()):
            if not complete_only or obj.attrs.get(COMPLETE_ATTR, 0) == 1:
                names.append(name)

    fd.visititems(visit)
    return sorted(names)


def _is_complete(fd: h5py.File, key: str) -> bool:
    if key not in fd or not isinstance(fd[key], h5py.Group):
        return False
    if FORMAT_ATTR not in fd.attrs:  # written by hloc: an entry is complete when present
        return any(isinstance(v, h5py.Dataset) for v in fd[key].values())
    return fd[key].attrs.get(COMPLETE_ATTR, 0) == 1


def _check_entries(fd: h5py.File, path: Path, kind: str, entries: list[str]) -> None:
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
    entries = _entries(fd, complete_only=False)
    _check_entries(fd, path, kind, entries)
    for name in entries:
        fd[name].attrs[COMPLETE_ATTR] = 1
    fd.attrs[FORMAT_ATTR] = kind


# The HDF5 1.8 file format: read by every HDF5 since 2008 and, unlike the newest format, no
# "open for write" superblock flags that a killed writer would leave set (see h5_recovery).
LIBVER = ("earliest", "v108")


def _open_file(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode, libver=LIBVER)
    except OSError as error:
        if "already open for write" not in str(error):
            raise
        # HDF5 took the file lock before reading the flags: no live process has the file
        # open, the flags were left by a writer that was killed. Clear them and go on.
        from .h5_recovery import clear_write_flags

        if not clear_write_flags(path):
            raise
        logger.warning("%s was left open by a process that was killed; reopened it "
                       "(its complete entries are kept)", path)
        return h5py.File(path, mode, libver=LIBVER)


@contextmanager
def open_h5(path: str | os.PathLike, mode: str, kind: str) -> Iterator[h5py.File]:
    """Open an hloc ``kind`` ("features" or "matches") file with a clear error if it is not one.

    ``mode`` is ``"r"`` or ``"a"`` (created when missing; a 0-byte file counts as missing).
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
        raise H5FileError(f"{path}: damaged HDF5 file ({_first_line(error)})") from None
    except KeyError as error:
        if not str(error).strip("'\"").startswith("Unable to"):  # not h5py's: a bug, keep it
            raise
        if is_disk_full(error):
            raise disk_full_error(path, error) from None
        raise H5FileError(f"{path}: damaged HDF5 file ({_first_line(error)})") from None
    finally:
        try:
            fd.close()
        except (RuntimeError, OSError) as error:  # closing a damaged file: the error above says it
            if done and is_disk_full(error):
                raise disk_full_error(path, error) from None


def _holders(path: Path) -> list[int]:
    """Ids of the other local processes that have ``path`` open (Linux ``/proc``; else [])."""
    try:
        target = os.path.realpath(path)
        proc = Path("/proc")
        pids = [p for p in proc.iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
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


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


def _open_waiting(path: Path, mode: str) -> h5py.File:
    """``h5py.File(path, mode)``, waiting while another process holds HDF5's file lock.

    HDF5 locks a file for as long as a writer has it open. Our writers hold it for one image
    (or pair) at a time, so two runs writing one file take turns; a lock held longer than
    ``$SEKD_PLUGIN_H5_LOCK_TIMEOUT`` seconds (default 120) is an :class:`H5FileError` that
    names the process holding it when it can be known (same machine, Linux).
    """
    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return _open_file(path, mode)
        except OSError as error:
            if is_disk_full(error):
                raise disk_full_error(path, error) from None
            if "unable to lock file" not in str(error).lower():  # not e.g. "sblock->base_addr"
                raise H5FileError(f"cannot open {path} as HDF5: {_first_line(error)}") from None
            if time.monotonic() >= deadline:
                pids = _holders(path)
                who = ("process " + ", ".join(f"{pid} ({_process_name(pid)})" for pid in pids)) if pids else \
                    "a process this machine cannot name (another user, host or container)"
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


# --------------------------------------------------------------------------- provenance


def read_conf(path: str | os.PathLike, kind: str = "features") -> dict[str, Any] | None:
    """The conf recorded in ``path`` by :func:`record_conf`, or None (none recorded / no file)."""
    if not Path(path).exists():
        return None
    with open_h5(path, "r", kind) as fd:
        text = fd.attrs.get(CONF_ATTR)
    if text is None:
        return None
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def record_conf(path: str | os.PathLike, conf: dict[str, Any], kind: str = "features") -> None:
    """Store ``conf`` (JSON-serialisable) as the file's provenance (creating the file)."""
    with open_h5(path, "a", kind) as fd:
        fd.attrs[CONF_ATTR] = json.dumps(conf, sort_keys=True)


def conf_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["key: old -> new", ...]`` for every differing (nested) key."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += conf_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


# --------------------------------------------------------------------------- merging


def merge_files(parts: list[str | os.PathLike], dest: str | os.PathLike, kind: str,
                conf: dict[str, Any] | None = None) -> int:
    """Merge the complete entries of ``parts`` (and of ``dest`` if it exists) into ``dest``, atomically.

    The merged file is built next to ``dest`` and moved into place (``os.replace``), so a
    reader sees the old file or the whole new one, never a mix. Entries of later parts
    replace those of earlier ones; ``conf`` is recorded as the provenance. Returns the
    number of entries copied from the parts.
    """
    from ..common.files import write_atomic

    dest = Path(dest)
    copied = 0
    # the merged copy is built beside the destination: room for both, and the margin
    ensure_free_space(dest, sum(Path(p).stat().st_size for p in [*parts, dest] if Path(p).is_file()))

    def build(tmp: Path) -> None:
        nonlocal copied
        if dest.exists():
            with open_h5(dest, "r", kind):
                pass  # a foreign or damaged destination fails here, before anything moves
            shutil.copyfile(dest, tmp)
        with open_h5(tmp, "a", kind) as out:
            for part in parts:
                with open_h5(part, "r", kind) as src:
                    for name in _entries(src, complete_only=True):
                        if name in out:
                            del out[name]
                        parent, _, leaf = name.rpartition("/")
                        target = out.require_group(parent) if parent else out
                        src.copy(src[name], target, name=leaf)
                        copied += 1
            if conf is not None:
                out.attrs[CONF_ATTR] = json.dumps(conf, sort_keys=True)
            out.flush()

    write_atomic(dest, build)
    return copied


# --------------------------------------------------------------------------- features


def _needed(arrays) -> int:
    """Bytes to have free (besides the margin) before writing one entry of ``arrays``."""
    return 2 * sum(np.asarray(a).nbytes for a in arrays) + 64 * 1024


def write_features(
    path: str | os.PathLike,
    name: str,
    pred: dict[str, np.ndarray],
    as_half: bool = False,
    uncertainty: float | None = None,
) -> None:
    """Write one image's arrays as group ``name`` of the features file ``path``.

    ``pred`` maps dataset names to numpy arrays (``keypoints`` N x 2, ``scores`` N,
    ``descriptors`` D x N, ``image_size`` (W, H), ...). With ``as_half`` float32 arrays
    are stored as float16. ``uncertainty`` becomes the ``keypoints`` attribute of that name.
    An existing group ``name`` (complete or not) is replaced. A name that is not valid
    UTF-8 raises :class:`H5FileError` before the file is touched.
    """
    check_name(name)
    ensure_free_space(path, _needed(pred.values()))
    with open_h5(path, "a", "features") as fd:
        if name in fd:
            del fd[name]
        group = fd.create_group(name)
        try:
            for key, value in pred.items():
                value = np.asarray(value)
                if as_half and value.dtype == np.float32:
                    value = value.astype(np.float16)
                group.create_dataset(key, data=value)
            if uncertainty is not None and "keypoints" in group:
                group["keypoints"].attrs["uncertainty"] = float(uncertainty)
            fd.flush()
            group.attrs[COMPLETE_ATTR] = 1  # last: the group counts only from here on
            fd.flush()
        except BaseException as error:
            if not is_disk_full(error):  # on a full disk, write nothing more
                try:  # best effort; an incomplete group is ignored by readers anyway
                    del fd[name]
                except Exception:
                    pass
            raise


def list_names(path: str | os.PathLike) -> list[str]:
    """Sorted names of the complete image groups of a features file (nested names with ``/``)."""
    with open_h5(path, "r", "features") as fd:
        marked = FORMAT_ATTR in fd.attrs
        names = _entries(fd, complete_only=marked)
        if not marked:  # written by hloc (or not a features file at all)
            _check_entries(fd, path, "features", names)
        return names


def read_features(path: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """All arrays of image ``name`` as stored (e.g. float16 when written with as_half)."""
    with open_h5(path, "r", "features") as fd:
        if not _is_complete(fd, name):
            raise H5FileError(f"image '{name}' is not in features file {path}")
        return {key: ds[()] for key, ds in fd[name].items() if isinstance(ds, h5py.Dataset)}


def get_keypoints(
    path: str | os.PathLike, name: str, return_uncertainty: bool = False
) -> np.ndarray | tuple[np.ndarray, float | None]:
    """Keypoints N x 2 (x, y) of image ``name`` in original-image pixels, as stored."""
    with open_h5(path, "r", "features") as fd:
        if not _is_complete(fd, name):
            raise H5FileError(f"image '{name}' is not in features file {path}")
        dataset = fd[name]["keypoints"]
        keypoints = dataset[()]
        uncertainty = dataset.attrs.get("uncertainty")
    if return_uncertainty:
        return keypoints, (None if uncertainty is None else float(uncertainty))
    return keypoints


# --------------------------------------------------------------------------- matches


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc's match-group key: the two names with ``/`` -> ``-``, joined by ``separator``."""
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """hloc's legacy (flat) match-group key, joined with ``_``."""
    return names_to_pair(name0, name1, separator="_")


def _find_pair(fd: h5py.File, name0: str, name1: str) -> tuple[str, bool] | None:
    """(key, reversed) of the stored pair in any of hloc's four forms, or None."""
    for key, reverse in (
        (names_to_pair(name0, name1), False),
        (names_to_pair(name1, name0), True),
        (names_to_pair_old(name0, name1), False),
        (names_to_pair_old(name1, name0), True),
    ):
        if _is_complete(fd, key):
            return key, reverse
    return None


def write_matches(
    path: str | os.PathLike, name0: str, name1: str, matches0: np.ndarray, scores0: np.ndarray
) -> None:
    """Store one pair: ``matches0`` (N0 ints, index into image 1 or -1), ``scores0`` (N0).

    ``matches0`` is stored as int16 like hloc when every index fits, else as int32;
    scores as float16. An existing group for this pair (in either order) is replaced.
    """
    matches0 = np.asarray(matches0).reshape(-1)
    scores0 = np.asarray(scores0).reshape(-1)
    if matches0.shape != scores0.shape:
        raise ValueError(f"matches0 {matches0.shape} and scores0 {scores0.shape} differ in length")
    dtype = np.int16 if matches0.size == 0 or matches0.max() < np.iinfo(np.int16).max else np.int32
    key = names_to_pair(name0, name1)
    ensure_free_space(path, _needed((matches0, scores0)))
    with open_h5(path, "a", "matches") as fd:
        for old in (key, names_to_pair(name1, name0), names_to_pair_old(name0, name1), names_to_pair_old(name1, name0)):
            if old in fd:
                del fd[old]
        group = fd.create_group(key)
        try:
            group.create_dataset("matches0", data=matches0.astype(dtype))
            group.create_dataset("matching_scores0", data=scores0.astype(np.float16))
            fd.flush()
            group.attrs[COMPLETE_ATTR] = 1
            fd.flush()
        except BaseException as error:
            if not is_disk_full(error):  # on a full disk, write nothing more
                try:
                    del fd[key]
                except Exception:
                    pass
            raise


def has_matches(path: str | os.PathLike, name0: str, name1: str) -> bool:
    """Whether the pair is stored (either order, nested or legacy key, complete)."""
    if not Path(path).exists():
        return False
    with open_h5(path, "r", "matches") as fd:
        return _find_pair(fd, name0, name1) is not None


def get_matches(path: str | os.PathLike, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """Matches of a pair as ``(M x 2 int array of (idx0, idx1), M scores float32)``.

    The pair may be stored in either order and with the nested or the legacy key; a pair
    stored as (name1, name0) is flipped so that column 0 always indexes ``name0``.
    """
    with open_h5(path, "r", "matches") as fd:
        found = _find_pair(fd, name0, name1)
        if found is None:
            raise H5FileError(f"pair ({name0}, {name1}) is not in matches file {path}")
        key, reverse = found
        matches0 = fd[key]["matches0"][()]
        scores0 = fd[key]["matching_scores0"][()]
    idx = np.flatnonzero(matches0 != -1)
    matches = np.stack([idx, matches0[idx]], -1).astype(np.int64)
    if reverse:
        matches = matches[:, ::-1].copy()
    return matches, scores0[idx].astype(np.float32)
