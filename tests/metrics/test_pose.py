"""Relative-pose errors and AUC on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.metrics import pose as M


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    X = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * X + (1 - np.cos(a)) * X @ X


def _gt_set(n=20, seed=0):
    rng = np.random.default_rng(seed)
    R = np.stack([_rot(rng.normal(size=3), rng.uniform(5, 60)) for _ in range(n)])
    t = rng.normal(size=(n, 3))
    return R, t


def test_exact_poses_give_auc_one():
    R, t = _gt_set()
    err_R, err_t, err = M.pose_error_deg(R, 3.0 * t, R, t)  # the scale of t is not observable
    assert np.abs(err).max() < 1e-5
    assert M.pose_auc(err) == pytest.approx([1.0, 1.0, 1.0])
    # the sign of t is not observable from an essential matrix either
    assert np.abs(M.pose_error_deg(R, -t, R, t)[1]).max() < 1e-5


def test_known_rotation_error_gives_expected_auc():
    """Half the pairs exact, half with a 3 deg rotation error about a random axis (t exact).

    The recall curve goes through (0, 0), (0, 1/2) (the exact half), rises linearly to
    (3, 1/2 + 1/n) where the first erroneous pair counts, jumps to 1 and stays there:
    AUC@T = [3 (1/2 + 1/2 + 1/n) / 2 + (T - 3)] / T."""
    n = 20
    R, t = _gt_set(n)
    rng = np.random.default_rng(1)
    R_est = R.copy()
    for i in range(n // 2, n):
        R_est[i] = _rot(rng.normal(size=3), 3.0) @ R[i]
    err_R, err_t, err = M.pose_error_deg(R_est, t, R, t)
    assert np.allclose(err_R[n // 2:], 3.0, atol=1e-6) and np.abs(err_R[: n // 2]).max() < 1e-5
    assert np.allclose(err, err_R, atol=1e-5)
    expected = [(1.5 * (1 + 1 / n) + (T - 3)) / T for T in (5, 10, 20)]
    assert M.pose_auc(err) == pytest.approx(expected, abs=1e-6)
    # errors above every threshold, or no estimate at all, give 0
    assert M.pose_auc([30.0, np.inf]) == [0.0, 0.0, 0.0]
    # an error above 5 deg counts at 10 and 20 only
    auc5, auc10, _ = M.pose_auc([7.0])
    assert auc5 == 0.0 and auc10 == pytest.approx((7 * 0.5 + 3) / 10)  # (0,0)-(7,1), then flat to 10


def test_translation_direction_error():
    t_gt = np.array([1.0, 0, 0])
    t = np.array([np.cos(np.radians(10)), np.sin(np.radians(10)), 0])
    assert M.translation_error_deg(t, t_gt) == pytest.approx(10.0)
    assert M.translation_error_deg(-t, t_gt) == pytest.approx(10.0)  # folded: min(e, 180 - e)
    R = np.eye(3)
    _, err_t, err = M.pose_error_deg(_rot([0, 0, 1], 4.0), t, R, t_gt)
    assert err == pytest.approx(10.0) and err_t == pytest.approx(10.0)


def test_recall_curve():
    curve = M.recall_curve([1.0, 2.0, np.inf, 8.0], np.array([0.0, 1.0, 5.0, 10.0]))
    assert curve.tolist() == [0.0, 0.25, 0.5, 0.75]
