"""Homography-benchmark metrics (HPatches / Oxford), on plain arrays.

Conventions: keypoints are ``N x 2`` (x, y) pixel coordinates with the centre of the top-left
pixel at (0, 0); ``H`` maps image-0 pixels to image-1 pixels; ``matches`` is ``M x 2``
(index in image 0, index in image 1).
"""

from __future__ import annotations

import numpy as np
import torch

THRESHOLDS = tuple(range(1, 11))  # px, for MMA and homography accuracy
RANSAC_THRESHOLD = 3.0  # px, cv2.findHomography reprojection threshold
RANSAC_SEED = 0


def warp_points(points: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Apply a homography to ``N x 2`` points."""
    pts = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return pts[:, :2] / pts[:, 2:]


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Points inside an image of ``size = (W, H)`` (pixel-centre convention)."""
    w, h = size
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def reprojection_errors(kp0: np.ndarray, kp1: np.ndarray, matches: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Distance between ``H(kp0[i])`` and ``kp1[j]`` for every match ``(i, j)``."""
    if len(matches) == 0:
        return np.zeros(0)
    return np.linalg.norm(warp_points(kp0[matches[:, 0]], H) - kp1[matches[:, 1]], axis=1)


def matching_accuracy(errors: np.ndarray, thresholds=THRESHOLDS) -> np.ndarray:
    """Fraction of matches with error <= t, for each threshold t (0 when there are no matches)."""
    if len(errors) == 0:
        return np.zeros(len(thresholds))
    return np.array([(errors <= t).mean() for t in thresholds])


def image_corners(size: tuple[int, int], outer: bool = False) -> np.ndarray:
    """The four corner pixel centres of an image of ``size = (W, H)``; ``outer``: the outer
    corners of the corner pixels (glue-factory's (0, 0) .. (W, H) in its corner-origin pixels)."""
    w, h = size
    if outer:
        return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64) - 0.5
    return np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)


def corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, size0: tuple[int, int], outer: bool = False) -> float:
    """Mean distance between the image-0 corners mapped by the estimate and by the truth."""
    if H_est is None:
        return float("inf")
    corners = image_corners(size0, outer)
    err = np.linalg.norm(warp_points(corners, H_est) - warp_points(corners, H_gt), axis=1).mean()
    return float(err) if np.isfinite(err) else float("inf")


def estimate_homography(
    kp0: np.ndarray, kp1: np.ndarray, matches: np.ndarray,
    threshold: float = RANSAC_THRESHOLD, seed: int = RANSAC_SEED, estimator: str = "opencv",
) -> np.ndarray | None:
    """Robust homography from matched keypoints (fixed seed, 10,000 iterations, confidence 0.9999);
    None if it fails. ``estimator``: a name of :mod:`sekd_plugin.geometry.estimators` (default
    OpenCV RANSAC, the benchmark's historical setting)."""
    from ..geometry.estimators import estimate_homography as robust_homography

    if len(matches) < 4:
        return None
    H, _ = robust_homography(kp0[matches[:, 0]], kp1[matches[:, 1]], estimator, threshold, seed,
                             max_iters=10000, confidence=0.9999)
    return H


def common_region_fraction(H: np.ndarray, size0: tuple[int, int], size1: tuple[int, int], steps: int = 33) -> float:
    """Share of a ``steps x steps`` grid over image 0 that ``H`` maps inside image 1 (points in
    front: positive homogeneous scale). When none does but image 1 maps into image 0 through
    ``H^-1`` (a small image 1 within a large image 0), a token ``1 / steps**2``. 0.0: the two
    images share no region, and every metric of the pair is 0 by construction."""

    def inside_share(H_, size_a, size_b):
        w, h = size_a
        H_ = np.asarray(H_, float)
        # H and -H are the same homography (Oxford's leuven H1to5p is stored with a negative
        # scale): orient it so the centre of image a maps in front
        if (H_ @ np.array([(w - 1) / 2, (h - 1) / 2, 1.0]))[2] < 0:
            H_ = -H_
        xs, ys = np.meshgrid(np.linspace(-0.5, w - 0.5, steps), np.linspace(-0.5, h - 0.5, steps))
        pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 1) @ H_.T
        front = pts[:, 2] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = pts[:, :2] / pts[:, 2:]
        return float((front & _inside(xy, size_b)).mean())

    share = inside_share(H, size0, size1)
    if share == 0.0:
        share = inside_share(np.linalg.inv(H), size1, size0) and 1.0 / steps ** 2  # tiny but not empty
    return share


AUC_THRESHOLDS = (1, 3, 5)  # px, glue-factory's homography AUC


def homography_auc(corner_errors, thresholds=AUC_THRESHOLDS) -> dict[int, float]:
    """Area under the cumulative corner-error curve up to each threshold t, divided by t
    (glue-factory's homography AUC; a failed estimate has an infinite error)."""
    from .pose import pose_auc

    return dict(zip(thresholds, pose_auc(np.asarray(corner_errors, float), thresholds)))


def _covisible(kp0, kp1, H, size0, size1):
    """Keypoints of each image whose correspondence falls inside the other image."""
    in0 = _inside(warp_points(kp0, H), size1) if len(kp0) else np.zeros(0, bool)
    in1 = _inside(warp_points(kp1, np.linalg.inv(H)), size0) if len(kp1) else np.zeros(0, bool)
    return in0, in1


def repeatability(
    kp0: np.ndarray, kp1: np.ndarray, H: np.ndarray,
    size0: tuple[int, int], size1: tuple[int, int], threshold: float = 3.0,
) -> float:
    """SuperPoint's repeatability: keypoints of the common region with a counterpart within
    ``threshold`` px in the other image, ``(n0_rep + n1_rep) / (n0 + n1)``."""
    in0, in1 = _covisible(kp0, kp1, H, size0, size1)
    w0, k1 = warp_points(kp0[in0], H), kp1[in1]
    if len(w0) + len(k1) == 0:
        return 0.0
    if len(w0) == 0 or len(k1) == 0:
        return 0.0
    d = torch.cdist(torch.from_numpy(w0), torch.from_numpy(k1.astype(np.float64))).numpy()
    n_rep = (d.min(1) <= threshold).sum() + (d.min(0) <= threshold).sum()
    return float(n_rep / (len(w0) + len(k1)))


def matching_score(
    kp0: np.ndarray, kp1: np.ndarray, errors: np.ndarray, H: np.ndarray,
    size0: tuple[int, int], size1: tuple[int, int], threshold: float = 3.0,
) -> float:
    """Correct matches (error <= ``threshold``) over the smaller number of keypoints in the
    common region (Mikolajczyk et al.)."""
    in0, in1 = _covisible(kp0, kp1, H, size0, size1)
    n = min(in0.sum(), in1.sum())
    return float((errors <= threshold).sum() / n) if n else 0.0
