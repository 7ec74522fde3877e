"""Camera poses of an SfM model against ground-truth cameras (Strecha format).

Evaluation (:func:`evaluate_poses`): a similarity ``X_gt = s R_a X_sfm + t_a`` is fitted from
the SfM camera centres to the GT centres with pycolmap (``estimate_sim3d_robust``: LO-RANSAC
over 3-point samples, refined on the inliers; with 3 or 4 cameras ``estimate_sim3d`` on all of
them, RANSAC having no redundancy to reject anything), then

* centre error = ``|s R_a C_sfm + t_a - C_gt|`` (metres);
* rotation error = angle of ``R_gt_cw (R_sfm_cw R_a^T)^T`` (degrees), ``R_cw`` being the
  world-to-camera rotations.

**Failure** (``failed`` / ``failure``): a model is reported as failed, not only by a large
number, when fewer than 3 images are registered (nothing to align), when the median centre
error exceeds ``FAIL_CENTER_FRACTION`` (10 %) of the scene's extent (the largest distance
between two GT camera centres), or when fewer than ``FAIL_MIN_INLIER_FRACTION`` (half) of the
registered cameras are inliers of the alignment. Registered-but-wrong never reads as success.

Result keys: ``registered_images``, ``total_images``, ``median_center_error_m``,
``mean_center_error_m``, ``max_center_error_m``, ``pct_center_within_1cm`` / ``3cm`` /
``10cm`` (percent of **all** GT images: an unregistered image counts as a failure),
``median_rotation_error_deg``, ``max_rotation_error_deg``, ``alignment_inliers``,
``alignment_threshold_m``, ``alignment_scale``, ``scene_extent_m``, ``failed``, ``failure``
(the reasons, "" when not failed) and per-image errors under ``per_image``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pycolmap

__all__ = ["THRESHOLDS_M", "FAIL_CENTER_FRACTION", "FAIL_MIN_INLIER_FRACTION", "similarity", "robust_similarity",
           "rotation_angle_deg", "scene_extent", "evaluate_poses", "reconstruction_poses",
           "evaluate_reconstruction"]

THRESHOLDS_M = (0.01, 0.03, 0.10)
FAIL_CENTER_FRACTION = 0.10
FAIL_MIN_INLIER_FRACTION = 0.5


def _sim3d_parts(sim: pycolmap.Sim3d) -> tuple[float, np.ndarray, np.ndarray]:
    return float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` (pycolmap's Umeyama); ``src``, ``dst`` N x 3."""
    sim = pycolmap.estimate_sim3d(np.asarray(src, float), np.asarray(dst, float))
    if sim is None:
        raise ValueError("degenerate point sets: no similarity (collinear or coincident points)")
    return _sim3d_parts(sim)


