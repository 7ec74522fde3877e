"""hloc features files: one group per image (see :mod:`sekd_plugin.io.h5` for the layout)."""

from __future__ import annotations

import os

import h5py
import numpy as np

from .checks import check_features, check_keypoints
from .h5_open import FORMAT_ATTR, H5FileError, check_entries, check_name, is_complete, list_entries, open_h5
from .h5_parts import write_entry


def features_entry(name: str, pred: dict[str, np.ndarray], as_half: bool = False,
                    uncertainty: float | None = None) -> dict:
    """The entry :func:`write_features` stores, as keyword arguments of
    :meth:`~sekd_plugin.io.h5_parts.PartWriter.put` (``key``, ``arrays``, ``attrs``)."""
    check_name(name)
    arrays = {}
    for key, value in pred.items():
        value = np.asarray(value)
        arrays[key] = value.astype(np.float16) if as_half and value.dtype == np.float32 else value
    attrs = {"keypoints": {"uncertainty": float(uncertainty)}} if uncertainty is not None else None
    return {"key": name, "arrays": arrays, "attrs": attrs}


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
    An existing group ``name`` is replaced. A name that is not valid UTF-8 raises
    :class:`H5FileError` before the file is touched. Each call publishes (copies) the file:
    many images are written with a :class:`~sekd_plugin.io.h5_parts.PartWriter`.
    """
    write_entry(path, "features", **features_entry(name, pred, as_half, uncertainty))


def list_names(path: str | os.PathLike) -> list[str]:
    """Sorted names of the complete image groups of a features file (nested names with ``/``)."""
    with open_h5(path, "r", "features") as fd:
        marked = FORMAT_ATTR in fd.attrs
        names = list_entries(fd, complete_only=marked)
        if not marked:  # written by hloc (or not a features file at all)
            check_entries(fd, path, "features", names)
        return names


def read_features(path: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """All arrays of image ``name`` as stored (e.g. float16 when written with as_half), checked
    (:func:`~sekd_plugin.io.checks.check_features`: shapes agree, keypoints and descriptors finite)."""
    with open_h5(path, "r", "features") as fd:
        if not is_complete(fd, name):
            raise H5FileError(f"image '{name}' is not in features file {path}")
        arrays = {key: ds[()] for key, ds in fd[name].items() if isinstance(ds, h5py.Dataset)}
    return check_features(arrays, path, name)


def get_keypoints(
    path: str | os.PathLike, name: str, return_uncertainty: bool = False
) -> np.ndarray | tuple[np.ndarray, float | None]:
    """Keypoints N x 2 (x, y) of image ``name`` in original-image pixels (float64), checked: two
    finite columns inside the stored ``image_size`` (:func:`~sekd_plugin.io.checks.check_keypoints`)."""
    with open_h5(path, "r", "features") as fd:
        if not is_complete(fd, name):
            raise H5FileError(f"image '{name}' is not in features file {path}")
        group = fd[name]
        if not isinstance(group.get("keypoints"), h5py.Dataset):
            raise H5FileError(f"{path}: image '{name}' has no keypoints dataset")
        dataset = group["keypoints"]
        keypoints = dataset[()]
        uncertainty = dataset.attrs.get("uncertainty")
        size = group["image_size"][()] if isinstance(group.get("image_size"), h5py.Dataset) else None
    keypoints = check_keypoints(keypoints, path, name, size)
    if return_uncertainty:
        return keypoints, (None if uncertainty is None else float(uncertainty))
    return keypoints
