"""Relative-pose errors and their AUC, as LightGlue / glue-factory report them on MegaDepth-1500.

* rotation error: the angle of ``R_est R_gt^T`` (degrees);
* translation error: the angle between the estimated and the GT translation directions,
  folded to ``min(e, 180 - e)`` (an essential matrix fixes the direction only up to sign);
* pose error: ``max(rotation error, translation error)``; a pair without an estimate has an
  infinite error (it counts as a miss at every threshold);
* AUC at ``T`` degrees: the area under the recall-vs-error curve from 0 to T, divided by T,
  the curve going through ``(0, 0)`` and ``(e_i, i / n)`` for the sorted errors and held flat
  to T (SuperGlue's ``pose_auc``, which glue-factory and LightGlue use).

All functions are vectorised over pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

THRESHOLDS_DEG = (5, 10, 20)


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Angle of ``R_est R_gt^T`` in degrees; ``[... x] 3 x 3`` each."""
    R = np.asarray(R_est, float) @ np.swapaxes(np.asarray(R_gt, float), -1, -2)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def translation_error_deg(t_est: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """Angle between translation directions in degrees, folded to [0, 90] (sign ambiguity of E)."""
    t_est, t_gt = np.asarray(t_est, float), np.asarray(t_gt, float)
    n = np.linalg.norm(t_est, axis=-1) * np.linalg.norm(t_gt, axis=-1)
    cos = np.sum(t_est * t_gt, axis=-1) / np.maximum(n, 1e-15)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.minimum(err, 180.0 - err)


def pose_error_deg(R_est, t_est, R_gt, t_gt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rotation error, translation error, max of both)`` in degrees."""
    err_R = rotation_error_deg(R_est, R_gt)
    err_t = translation_error_deg(t_est, t_gt)
    return err_R, err_t, np.maximum(err_R, err_t)


def pose_auc(errors: Sequence[float], thresholds: Sequence[float] = THRESHOLDS_DEG) -> list[float]:
    """AUC of the recall curve of ``errors`` (degrees; inf = no estimate) up to each threshold."""
    errors = np.sort(np.asarray(errors, float))
    n = len(errors)
    if n == 0:
        return [float("nan")] * len(thresholds)
    recall = np.arange(1, n + 1) / n
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for t in thresholds:
        k = int(np.searchsorted(errors, t, side="left"))  # the origin and the errors below t
        e = np.concatenate([errors[:k], [t]])
        r = np.concatenate([recall[:k], [recall[k - 1]]])
        aucs.append(float(np.sum((e[1:] - e[:-1]) * (r[1:] + r[:-1]) / 2) / t))
    return aucs


def recall_curve(errors: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Fraction of pairs with an error <= each value of ``grid`` (for the AUC plot)."""
    errors = np.asarray(errors, float)
    if len(errors) == 0:
        return np.full(len(grid), np.nan)
    return (errors[None, :] <= np.asarray(grid, float)[:, None]).mean(1)
