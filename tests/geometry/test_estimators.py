"""Each robust estimator pinned on constructed correspondences with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.common import ConfigError
from sekd_plugin.geometry import estimators as E

from ..helpers import rotation

PARAMS = [pytest.param(name, marks=pytest.mark.skipif(name == "poselib" and not E.poselib_available(),
                                                      reason="poselib not installed")) for name in E.ESTIMATORS]
K = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])


def _homography_data(seed=0, n=200, outliers=50):
    rng = np.random.default_rng(seed)
    H = np.array([[1.1, 0.05, 10], [-0.03, 0.95, -5], [1e-4, -5e-5, 1]])
    p0 = rng.uniform(0, 640, (n, 2))
    h = np.c_[p0, np.ones(n)] @ H.T
    p1 = h[:, :2] / h[:, 2:]
    p1[:outliers] += rng.uniform(20, 60, (outliers, 2)) * rng.choice([-1, 1], (outliers, 2))
    return H, p0, p1


def _two_views(seed=0, n=300, outliers=60):
    rng = np.random.default_rng(seed)
    X = rng.uniform([-2, -2, 4], [2, 2, 8], (n, 3))
    R, t = rotation([0.2, 1, 0.1], 10), np.array([1.0, 0.1, 0.2])

    def project(P):  # hloc's pixel-centre keypoints of a K in COLMAP's convention
        x = P @ K.T
        return x[:, :2] / x[:, 2:] - 0.5

    p0, p1 = project(X), project(X @ R.T + t)
    p1[:outliers] += rng.uniform(10, 40, (outliers, 2)) * rng.choice([-1, 1], (outliers, 2))
    return R, t / np.linalg.norm(t), p0, p1


@pytest.mark.parametrize("name", PARAMS)
def test_homography(name):
    H, p0, p1 = _homography_data()
    H_est, inliers = E.estimate_homography(p0, p1, name, threshold=3.0)
    corners = np.array([[0, 0, 1], [639, 0, 1], [0, 479, 1], [639, 479, 1.0]])
    a, b = corners @ H_est.T, corners @ H.T
    assert np.abs(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:]).max() < 0.05  # exact data: sub-pixel corners
    assert inliers[50:].all() and not inliers[:50].any()
    assert E.estimate_homography(p0[:3], p1[:3], name)[0] is None


@pytest.mark.parametrize("name", PARAMS)
def test_relative_pose(name):
    R, t, p0, p1 = _two_views()
    est = E.estimate_relative_pose(p0, p1, K, K, (640, 480), (640, 480), name, threshold=1.0)
    angle = np.degrees(np.arccos(np.clip((np.trace(est["R"] @ R.T) - 1) / 2, -1, 1)))
    assert angle < 0.01 and np.degrees(np.arccos(np.clip(est["t"] @ t, -1, 1))) < 0.05
    assert est["num_inliers"] == 240 and est["inliers"][60:].all() and not est["inliers"][:60].any()
    assert E.estimate_relative_pose(p0[:4], p1[:4], K, K, (640, 480), (640, 480), name) is None


@pytest.mark.parametrize("name", PARAMS)
def test_fundamental(name):
    R, t, p0, p1 = _two_views()
    F, inliers = E.estimate_fundamental(p0, p1, name, threshold=1.0)
    h0, h1 = np.c_[p0[60:], np.ones(240)], np.c_[p1[60:], np.ones(240)]
    line = h0 @ F.T
    dist = np.abs(np.sum(h1 * line, 1)) / np.linalg.norm(line[:, :2], axis=1)
    assert np.median(dist) < 0.05 and inliers[60:].mean() > 0.95 and inliers[:60].mean() < 0.1


def test_unknown_and_missing_estimators(monkeypatch):
    with pytest.raises(ConfigError, match="unknown estimator 'ransac9'.*opencv"):
        E.check_estimator("ransac9")
    monkeypatch.setattr(E, "poselib_available", lambda: False)
    with pytest.raises(ConfigError, match=r'needs the package poselib.*pip install'):
        E.estimate_homography(np.zeros((10, 2)), np.zeros((10, 2)), "poselib")
