"""Localization metrics: pose errors against ground truth and recall at (metres, degrees) thresholds.

Poses are world-to-camera ``(R 3x3, t (3,))`` (COLMAP's ``cam_from_world``); the position error
is the distance between the camera centres ``-R^T t`` in world units (metres on Strecha), the
rotation error the angle of ``R_est R_gt^T``. A query that was not localized has infinite
errors: it is a miss at every threshold, never dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

THRESHOLDS = ((0.01, 0.1), (0.05, 0.5), (0.25, 2.0))  # (metres, degrees), as hloc / Aachen report


def pose_errors(R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray) -> tuple[float, float]:
    """``(position error, rotation error in degrees)`` of one world-to-camera pose (3x3, (3,) each)."""
    R_est, R_gt = np.asarray(R_est, float), np.asarray(R_gt, float)
    C_est, C_gt = -R_est.T @ np.asarray(t_est, float), -R_gt.T @ np.asarray(t_gt, float)
    cos = (np.trace(R_est @ R_gt.T) - 1) / 2
    return float(np.linalg.norm(C_est - C_gt)), float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def recall(errors_m: Sequence[float], errors_deg: Sequence[float],
           thresholds: Sequence[tuple[float, float]] = THRESHOLDS) -> list[float]:
    """Share of queries with both errors within each ``(metres, degrees)`` threshold (inf = miss)."""
    e_m, e_d = np.asarray(errors_m, float), np.asarray(errors_deg, float)
    if len(e_m) == 0:
        return [float("nan")] * len(thresholds)
    return [float(np.mean((e_m <= m) & (e_d <= d))) for m, d in thresholds]


def summarize(errors_m: Sequence[float], errors_deg: Sequence[float]) -> dict[str, float | int | None]:
    """Recall at :data:`THRESHOLDS`, median errors (over all queries, misses as inf) and counts."""
    e_m, e_d = np.asarray(errors_m, float), np.asarray(errors_deg, float)
    out: dict[str, float | int | None] = {"num_queries": int(len(e_m)), "num_localized": int(np.isfinite(e_m).sum())}
    for (m, d), r in zip(THRESHOLDS, recall(e_m, e_d)):
        out[f"recall@{m * 100:g}cm,{d:g}deg"] = r
    out["median_position_error_m"] = float(np.median(e_m)) if len(e_m) else None
    out["median_rotation_error_deg"] = float(np.median(e_d)) if len(e_d) else None
    return out
