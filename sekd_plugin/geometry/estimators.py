"""Robust two-view estimators behind one name: ``opencv`` | ``magsac`` | ``pycolmap`` | ``poselib``.

* ``opencv``: OpenCV RANSAC (``cv2.findHomography`` / ``cv2.findEssentialMat`` with ``cv2.RANSAC``);
* ``magsac``: OpenCV's USAC with MAGSAC++ scoring (``cv2.USAC_MAGSAC``);
* ``pycolmap``: COLMAP's LO-RANSAC (``estimate_homography_matrix`` / ``estimate_essential_matrix``);
* ``poselib``: PoseLib's LO-RANSAC with non-linear refinement (optional package, extra
  ``[poselib]``; asking for it without the package is a :class:`ConfigError` with the hint).

Conventions: points are ``N x 2`` float pixel coordinates with the centre of the top-left pixel
at (0, 0) (hloc's keypoints). A homography maps image-0 points to image-1 points in that
convention. For relative pose, ``K0`` / ``K1`` are 3 x 3 intrinsics in COLMAP's convention
(corner of the top-left pixel at (0, 0)), so the points are shifted by +0.5 before use, for
every estimator alike; the result is ``cam1_from_cam0`` = ``(R 3x3, t (3,) unit)``. Every
estimator gets the same inlier threshold in pixels and a fixed seed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import cv2
import numpy as np

from ..common.errors import ConfigError

ESTIMATORS = ("opencv", "magsac", "pycolmap", "poselib")
POSELIB_HINT = 'pip install poselib (or pip install -e ".[poselib]")'


def poselib_available() -> bool:
    """Whether the optional ``poselib`` package can be imported."""
    return importlib.util.find_spec("poselib") is not None


def check_estimator(name: str) -> str:
    """``name`` if it is a usable estimator; else a :class:`ConfigError` naming it (with the
    install hint for a missing poselib)."""
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator '{name}'; valid: {list(ESTIMATORS)}")
    if name == "poselib" and not poselib_available():
        raise ConfigError(f"--estimator poselib needs the package poselib, which is not installed: {POSELIB_HINT}")
    return name


def describe(name: str) -> str:
    """One line naming the implementation of an estimator (recorded in results.json)."""
    return {
        "opencv": f"OpenCV {cv2.__version__} RANSAC",
        "magsac": f"OpenCV {cv2.__version__} USAC_MAGSAC (MAGSAC++)",
        "pycolmap": "pycolmap LO-RANSAC (COLMAP)",
        "poselib": "PoseLib LO-RANSAC + refinement",
    }[name]


def _cv_method(name: str) -> int:
    return cv2.USAC_MAGSAC if name == "magsac" else cv2.RANSAC


def estimate_homography(pts0: np.ndarray, pts1: np.ndarray, estimator: str = "opencv", threshold: float = 3.0,
                        seed: int = 0, max_iters: int = 10000, confidence: float = 0.9999
                        ) -> tuple[np.ndarray | None, np.ndarray]:
    """Robust homography from ``N x 2`` correspondences: ``(H 3x3 or None, inlier mask (N,) bool)``."""
    check_estimator(estimator)
    pts0, pts1 = np.asarray(pts0, np.float64).reshape(-1, 2), np.asarray(pts1, np.float64).reshape(-1, 2)
    none = (None, np.zeros(len(pts0), bool))
    if len(pts0) < 4:
        return none
    if estimator in ("opencv", "magsac"):
        cv2.setRNGSeed(int(seed))
        H, mask = cv2.findHomography(pts0, pts1, _cv_method(estimator), float(threshold),
                                     maxIters=int(max_iters), confidence=float(confidence))
        if H is None:
            return none
        return H, mask.ravel().astype(bool)
    if estimator == "pycolmap":
        import pycolmap

        options = pycolmap.RANSACOptions(max_error=float(threshold), confidence=float(confidence),
                                         max_num_trials=int(max_iters))
        options.random_seed = int(seed)
        result = pycolmap.estimate_homography_matrix(pts0, pts1, options)
        if result is None:
            return none
        return np.asarray(result["H"]), np.asarray(result["inlier_mask"], bool).ravel()
    import poselib

    H, info = poselib.estimate_homography(pts0, pts1, {"max_reproj_error": float(threshold), "seed": int(seed),
                                                       "max_iterations": int(max_iters),
                                                       "success_prob": float(confidence)}, {})
    inliers = np.asarray(info.get("inliers", []), bool).ravel()
    if not inliers.any() or not np.all(np.isfinite(H)):
        return none
    return np.asarray(H), inliers


def _pinhole(K: np.ndarray) -> list[float]:
    K = np.asarray(K, float)
    return [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]


def estimate_relative_pose(pts0: np.ndarray, pts1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                           size0: tuple[int, int], size1: tuple[int, int], estimator: str = "pycolmap",
                           threshold: float = 1.0, seed: int = 0) -> dict[str, Any] | None:
    """Calibrated relative pose from ``N x 2`` correspondences: ``{"R", "t" (unit), "num_inliers",
    "inliers" (N,) bool}`` (``cam1_from_cam0``), or None (fewer than 5 points or no model).

    ``size0`` / ``size1``: (W, H) of the images (PoseLib and pycolmap cameras need them);
    ``threshold``: epipolar inlier threshold in pixels.
    """
    check_estimator(estimator)
    pts0 = np.asarray(pts0, np.float64).reshape(-1, 2) + 0.5  # COLMAP's pixel convention, as K
    pts1 = np.asarray(pts1, np.float64).reshape(-1, 2) + 0.5
    if len(pts0) < 5:
        return None
    if estimator in ("opencv", "magsac"):
        n0 = cv2.undistortPoints(pts0[:, None], np.asarray(K0, float), None).reshape(-1, 2)
        n1 = cv2.undistortPoints(pts1[:, None], np.asarray(K1, float), None).reshape(-1, 2)
        f = np.mean([K0[0][0], K0[1][1], K1[0][0], K1[1][1]])
        cv2.setRNGSeed(int(seed))
        E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), method=_cv_method(estimator), prob=0.99999,
                                       threshold=float(threshold) / f, maxIters=10000)
        if E is None or E.shape != (3, 3):  # several solutions are stacked: keep the first
            if E is None or E.shape[0] < 3:
                return None
            E = E[:3]
        inliers = mask.ravel().astype(bool)
        _, R, t, _ = cv2.recoverPose(E, n0, n1, np.eye(3), mask=mask.copy())
        return {"R": R, "t": t.ravel() / max(np.linalg.norm(t), 1e-15), "num_inliers": int(inliers.sum()),
                "inliers": inliers}
    if estimator == "pycolmap":
        import pycolmap

        cams = [pycolmap.Camera(model="PINHOLE", width=int(s[0]), height=int(s[1]), params=_pinhole(K))
                for K, s in ((K0, size0), (K1, size1))]
        options = pycolmap.RANSACOptions(max_error=float(threshold))
        options.random_seed = int(seed)
        result = pycolmap.estimate_essential_matrix(pts0, pts1, cams[0], cams[1], options)
        if result is None:
            return None
        pose = result["cam2_from_cam1"]
        return {"R": np.asarray(pose.rotation.matrix()), "t": np.asarray(pose.translation),
                "num_inliers": int(result["num_inliers"]), "inliers": np.asarray(result["inlier_mask"], bool).ravel()}
    import poselib

    cams = [{"model": "PINHOLE", "width": int(s[0]), "height": int(s[1]), "params": _pinhole(K)}
            for K, s in ((K0, size0), (K1, size1))]
    pose, info = poselib.estimate_relative_pose(pts0, pts1, cams[0], cams[1],
                                                {"max_epipolar_error": float(threshold), "seed": int(seed)}, {})
    inliers = np.asarray(info.get("inliers", []), bool).ravel()
    if not inliers.any():
        return None
    t = np.asarray(pose.t, float)
    return {"R": np.asarray(pose.R), "t": t / max(np.linalg.norm(t), 1e-15), "num_inliers": int(inliers.sum()),
            "inliers": inliers}


def estimate_fundamental(pts0: np.ndarray, pts1: np.ndarray, estimator: str = "opencv", threshold: float = 4.0,
                         seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """Robust fundamental matrix (uncalibrated verification) from ``N x 2`` correspondences:
    ``(F 3x3 or None, inlier mask (N,) bool)``; ``threshold``: epipolar error in pixels."""
    check_estimator(estimator)
    pts0, pts1 = np.asarray(pts0, np.float64).reshape(-1, 2), np.asarray(pts1, np.float64).reshape(-1, 2)
    none = (None, np.zeros(len(pts0), bool))
    if len(pts0) < 8:
        return none
    if estimator in ("opencv", "magsac"):
        cv2.setRNGSeed(int(seed))
        F, mask = cv2.findFundamentalMat(pts0, pts1, _cv_method(estimator), float(threshold), 0.9999, 10000)
        if F is None or F.shape != (3, 3):
            return none
        return F, mask.ravel().astype(bool)
    if estimator == "pycolmap":
        import pycolmap

        options = pycolmap.RANSACOptions(max_error=float(threshold))
        options.random_seed = int(seed)
        result = pycolmap.estimate_fundamental_matrix(pts0, pts1, options)
        if result is None:
            return none
        return np.asarray(result["F"]), np.asarray(result["inlier_mask"], bool).ravel()
    import poselib

    F, info = poselib.estimate_fundamental(pts0, pts1, {"max_epipolar_error": float(threshold), "seed": int(seed)}, {})
    inliers = np.asarray(info.get("inliers", []), bool).ravel()
    return (np.asarray(F), inliers) if inliers.any() else none
