"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one.

Disk-full policy (one place for every writer): before a write, :func:`ensure_free_space`
refuses when less than ``$SEKD_PLUGIN_MIN_FREE_BYTES`` (default 16 MiB) plus the size to write
would be left, so that HDF5, whose files a failed write can damage, never meets a full disk;
a write that fails anyway with ENOSPC / EDQUOT (an ``OSError``, h5py's ``errno = 28``
messages, torch.save's short-write ``unexpected pos``) becomes a
:class:`~sekd_plugin.common.errors.DiskFullError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import DiskFullError, UserError

MIN_FREE_ENV = "SEKD_PLUGIN_MIN_FREE_BYTES"
DEFAULT_MIN_FREE = 16 * 2**20
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# h5py / HDF5 and torch report a failed write in their message, not as an errno.
_DISK_FULL_TEXT = re.compile(r"errno = (28|122)\b|No space left on device|Disk quota exceeded")
_SHORT_WRITE_TEXT = re.compile(r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed writing")


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing folder); None if unknown."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def min_free_bytes() -> int:
    """The safety margin kept free on every disk written to (``$SEKD_PLUGIN_MIN_FREE_BYTES``)."""
    try:
        return max(0, int(os.environ.get(MIN_FREE_ENV, DEFAULT_MIN_FREE)))
    except ValueError:
        return DEFAULT_MIN_FREE


def ensure_free_space(path: str | os.PathLike, needed: int = 0) -> None:
    """Raise :class:`DiskFullError` naming ``path`` unless ``needed`` bytes plus the margin are free."""
    free = free_bytes(path)
    if free is not None and free < needed + min_free_bytes():
        raise DiskFullError(path, f"{free} bytes free, {needed + min_free_bytes()} needed with the safety margin "
                                  f"${MIN_FREE_ENV}; what was written before is kept; free space and run the same "
                                  "command again")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says that the disk is full (or the quota exceeded)."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(error, (OSError, RuntimeError, KeyError)) and bool(_DISK_FULL_TEXT.search(str(error)))


def is_short_write(error: BaseException) -> bool:
    """torch.save's ``unexpected pos`` (and similar): the file could not be written to its end."""
    return isinstance(error, (OSError, RuntimeError)) and bool(_SHORT_WRITE_TEXT.search(str(error)))


def quiet_disk_full_reports() -> None:
    """From now on, drop h5py's "Exception ignored in ... __dealloc__" reports of the full disk
    (objects of the file being released after the write failed); other reports are kept."""
    previous = sys.unraisablehook
    if getattr(previous, "_sekd_disk_full", False):
        return

    def hook(unraisable):
        if unraisable.exc_value is not None and is_disk_full(unraisable.exc_value):
            return
        previous(unraisable)

    hook._sekd_disk_full = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def disk_full_error(path: str | os.PathLike, error: BaseException, detail: str | None = None) -> DiskFullError:
    """The :class:`DiskFullError` for a write of ``path`` that failed with ``error``."""
    quiet_disk_full_reports()
    if isinstance(error, DiskFullError):
        return error if detail is None else DiskFullError(error.path, detail)
    return DiskFullError(path, detail)


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike, short_write: bool = False) -> Iterator[None]:
    """Within the block, a full disk is a :class:`DiskFullError` naming ``path`` (with
    ``short_write``, also a write that stopped short, e.g. torch.save's ``unexpected pos``)."""
    try:
        yield
    except (OSError, RuntimeError, KeyError) as error:
        if is_disk_full(error) or (short_write and is_short_write(error)):
            raise disk_full_error(path, error) from None
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    ``data`` is text, bytes, or a function that writes the temporary path it is given (for
    h5py, torch.save, ...). The temporary name carries the process id, so concurrent writers
    never share one; it is fsynced and moved into place with ``os.replace``. Returns ``path``.
    """
    path = Path(path)
    if not callable(data):
        data = data.encode() if isinstance(data, str) else data
    ensure_free_space(path, 0 if callable(data) else len(data))
    with disk_full_names(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with disk_full_names(path, short_write=True):  # the old file stays in place
            if callable(data):
                data(tmp)
            else:
                with open(tmp, "wb") as f:
                    f.write(data)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays to Python, non-finite floats to None, paths to str, keys to str."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> Path:
    """Write ``obj`` as JSON atomically (see :func:`to_jsonable` for the conversions)."""
    return write_atomic(path, json.dumps(to_jsonable(obj), indent=indent) + "\n")


class ImageWriteError(UserError, OSError):
    """An image or figure could not be written (the message names the path)."""


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode ``image`` (OpenCV's BGR order) by the extension of ``path`` and write it atomically;
    any failure (no encoder for the extension, a name too long, no permission, disk full) is an
    :class:`ImageWriteError` naming the path, never a silent ``False`` as ``cv2.imwrite``'s."""
    import cv2

    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
    except cv2.error as error:
        raise ImageWriteError(f"cannot encode image {path}: {str(error).strip().splitlines()[-1]}") from None
    if not ok:
        raise ImageWriteError(f"cannot encode image {path} (extension {path.suffix!r})")
    try:
        return write_atomic(path, encoded.tobytes())
    except OSError as error:
        raise ImageWriteError(f"cannot write image {path}: {error.strerror or error}") from None


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed): the one setup of
    every plot the package draws (benchmarks, training report, pictures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` (matplotlib) into ``path`` atomically; a failure is an
    :class:`ImageWriteError` naming the path."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))
    except (OSError, ValueError) as error:
        raise ImageWriteError(f"cannot write figure {path}: {getattr(error, 'strerror', None) or error}") from None
