"""COLMAP option objects from (nested) dicts, checked key by key: an unknown key or a value of
the wrong type is one clear error before any work, not a pycolmap crash halfway through."""

from __future__ import annotations

import multiprocessing
from typing import Any, Mapping

import pycolmap
from omegaconf import OmegaConf

from ..common.errors import InputError

CAMERA_MODES = tuple(pycolmap.CameraMode.__members__)
# Two-view verification as hloc: more RANSAC trials, lower inlier ratio than COLMAP's defaults.
VERIFICATION_OPTIONS = {"ransac": {"max_num_trials": 20000, "min_inlier_ratio": 0.1}}
# Mapper options that keep the intrinsics fixed.
FIXED_INTRINSICS_OPTIONS = {
    "ba_refine_focal_length": False,
    "ba_refine_principal_point": False,
    "ba_refine_extra_params": False,
    "mapper": {"abs_pose_refine_focal_length": False, "abs_pose_refine_extra_params": False},
}


class ReconstructionError(InputError):
    """Inconsistent inputs (missing images, features or pairs; bad options; an occupied sfm_dir)."""


def camera_mode(mode: str | pycolmap.CameraMode) -> pycolmap.CameraMode:
    """``"single"`` -> ``CameraMode.SINGLE``; an unknown name is a :class:`ReconstructionError`."""
    if isinstance(mode, pycolmap.CameraMode):
        return mode
    key = str(mode).upper()
    if key not in pycolmap.CameraMode.__members__:
        raise ReconstructionError(f"unknown camera_mode '{mode}'; valid: {list(CAMERA_MODES)}")
    return pycolmap.CameraMode.__members__[key]


def check_keys(options: Mapping[str, Any], reference: Mapping[str, Any], what: str, prefix: str = "") -> None:
    """Every key of ``options`` exists in ``reference`` (pycolmap's ``todict()``) with a value of its kind."""
    for key, value in options.items():
        if key not in reference:
            raise ReconstructionError(f"unknown {what} option '{prefix}{key}'; valid: {sorted(reference)}")
        ref = reference[key]
        if isinstance(value, Mapping):
            if not isinstance(ref, Mapping):
                raise ReconstructionError(f"{what} option '{prefix}{key}' is not a group")
            check_keys(value, ref, what, f"{prefix}{key}.")
        elif isinstance(ref, Mapping):
            raise ReconstructionError(f"{what} option '{prefix}{key}' is a group of options, got {value!r}")
        elif not _same_kind(value, ref):
            raise ReconstructionError(f"{what} option '{prefix}{key}' must be a {type(ref).__name__} "
                                      f"(like its default {ref!r}), got {value!r}")


def _same_kind(value: Any, ref: Any) -> bool:
    if isinstance(ref, bool):
        return isinstance(value, bool)
    if isinstance(ref, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(ref, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(ref, str):
        return isinstance(value, str)
    return True  # enums, paths, sets: pycolmap converts or refuses


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts merged left to right (OmegaConf)."""
    return OmegaConf.to_container(OmegaConf.merge(*[OmegaConf.create(dict(layer)) for layer in layers]))


def build(cls, options: Mapping[str, Any], what: str):
    """``cls(options)`` for a pycolmap options class, keys and types checked first (:func:`check_keys`)."""
    check_keys(options, cls().todict(), what)
    try:
        return cls(dict(options))
    except (TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise ReconstructionError(f"invalid {what} options {dict(options)}: {error}") from None


def pipeline_options(options: Mapping[str, Any]) -> pycolmap.IncrementalPipelineOptions:
    """``IncrementalPipelineOptions`` from a (nested) dict; an unknown key is a clear error."""
    return build(pycolmap.IncrementalPipelineOptions, options, "mapper")


def verification_options(options: Mapping[str, Any] | None = None) -> pycolmap.TwoViewGeometryOptions:
    """``TwoViewGeometryOptions``: hloc's :data:`VERIFICATION_OPTIONS` <- ``options``."""
    return build(pycolmap.TwoViewGeometryOptions, merge(VERIFICATION_OPTIONS, options or {}), "verification")


def mapping_options(
    mapper_options: Mapping[str, Any] | None = None,
    fixed: bool = False,
    num_threads: int | None = None,
    seed: int | None = 0,
) -> pycolmap.IncrementalPipelineOptions:
    """The mapper options every pipeline uses: threads, seed, fixed intrinsics, then the user's."""
    options: dict[str, Any] = {"num_threads": num_threads or min(multiprocessing.cpu_count(), 16)}
    if seed is not None:
        pycolmap.set_random_seed(int(seed))
        options["random_seed"] = int(seed)
    layers = [options, FIXED_INTRINSICS_OPTIONS] if fixed else [options]
    return pipeline_options(merge(*layers, mapper_options or {}))
