"""The one reader of COLMAP models (a folder of ``cameras``, ``images``, ``points3D`` .bin or .txt)
and of camera descriptions given by the user.

pycolmap trusts the files it reads: a truncated ``images.bin`` is an IndexError, an empty
``cameras.bin`` a ValueError, and a ``points3D.bin`` of random bytes asks for terabytes (it
runs for minutes, then ``bad_alloc``). :func:`read_model` therefore walks the structure of the
binary files first (every count against the bytes left, every camera model, the exact file
length, tracks pointing at existing images and keypoints), in a few vectorised passes, and only
then hands the folder to pycolmap; anything wrong is one :class:`ModelError` naming the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..common.errors import InputError

MODEL_FILES = ("cameras", "images", "points3D")


class ModelError(InputError):
    """A COLMAP model (or camera description) is missing, damaged or foreign (the message names it)."""


def camera_num_params(model: str | int) -> int | None:
    """Number of parameters of a COLMAP camera model (by name or id), None when unknown."""
    import pycolmap

    members = pycolmap.CameraModelId.__members__
    if isinstance(model, str):
        model_id = members.get(model)
    else:
        model_id = next((m for m in members.values() if int(m) == int(model)), None)
    if model_id is None or int(model_id) < 0:
        return None
    return len(pycolmap.Camera.create_from_model_id(1, model_id, 1.0, 1, 1).params)


def known_camera_models() -> list[str]:
    """The names of pycolmap's camera models."""
    import pycolmap

    return [m for m, v in pycolmap.CameraModelId.__members__.items() if int(v) >= 0]


def make_camera(model: str, width: int, height: int, params, where: str):
    """A ``pycolmap.Camera`` checked: a known model, ``W, H > 0``, exactly its number of finite
    parameters and positive focal lengths; else a :class:`ModelError` naming ``where``."""
    import pycolmap

    count = camera_num_params(model)
    if count is None:
        raise ModelError(f"{where}: unknown camera model {model!r}; valid: {', '.join(known_camera_models())}")
    params = np.asarray(params, float).reshape(-1)
    if len(params) != count:
        raise ModelError(f"{where}: camera model {model} takes {count} parameters, got {len(params)}")
    if not np.isfinite(params).all():
        raise ModelError(f"{where}: camera parameters hold NaN or Inf: {params.tolist()}")
    if int(width) <= 0 or int(height) <= 0:
        raise ModelError(f"{where}: invalid image size {width}x{height}")
    camera = pycolmap.Camera(model=model, width=int(width), height=int(height), params=params.tolist())
    focal = [params[i] for i in camera.focal_length_idxs()]
    if not all(f > 0 for f in focal):
        raise ModelError(f"{where}: focal length must be positive, got {focal}")
    return camera


