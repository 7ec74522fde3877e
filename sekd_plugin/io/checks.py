"""What a features or matches entry must be before anything uses it.

Every reader of :mod:`sekd_plugin.io.features` and :mod:`sekd_plugin.io.matches` passes what it
read through these checks, so a hand-made, foreign or mixed-up file is one
:class:`~sekd_plugin.io.h5_open.H5FileError` naming the file and the entry, never a traceback
deep inside COLMAP or a silently wrong result. All checks are vectorised (one pass per array).
"""

from __future__ import annotations

import os

import numpy as np

from .h5_open import H5FileError

# Keypoints may sit up to this many pixels outside the image (sub-pixel refinement at the border;
# our origin is the centre of the top-left pixel, so the image spans [-0.5, W - 0.5]).
BORDER_TOLERANCE_PX = 1.0


def _where(path: str | os.PathLike, name: str) -> str:
    return f"{path}: image '{name}'"


def check_keypoints(keypoints: np.ndarray, path: str | os.PathLike, name: str,
                    image_size: np.ndarray | None = None) -> np.ndarray:
    """Keypoints ``N x 2`` (x, y) as float64, checked: numeric, two columns, finite, and inside the
    ``image_size`` (W, H) image when it is stored. Raises :class:`H5FileError` naming file and image."""
    where = _where(path, name)
    kp = np.asarray(keypoints)
    if kp.dtype.kind not in "iuf":
        raise H5FileError(f"{where}: keypoints are {kp.dtype} values, expected numbers (N x 2)")
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise H5FileError(f"{where}: keypoints have shape {kp.shape}, expected N x 2 (x, y)")
    kp = kp.astype(np.float64)
    finite = np.isfinite(kp).all(axis=1)
    if not finite.all():
        raise H5FileError(f"{where}: {int((~finite).sum())} keypoint(s) are NaN or Inf "
                          f"(first at index {int(np.flatnonzero(~finite)[0])})")
    if image_size is not None and len(kp):
        size = np.asarray(image_size).reshape(-1)
        if size.size != 2 or size.dtype.kind not in "iuf" or not np.isfinite(size).all() or (size <= 0).any():
            raise H5FileError(f"{where}: image_size is {size.tolist()}, expected (W, H) > 0")
        low, high = -0.5 - BORDER_TOLERANCE_PX, size.astype(np.float64) - 0.5 + BORDER_TOLERANCE_PX
        outside = ((kp < low) | (kp > high)).any(axis=1)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise H5FileError(f"{where}: {int(outside.sum())} keypoint(s) lie outside the {int(size[0])}x{int(size[1])} "
                              f"image (first: index {k} at {kp[k].tolist()})")
    return kp


def check_features(arrays: dict[str, np.ndarray], path: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """The arrays of one features entry, checked: keypoints (:func:`check_keypoints`), descriptors
    ``D x N`` finite with N the keypoint count, scores ``N``. Returned as stored (dtypes kept)."""
    where = _where(path, name)
    if "keypoints" in arrays:
        kp = check_keypoints(arrays["keypoints"], path, name, arrays.get("image_size"))
        n = len(kp)
    else:
        n = None
    desc = arrays.get("descriptors")
    if desc is not None:
        desc = np.asarray(desc)
        if desc.dtype.kind not in "iuf" or desc.ndim != 2:
            raise H5FileError(f"{where}: descriptors have shape {desc.shape} ({desc.dtype}), expected D x N numbers")
        if n is not None and desc.shape[1] != n:
            raise H5FileError(f"{where}: descriptors are {desc.shape[0]} x {desc.shape[1]} but there are {n} "
                              "keypoints (expected D x N)")
        if desc.dtype.kind == "f":
            bad = ~np.isfinite(desc).all(axis=0)
            if bad.any():
                raise H5FileError(f"{where}: descriptors of {int(bad.sum())} keypoint(s) hold NaN or Inf "
                                  f"(first at index {int(np.flatnonzero(bad)[0])})")
    scores = arrays.get("scores")
    if scores is not None and n is not None and np.asarray(scores).shape != (n,):
        raise H5FileError(f"{where}: scores have shape {np.asarray(scores).shape}, expected ({n},)")
    return arrays


def check_matches0(matches0: np.ndarray, path: str | os.PathLike, key: str,
                   counts: tuple[int, int] | None = None) -> np.ndarray:
    """hloc's ``matches0`` of one pair as int64, checked: one integer per keypoint of the first image,
    each ``-1`` (unmatched) or an index of a keypoint of the second image. ``counts``: the keypoint
    counts ``(N0, N1)`` of the two images in the stored order (unknown: range and length unchecked)."""
    where = f"{path}: pair '{key}'"
    m = np.asarray(matches0)
    if m.dtype.kind not in "iu" or m.ndim != 1:
        raise H5FileError(f"{where}: matches0 has shape {m.shape} ({m.dtype}), expected N0 integers")
    m = m.astype(np.int64)
    if len(m) and int(m.min()) < -1:
        raise H5FileError(f"{where}: matches0 holds index {int(m.min())} (only -1 or a keypoint index is valid)")
    if counts is not None:
        n0, n1 = (int(c) for c in counts)
        if len(m) != n0:
            raise H5FileError(f"{where}: matches0 has {len(m)} entries but the first image has {n0} keypoints "
                              "(matches made with other features?)")
        if len(m) and int(m.max()) >= n1:
            raise H5FileError(f"{where}: matches0 holds index {int(m.max())} but the second image has {n1} keypoints "
                              "(matches made with other features?)")
    return m
