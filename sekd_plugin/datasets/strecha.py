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
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..common.errors import InputError

__all__ = ["GroundTruthError", "StrechaCamera", "read_strecha_camera", "gt_camera_path", "load_gt_cameras",
           "intrinsics_from_gt", "relative_pose", "image_scale", "scale_K", "ASPECT_TOLERANCE"]

logger = logging.getLogger(__name__)

# Relative difference of the x and y scale factors still taken as "the same aspect ratio"
# (rounding of a downscaled image's size: 1536 x 1024 -> 1000 x 667 is 0.05 %).
ASPECT_TOLERANCE = 0.01


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

    def rescaled(self, width: int, height: int, where: str = "GT camera") -> "StrechaCamera":
        """This camera for the same image at ``width`` x ``height`` (see :func:`image_scale`)."""
        K = scale_K(self.K, (self.width, self.height), (width, height), where)
        return dataclasses.replace(self, K=K, width=int(width), height=int(height))


def image_scale(size: Sequence[int], target: Sequence[int], where: str = "GT camera") -> tuple[float, float]:
    """The one rule for intrinsics written for another image size: ``(sx, sy)`` taking an image
    of ``size`` (W, H) to ``target`` when both have the same aspect ratio (within
    :data:`ASPECT_TOLERANCE`); otherwise the intrinsics belong to another image (cropped, rotated,
    another camera) and this is a :class:`GroundTruthError` naming ``where`` and both sizes."""
    (w, h), (tw, th) = (int(v) for v in size), (int(v) for v in target)
    if (w, h) == (tw, th):
        return 1.0, 1.0
    if min(w, h, tw, th) <= 0:
        raise GroundTruthError(f"{where}: invalid image size {w}x{h} or {tw}x{th}")
    sx, sy = tw / w, th / h
    if abs(sx / sy - 1) > ASPECT_TOLERANCE:
        raise GroundTruthError(f"{where}: K is for a {w}x{h} image but the image is {tw}x{th} (another aspect "
                               "ratio: cropped or rotated?); write the camera file for the image as it is")
    return sx, sy


def scale_K(K: np.ndarray, size: Sequence[int], target: Sequence[int], where: str = "GT camera") -> np.ndarray:
    """``K`` of an image of ``size`` (W, H) for the same image resized to ``target``
    (:func:`image_scale`; focal lengths, skew and principal point scale with the axes, as
    ``pycolmap.Camera.rescale``; K in COLMAP's convention, pixel corner at (0, 0))."""
    sx, sy = image_scale(size, target, where)
    return np.diag([sx, sy, 1.0]) @ np.asarray(K, float)


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
    for field_name, value in (("K", K), ("distortion", distortion), ("R", R), ("t (camera centre)", C)):
        if not np.isfinite(value).all():
            raise GroundTruthError(f"{path}: {field_name} holds NaN or Inf values")
    if width <= 0 or height <= 0:
        raise GroundTruthError(f"{path}: invalid image size {width}x{height}")
    if abs(np.linalg.det(R) - 1) > 1e-3 or not np.allclose(R.T @ R, np.eye(3), atol=1e-3):
        raise GroundTruthError(f"{path}: R is not a rotation (det {np.linalg.det(R):.4f})")
    return StrechaCamera(K, distortion, R, C, width, height)


def gt_camera_path(gt_dir: str | os.PathLike, name: str) -> Path:
    """Strecha naming: ``<gt_dir>/<image file name>.camera`` (the full file name, e.g. ``0003.jpg``)."""
    return Path(gt_dir) / (Path(name).name + ".camera")


def load_gt_cameras(gt_dir: str | os.PathLike, names: Sequence[str], strict: bool = True,
                    image_dir: str | os.PathLike | None = None) -> dict[str, StrechaCamera]:
    """GT cameras of ``names``. ``strict``: a missing file is an error, else the image is left out.

    ``image_dir``: fit every camera to the size of its image there (read from the file header):
    K is rescaled when the camera file was written for another size of the same aspect ratio
    (e.g. the images downscaled, the files for the originals; said once in the log) and a
    different aspect ratio is an error naming the file (:func:`image_scale`). An image whose
    size cannot be read keeps its camera (it is reported where it is decoded)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise GroundTruthError(f"GT camera folder not found: {gt_dir}")
    cams = {}
    rescaled: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
    for name in names:
        path = gt_camera_path(gt_dir, name)
        if not path.exists():
            if strict:
                raise GroundTruthError(f"no GT camera for image '{name}': {path} not found")
            continue
        cam = read_strecha_camera(path)
        size = _image_size(Path(image_dir) / name) if image_dir is not None else None
        if size is not None and size != (cam.width, cam.height):
            key = ((cam.width, cam.height), size)
            cam = cam.rescaled(*size, where=f"{path} (image {Path(image_dir) / name})")
            rescaled[key] = rescaled.get(key, 0) + 1
        cams[name] = cam
    for ((w, h), (tw, th)), count in rescaled.items():
        logger.warning("GT cameras in %s are for %dx%d images, %d image(s) are %dx%d: their K is rescaled by %.4g",
                       gt_dir, w, h, count, tw, th, tw / w)
    return cams


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(W, H)`` of an image from its header (no decoding), None when it cannot be read."""
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:
            return tuple(int(v) for v in image.size)
    except Exception:  # noqa: BLE001 - unreadable here: reported by name where it is decoded
        return None


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