class _Reader:
    """Bounds-checked little-endian reads over a file's bytes."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.path}: not a COLMAP {self.path.name} ({what} at byte {self.pos} of "
                          f"{len(self.data)}); the file is damaged or of another program")

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.fail("truncated")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def count(self, record_bytes: int, what: str) -> int:
        (n,) = self.take("<Q")
        if n * record_bytes > len(self.data) - self.pos:
            raise self.fail(f"{n} {what} cannot fit in the file")
        return n

    def skip(self, nbytes: int) -> int:
        if self.pos + nbytes > len(self.data):
            raise self.fail("truncated")
        start, self.pos = self.pos, self.pos + nbytes
        return start

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes")


def _walk_cameras(path: Path) -> set[int]:
    r, ids = _Reader(path), set()
    for _ in range(r.count(24, "cameras")):
        camera_id, model_id, width, height = r.take("<iiQQ")
        n = camera_num_params(model_id) if model_id >= 0 else None
        if n is None or width == 0 or height == 0:
            raise r.fail(f"camera {camera_id} has model id {model_id} and size {width}x{height}")
        r.skip(8 * n)
        ids.add(camera_id)
    r.end()
    return ids


def _walk_images(path: Path, cameras: set[int]) -> dict[int, int]:
    """``image_id -> number of 2D points``; every camera id must be in ``cameras``."""
    r, points2D = _Reader(path), {}
    for _ in range(r.count(73, "images")):
        image_id, *pose, camera_id = r.take("<I7dI")
        end = r.data.find(b"\0", r.pos)
        if end < 0:
            raise r.fail(f"image {image_id} has an unterminated name")
        r.pos = end + 1
        if camera_id not in cameras:
            raise r.fail(f"image {image_id} uses camera {camera_id}, which is not in cameras.bin")
        if not np.isfinite(pose).all():
            raise r.fail(f"image {image_id} has a NaN or Inf pose")
        n = r.count(24, "2D points")
        r.skip(24 * n)
        points2D[image_id] = n
    r.end()
    return points2D


def _walk_points3D(path: Path, points2D: dict[int, int]) -> None:
    r = _Reader(path)
    tracks = []
    for _ in range(r.count(51, "3D points")):
        r.skip(43)  # id, xyz, rgb, error
        n = r.count(8, "track elements")
        tracks.append((r.skip(8 * n), n))
    r.end()
    if not tracks:
        return
    # every track element (image_id, point2D_idx) must address an image and one of its 2D points
    elements = np.concatenate([np.frombuffer(r.data, "<u4", 2 * n, start) for start, n in tracks if n]
                              or [np.zeros(0, "<u4")]).reshape(-1, 2)
    if len(elements):
        ids = np.fromiter(points2D, np.int64, len(points2D))
        sizes = np.fromiter(points2D.values(), np.int64, len(points2D))
        order = np.argsort(ids)
        pos = np.clip(np.searchsorted(ids[order], elements[:, 0]), 0, max(len(ids) - 1, 0))
        known = (ids[order][pos] == elements[:, 0]) if len(ids) else np.zeros(len(elements), bool)
        ok = known & (elements[:, 1] < np.where(known, sizes[order][pos], 0))
        if not ok.all():
            image_id, idx = (int(v) for v in elements[np.flatnonzero(~ok)[0]])
            raise ModelError(f"{path}: a track names 2D point {idx} of image {image_id}, which images.bin does "
                             "not have (the file is damaged or of another model)")


def check_model_files(path: Path) -> None:
    """Walk the binary files of the model folder ``path`` (see the module docstring)."""
    files = {name: path / f"{name}.bin" for name in MODEL_FILES}
    if not all(f.exists() for f in files.values()):
        return  # a text model: pycolmap's parser raises on bad lines
    cameras = _walk_cameras(files["cameras"])
    points2D = _walk_images(files["images"], cameras)
    _walk_points3D(files["points3D"], points2D)
    # rigs and frames (COLMAP >= 3.12): their counts at least, so that random bytes cannot ask
    # pycolmap for terabytes (smallest records: rig id + sensor count; frame id, rig id, pose, count)
    for name, smallest in (("rigs", 8), ("frames", 68)):
        if (path / f"{name}.bin").exists():
            _Reader(path / f"{name}.bin").count(smallest, name)


def read_model(path: str | os.PathLike, what: str = "COLMAP model"):
    """The ``pycolmap.Reconstruction`` of the model folder ``path`` (or ``path`` itself when it is
    one), checked first; a missing, damaged or foreign model is one :class:`ModelError` naming it."""
    import pycolmap

    if isinstance(path, pycolmap.Reconstruction):
        return path
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{what} not found: {path} (a folder with cameras, images and points3D .bin or .txt)")
    for ext in ("bin", "txt"):
        present = [n for n in MODEL_FILES if (path / f"{n}.{ext}").exists()]
        if present and len(present) < len(MODEL_FILES):
            missing = sorted(set(MODEL_FILES) - set(present))
            raise ModelError(f"{what} {path} is incomplete: no {', '.join(f'{n}.{ext}' for n in missing)}")
        if present:
            break
    else:
        raise ModelError(f"{what} not found: {path} (a folder with cameras, images and points3D .bin or .txt)")
    check_model_files(path)
    try:
        return pycolmap.Reconstruction(path)
    except (RuntimeError, ValueError, IndexError, MemoryError, OSError) as error:
        line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"cannot read {what} {path}: {line}") from None
