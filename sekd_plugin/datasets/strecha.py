"""Strecha ground-truth cameras (``gt_dense_cameras/<image file name>.camera``).

A ``.camera`` file holds, one row per line: K (3 lines), the radial distortion (1 line),
R (3 lines), t (1 line) and the image size ``width height``. Convention (see
``shared/scenes/README.md``, checked there on the data and here by
``tests/datasets/test_strecha.py``): **R is camera-to-world** (its columns are the camera
axes in world coordinates) and **t is the camera centre C** in world coordinates (metres),
so a world point X projects to ``x ~ K R^T (X - C)``; in COLMAP terms
``cam_from_world = [R^T | -R^T C]``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..common.errors import InputError

__all__ = ["GroundTruthError", "StrechaCamera", "read_strecha_camera", "gt_camera_path", "load_gt_cameras",
           "intrinsics_from_gt", "relative_pose"]


class GroundTruthError(InputError):
    """A ground-truth camera file is missing or malformed (the message names it)."""


@dataclasses.dataclass
class StrechaCamera:
    """One Strecha camera: ``K`` 3x3, ``distortion`` (3,), ``R`` camera-to-world 3x3,
    ``C`` camera centre (3,) in world metres, and the image ``width`` x ``height`` K is for."""

    K: np.ndarray
    distortion: np.ndarray
    R: np.ndarray
    C: np.ndarray
    width: int
    height: int

    @property
    def R_cw(self) -> np.ndarray:
        """World-to-camera rotation (COLMAP's ``cam_from_world`` rotation) = ``R^T``."""
        return self.R.T

    @property
    def t_cw(self) -> np.ndarray:
        """World-to-camera translation ``-R^T C``."""
        return -self.R.T @ self.C

    def project(self, X: np.ndarray) -> np.ndarray:
        """Pixels (N x 2) of world points X (N x 3): ``K R^T (X - C)``, dehomogenised."""
        x = (self.K @ self.R.T @ (np.asarray(X, float) - self.C).T).T
        return x[:, :2] / x[:, 2:3]


def read_strecha_camera(path: str | os.PathLike) -> StrechaCamera:
    """Parse a Strecha ``.camera`` file (see the module docstring for the convention)."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"cannot read GT camera {path}: {error}") from None
    if len(lines) < 9:
        raise GroundTruthError(f"{path}: expected 9 non-empty lines (K, distortion, R, t, size), got {len(lines)}")
    try:
        K = np.array([[float(v) for v in row] for row in lines[0:3]])
        distortion = np.array([float(v) for v in lines[3]])
        R = np.array([[float(v) for v in row] for row in lines[4:7]])
        C = np.array([float(v) for v in lines[7]])
        width, height = (int(round(float(v))) for v in lines[8][:2])
    except (ValueError, TypeError) as error:
        raise GroundTruthError(f"{path}: malformed number ({error})") from None
    if K.shape != (3, 3) or R.shape != (3, 3) or C.shape != (3,):
        raise GroundTruthError(f"{path}: K, R must be 3x3 and t 3 values; got {K.shape}, {R.shape}, {C.shape}")
    if abs(np.linalg.det(R) - 1) > 1e-3 or not np.allclose(R.T @ R, np.eye(3), atol=1e-3):
        raise GroundTruthError(f"{path}: R is not a rotation (det {np.linalg.det(R):.4f})")
    return StrechaCamera(K, distortion, R, C, width, height)


def gt_camera_path(gt_dir: str | os.PathLike, name: str) -> Path:
    """Strecha naming: ``<gt_dir>/<image file name>.camera`` (the full file name, e.g. ``0003.jpg``)."""
    return Path(gt_dir) / (Path(name).name + ".camera")


def load_gt_cameras(gt_dir: str | os.PathLike, names: Sequence[str], strict: bool = True) -> dict[str, StrechaCamera]:
    """GT cameras of ``names``. ``strict``: a missing file is an error, else the image is left out."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise GroundTruthError(f"GT camera folder not found: {gt_dir}")
    cams = {}
    for name in names:
        path = gt_camera_path(gt_dir, name)
        if not path.exists():
            if strict:
                raise GroundTruthError(f"no GT camera for image '{name}': {path} not found")
            continue
        cams[name] = read_strecha_camera(path)
    return cams


def intrinsics_from_gt(cams: Mapping[str, StrechaCamera]) -> dict[str, tuple[np.ndarray, int, int]]:
    """``name -> (K, width, height)``: the ``fixed_intrinsics`` argument of reconstruction.main."""
    return {name: (cam.K.copy(), cam.width, cam.height) for name, cam in cams.items()}


def relative_pose(cam0: StrechaCamera, cam1: StrechaCamera) -> tuple[np.ndarray, np.ndarray]:
    """GT relative pose ``(R, t)`` of camera 1 from camera 0: ``X_1 = R X_0 + t`` for a point in
    camera-0 coordinates (``cam1_from_cam0``, COLMAP's and glue-factory's ``T_0to1``).

    ``t`` is metric (metres); ``|t|`` is the distance between the centres.
    """
    R = cam1.R_cw @ cam0.R_cw.T
    t = cam1.t_cw - R @ cam0.t_cw
    return R, t
