"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UserError


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    ``data`` is text, bytes, or a function that writes the temporary path it is given (for
    h5py, torch.save, ...). The temporary name carries the process id, so concurrent writers
    never share one; it is fsynced and moved into place with ``os.replace``. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
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


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` (matplotlib) into ``path`` atomically; a failure is an
    :class:`ImageWriteError` naming the path."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))
    except (OSError, ValueError) as error:
        raise ImageWriteError(f"cannot write figure {path}: {getattr(error, 'strerror', None) or error}") from None


class BackgroundWriter:
    """Calls ``write(*item)`` for every ``put(*item)`` in one background thread, in order, so that
    file writing overlaps the next computation. A write error is re-raised in the caller's
    thread at the next ``put`` or at ``close``; after one, the remaining items are dropped.
    """

    def __init__(self, write: Callable[..., None], depth: int = 2, name: str = "writer"):
        import queue
        import threading

        self.write = write
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, depth))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.write(*item)
                except BaseException as error:  # re-raised in the caller's thread
                    self.error = error

    def put(self, *item: Any) -> None:
        self._raise()
        self.queue.put(item)

    def close(self) -> None:
        """Finish the queued writes (also on interruption: they are computed already)."""
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
