"""hloc matches files: one group per pair, under hloc's nested or legacy key (see
:mod:`sekd_plugin.io.h5` for the layout)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .checks import check_matches0
from .h5_open import H5FileError, is_complete, open_h5
from .h5_parts import write_entry


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc's match-group key: the two names with ``/`` -> ``-``, joined by ``separator``."""
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """hloc's legacy (flat) match-group key, joined with ``_``."""
    return names_to_pair(name0, name1, separator="_")


def find_pair(fd: h5py.File, name0: str, name1: str) -> tuple[str, bool] | None:
    """(key, reversed) of the stored pair in any of hloc's four forms, or None."""
    for key, reverse in (
        (names_to_pair(name0, name1), False),
        (names_to_pair(name1, name0), True),
        (names_to_pair_old(name0, name1), False),
        (names_to_pair_old(name1, name0), True),
    ):
        if is_complete(fd, key):
            return key, reverse
    return None


def matches_entry(name0: str, name1: str, matches0: np.ndarray, scores0: np.ndarray) -> dict:
    """The entry :func:`write_matches` stores, as keyword arguments of
    :meth:`~sekd_plugin.io.h5_parts.PartWriter.put` (``key``, ``arrays``, ``replace``)."""
    matches0 = np.asarray(matches0).reshape(-1)
    scores0 = np.asarray(scores0).reshape(-1)
    if matches0.shape != scores0.shape:
        raise ValueError(f"matches0 {matches0.shape} and scores0 {scores0.shape} differ in length")
    dtype = np.int16 if matches0.size == 0 or matches0.max() < np.iinfo(np.int16).max else np.int32
    arrays = {"matches0": matches0.astype(dtype), "matching_scores0": scores0.astype(np.float16)}
    return {"key": names_to_pair(name0, name1), "arrays": arrays,
            "replace": (names_to_pair(name1, name0), names_to_pair_old(name0, name1), names_to_pair_old(name1, name0))}


def write_matches(
    path: str | os.PathLike, name0: str, name1: str, matches0: np.ndarray, scores0: np.ndarray
) -> None:
    """Store one pair: ``matches0`` (N0 ints, index into image 1 or -1), ``scores0`` (N0).

    ``matches0`` is stored as int16 like hloc when every index fits, else as int32;
    scores as float16. An existing group for this pair (in either order) is replaced. Each
    call publishes (copies) the file: many pairs go through a
    :class:`~sekd_plugin.io.h5_parts.PartWriter`.
    """
    write_entry(path, "matches", **matches_entry(name0, name1, matches0, scores0))


def has_matches(path: str | os.PathLike, name0: str, name1: str) -> bool:
    """Whether the pair is stored (either order, nested or legacy key, complete)."""
    if not Path(path).exists():
        return False
    with open_h5(path, "r", "matches") as fd:
        return find_pair(fd, name0, name1) is not None


def get_matches(path: str | os.PathLike, name0: str, name1: str,
                counts: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Matches of a pair as ``(M x 2 int array of (idx0, idx1), M scores float32)``.

    The pair may be stored in either order and with the nested or the legacy key; a pair
    stored as (name1, name0) is flipped so that column 0 always indexes ``name0``. Indices are
    checked (:func:`~sekd_plugin.io.checks.check_matches0`): integers >= -1 always, and with
    ``counts`` (the keypoint counts of ``name0`` and ``name1``) within the keypoints of each image.
    """
    with open_h5(path, "r", "matches") as fd:
        found = find_pair(fd, name0, name1)
        if found is None:
            raise H5FileError(f"pair ({name0}, {name1}) is not in matches file {path}")
        key, reverse = found
        matches0 = fd[key]["matches0"][()]
        scores0 = fd[key]["matching_scores0"][()]
    stored_counts = None if counts is None else (tuple(counts)[::-1] if reverse else tuple(counts))
    matches0 = check_matches0(matches0, path, key, stored_counts)
    if np.shape(scores0) != matches0.shape:
        raise H5FileError(f"{path}: pair '{key}': matching_scores0 has shape {np.shape(scores0)}, "
                          f"expected {matches0.shape}")
    idx = np.flatnonzero(matches0 != -1)
    matches = np.stack([idx, matches0[idx]], -1).astype(np.int64)
    if reverse:
        matches = matches[:, ::-1].copy()
    return matches, scores0[idx].astype(np.float32)