def robust_similarity(
    src: np.ndarray,
    dst: np.ndarray,
    threshold: float | None = None,
    seed: int = 0,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """LO-RANSAC similarity ``dst ~ s R src + t`` (pycolmap), refined on the inliers.

    ``threshold`` (units of ``dst``): inlier residual; default 5 % of the median distance of
    ``dst`` to its centroid (the scene's scale). Returns ``(s, R, t, inlier mask)``. With 3 or
    4 points every point is used.
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    n = len(src)
    if n < 3:
        raise ValueError(f"a similarity needs at least 3 points, got {n}")
    if threshold is None:
        threshold = max(0.05 * float(np.median(np.linalg.norm(dst - dst.mean(0), axis=1))), 1e-9)
    if n <= 4:
        s, R, t = similarity(src, dst)
        return s, R, t, np.ones(n, bool)
    options = pycolmap.RANSACOptions(max_error=float(threshold))
    options.random_seed = int(seed)
    result = pycolmap.estimate_sim3d_robust(src, dst, options)
    if result is None or int(result["num_inliers"]) < 3:  # no consensus: plain fit, all points
        s, R, t = similarity(src, dst)
        err = np.linalg.norm((s * (R @ src.T)).T + t - dst, axis=1)
        return s, R, t, err < threshold
    s, R, t = _sim3d_parts(result["tgt_from_src"])
    return s, R, t, np.asarray(result["inlier_mask"], bool)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle(s) of rotation matrices ``[... x] 3 x 3`` in degrees (numerically clipped)."""
    R = np.asarray(R, float)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def scene_extent(centers: np.ndarray) -> float:
    """Largest distance between two camera centres (N x 3)."""
    centers = np.asarray(centers, float)
    if len(centers) < 2:
        return 0.0
    return float(np.linalg.norm(centers[:, None] - centers[None], axis=-1).max())


def evaluate_poses(
    poses: Mapping[str, tuple[np.ndarray, np.ndarray]],
    gt: Mapping[str, Any],
    threshold: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare SfM poses ``name -> (R_cw 3x3, t_cw 3)`` (world-to-camera) with GT cameras
    (``name -> camera`` with ``R_cw`` 3x3 world-to-camera and ``C`` 3 centre, e.g. the
    :class:`~sekd_plugin.datasets.strecha.StrechaCamera` read by the benchmark).

    Only names present in ``gt`` count; ``total_images`` is ``len(gt)``. See the module
    docstring for the metrics and the failure rule.
    """
    names = [n for n in poses if n in gt]
    extent = scene_extent(np.stack([c.C for c in gt.values()])) if gt else 0.0
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
        "alignment_threshold_m": None,
        "alignment_scale": None,
        "scene_extent_m": extent,
        "failed": True,
        "failure": f"{len(names)} registered image(s) with GT: at least 3 are needed to align",
        "per_image": {},
    }
    if len(names) < 3:
        return result
    R_sfm = np.stack([np.asarray(poses[n][0], float) for n in names])
    t_sfm = np.stack([np.asarray(poses[n][1], float).reshape(3) for n in names])
    C_sfm = -np.einsum("nji,nj->ni", R_sfm, t_sfm)  # -R^T t
    C_gt = np.stack([gt[n].C for n in names])
    if threshold is None:
        threshold = max(0.05 * float(np.median(np.linalg.norm(C_gt - C_gt.mean(0), axis=1))), 1e-9)
    try:
        s, R_a, t_a, inliers = robust_similarity(C_sfm, C_gt, threshold, seed=seed)
    except ValueError as error:  # (nearly) collinear centres: the alignment is undetermined
        result["failure"] = f"no similarity alignment of the {len(names)} camera centres: {error}"
        return result
    C_aligned = (s * (R_a @ C_sfm.T)).T + t_a
    center_err = np.linalg.norm(C_aligned - C_gt, axis=1)
    R_gt = np.stack([gt[n].R_cw for n in names])
    rot_err = rotation_angle_deg(R_gt @ np.swapaxes(R_sfm @ R_a.T, -1, -2))
    median_err = float(np.median(center_err))
    reasons = []
    if median_err > FAIL_CENTER_FRACTION * extent:
        reasons.append(f"median centre error {median_err:.3g} m > {FAIL_CENTER_FRACTION:.0%} of the "
                       f"scene extent ({extent:.3g} m)")
    if inliers.sum() < FAIL_MIN_INLIER_FRACTION * len(names):
        reasons.append(f"only {int(inliers.sum())}/{len(names)} cameras fit the similarity alignment "
                       f"(threshold {threshold:.3g} m)")
    result.update({
        "median_center_error_m": median_err,
        "mean_center_error_m": float(np.mean(center_err)),
        "max_center_error_m": float(np.max(center_err)),
        **{f"pct_center_within_{round(t * 100)}cm": 100.0 * float((center_err < t).sum()) / len(gt)
           for t in THRESHOLDS_M},
        "median_rotation_error_deg": float(np.median(rot_err)),
        "max_rotation_error_deg": float(np.max(rot_err)),
        "alignment_inliers": int(inliers.sum()),
        "alignment_threshold_m": float(threshold),
        "alignment_scale": float(s),
        "failed": bool(reasons),
        "failure": "; ".join(reasons),
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
    gt: Mapping[str, Any],
    threshold: float | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_poses` of a ``pycolmap.Reconstruction`` (or None: nothing registered)
    against the GT cameras ``gt`` (read by the caller: metrics load no files)."""
    poses = reconstruction_poses(reconstruction) if reconstruction is not None else {}
    return evaluate_poses(poses, gt, threshold)
