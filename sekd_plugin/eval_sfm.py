"""Evaluate SfM camera poses against Strecha-format ground truth.

Strecha ``<image file name>.camera`` files (``gt_dense_cameras/0003.jpg.camera`` for
``images/0003.jpg``) hold, one row per line: K (3 lines), the radial distortion (1 line),
R (3 lines), t (1 line) and the image size ``width height``. Convention (see
``shared/scenes/README.md``, checked there on the data): **R is camera-to-world** (its
columns are the camera axes in world coordinates) and **t is the camera centre C** in world
coordinates (metres), so a world point X projects to ``x ~ K R^T (X - C)``; in COLMAP terms
``cam_from_world = [R^T | -R^T C]``.

Evaluation (:func:`evaluate_poses`): a similarity ``X_gt = s R_a X_sfm + t_a`` is fitted from
the SfM camera centres to the GT centres (Umeyama, inside RANSAC over 3-camera samples, then
refitted on the inliers: with no outlier it is the plain least-squares Umeyama fit), then

* centre error = ``|s R_a C_sfm + t_a - C_gt|`` (metres);
* rotation error = angle of ``R_gt_cw (R_sfm_cw R_a^T)^T`` (degrees), ``R_cw`` being the
  world-to-camera rotations.

Result keys: ``registered_images``, ``total_images``, ``median_center_error_m``,
``mean_center_error_m``, ``max_center_error_m``, ``pct_center_within_1cm`` / ``3cm`` /
``10cm`` (percent of **all** GT images: an unregistered image counts as a failure),
``median_rotation_error_deg``, ``max_rotation_error_deg``, ``alignment_inliers``,
``alignment_scale``, and per-image errors under ``per_image``. With fewer than 3
registered images no similarity can be fitted and the error values are None.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

THRESHOLDS_M = (0.01, 0.03, 0.10)


class GroundTruthError(ValueError):
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
    except OSError as error:
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
    if abs(np.linalg.det(R) - 1) > 1e-3:
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


# --------------------------------------------------------------------------- alignment


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991); ``src``, ``dst`` N x 3."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def robust_similarity(
    src: np.ndarray,
    dst: np.ndarray,
    threshold: float | None = None,
    iterations: int = 500,
    seed: int = 0,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """RANSAC similarity ``dst ~ s R src + t`` over 3-point samples, refitted on the inliers.

    ``threshold`` (metres in ``dst``): inlier residual; default 5 % of the median distance of
    ``dst`` to its centroid (the scene's scale). Returns ``(s, R, t, inlier mask)``. With 3 or
    4 points every point is used (RANSAC needs redundancy to reject anything).
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    n = len(src)
    if n < 3:
        raise ValueError(f"a similarity needs at least 3 points, got {n}")
    if n <= 4:
        s, R, t = umeyama(src, dst)
        return s, R, t, np.ones(n, bool)
    if threshold is None:
        threshold = 0.05 * float(np.median(np.linalg.norm(dst - dst.mean(0), axis=1)))
        threshold = max(threshold, 1e-9)
    rng = np.random.default_rng(seed)
    best, best_score = None, (-1, np.inf)
    for _ in range(iterations):
        idx = rng.choice(n, 3, replace=False)
        if np.linalg.matrix_rank(src[idx] - src[idx].mean(0), tol=1e-9) < 2:
            continue  # collinear sample
        s, R, t = umeyama(src[idx], dst[idx])
        err = np.linalg.norm((s * (R @ src.T)).T + t - dst, axis=1)
        inliers = err < threshold
        score = (int(inliers.sum()), float(err[inliers].sum()))
        if score[0] > best_score[0] or (score[0] == best_score[0] and score[1] < best_score[1]):
            best, best_score = inliers, score
    if best is None or best.sum() < 3:
        best = np.ones(n, bool)
    for _ in range(3):  # refit on the inliers, re-classify
        s, R, t = umeyama(src[best], dst[best])
        err = np.linalg.norm((s * (R @ src.T)).T + t - dst, axis=1)
        new = err < threshold
        if new.sum() < 3 or np.array_equal(new, best):
            break
        best = new
    return s, R, t, best


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees (numerically clipped)."""
    cos = (np.trace(R) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


# --------------------------------------------------------------------------- evaluation


def evaluate_poses(
    poses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    gt: Mapping[str, StrechaCamera],
    threshold: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare SfM poses ``name -> (R_cw 3x3, t_cw 3)`` (world-to-camera) with GT cameras.

    Only names present in ``gt`` count; ``total_images`` is ``len(gt)``. See the module
    docstring for the metrics.
    """
    names = [n for n in poses if n in gt]
    result: dict[str, Any] = {
        "registered_images": len(names),
        "total_images": len(gt),
        "median_center_error_m": None,
        "mean_center_error_m": None,
        "max_center_error_m": None,
        **{f"pct_center_within_{round(t * 100)}cm": 0.0 if gt else None for t in THRESHOLDS_M},
        "median_rotation_error_deg": None,
        "max_rotation_error_deg": None,
        "alignment_inliers": 0,
        "alignment_scale": None,
        "per_image": {},
    }
    if len(names) < 3:
        return result
    R_sfm = np.stack([np.asarray(poses[n][0], float) for n in names])
    t_sfm = np.stack([np.asarray(poses[n][1], float).reshape(3) for n in names])
    C_sfm = -np.einsum("nji,nj->ni", R_sfm, t_sfm)  # -R^T t
    C_gt = np.stack([gt[n].C for n in names])
    s, R_a, t_a, inliers = robust_similarity(C_sfm, C_gt, threshold, seed=seed)
    C_aligned = (s * (R_a @ C_sfm.T)).T + t_a
    center_err = np.linalg.norm(C_aligned - C_gt, axis=1)
    rot_err = np.array([
        rotation_angle_deg(gt[n].R_cw @ (R_sfm[i] @ R_a.T).T) for i, n in enumerate(names)
    ])
    result.update({
        "median_center_error_m": float(np.median(center_err)),
        "mean_center_error_m": float(np.mean(center_err)),
        "max_center_error_m": float(np.max(center_err)),
        **{f"pct_center_within_{round(t * 100)}cm": 100.0 * float((center_err < t).sum()) / len(gt)
           for t in THRESHOLDS_M},
        "median_rotation_error_deg": float(np.median(rot_err)),
        "max_rotation_error_deg": float(np.max(rot_err)),
        "alignment_inliers": int(inliers.sum()),
        "alignment_scale": float(s),
        "per_image": {n: {"center_error_m": float(center_err[i]), "rotation_error_deg": float(rot_err[i]),
                          "alignment_inlier": bool(inliers[i])} for i, n in enumerate(names)},
    })
    return result


def reconstruction_poses(reconstruction) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (R_cw, t_cw)`` of the registered images of a ``pycolmap.Reconstruction``."""
    poses = {}
    for image in reconstruction.images.values():
        if not image.has_pose:
            continue
        pose = image.cam_from_world
        pose = pose() if callable(pose) else pose  # a method in pycolmap >= 3.12, a property before
        poses[image.name] = (np.asarray(pose.rotation.matrix()), np.asarray(pose.translation))
    return poses


def evaluate_reconstruction(
    reconstruction,
    gt_dir: str | os.PathLike,
    names: Sequence[str],
    threshold: float | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_poses` of a ``pycolmap.Reconstruction`` (or None: nothing registered)
    against the GT cameras of ``names`` in ``gt_dir``."""
    gt = load_gt_cameras(gt_dir, names)
    poses = reconstruction_poses(reconstruction) if reconstruction is not None else {}
    return evaluate_poses(poses, gt, threshold)
