"""GT evaluation of SfM poses: similarity alignment (pycolmap), pose errors, the failure verdict."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.metrics import sfm as E
from sekd_plugin.datasets.strecha import StrechaCamera

from tests.helpers import STRECHA_K as K  # noqa: E402
from tests.helpers import rotation as _rot  # noqa: E402


def _gt_scene(n=8, seed=0):
    """Cameras on an arc around the origin, looking roughly at it (camera-to-world R, centre C)."""
    rng = np.random.default_rng(seed)
    cams = {}
    for i in range(n):
        ang = np.radians(-60 + 120 * i / (n - 1))
        C = np.array([8 * np.sin(ang), -8 * np.cos(ang), 1.5 + 0.2 * rng.normal()])
        R = _rot([0, 0, 1], np.degrees(ang)) @ _rot([1, 0, 0], -90) @ _rot(rng.normal(size=3), 3)
        cams[f"{i:04d}.jpg"] = StrechaCamera(K.copy(), np.zeros(3), R, C, 1536, 1024)
    return cams


def _sfm_from_gt(cams, s, R_a, t_a):
    """SfM poses (R_cw, t_cw) such that X_gt = s R_a X_sfm + t_a."""
    poses = {}
    for name, cam in cams.items():
        C_sfm = R_a.T @ (cam.C - t_a) / s
        R_cw = cam.R_cw @ R_a
        poses[name] = (R_cw, -R_cw @ C_sfm)
    return poses


def test_similarity_recovers_known_transform_exactly():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(10, 3))
    R = _rot([0.2, 1, -0.5], 77)
    dst = 2.5 * src @ R.T + [1, 2, 3]
    s, R_est, t = E.similarity(src, dst)
    assert np.isclose(s, 2.5) and np.allclose(R_est, R) and np.allclose(t, [1, 2, 3])
    s, R_est, t, inliers = E.robust_similarity(src, dst)
    assert np.isclose(s, 2.5) and np.allclose(R_est, R) and np.allclose(t, [1, 2, 3]) and inliers.all()


def test_robust_similarity_rejects_outliers():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(12, 3))
    R = _rot([1, 0, 0.3], -40)
    dst = 0.3 * src @ R.T + [5, 0, -1]
    dst[[2, 7]] += [[0.5, 0, 0], [0, -0.4, 0.2]]  # two outliers, far above the 5 % threshold
    s, R_est, t, inliers = E.robust_similarity(src, dst)
    assert inliers.tolist() == [i not in (2, 7) for i in range(12)]
    assert np.isclose(s, 0.3) and np.allclose(R_est, R, atol=1e-9) and np.allclose(t, [5, 0, -1])
    # a plain least-squares fit is pulled away by the outliers
    s_ls, _, _ = E.similarity(src, dst)
    assert abs(s_ls - 0.3) > 1e-3


def test_known_similarity_gives_zero_error():
    cams = _gt_scene()
    s, R_a, t_a = 3.7, _rot([1, -1, 0.3], 123), np.array([10.0, -4.0, 2.0])
    poses = _sfm_from_gt(cams, 1 / s, R_a, t_a)  # any scale: SfM units are arbitrary
    res = E.evaluate_poses(poses, cams)
    assert res["registered_images"] == res["total_images"] == 8
    assert res["median_center_error_m"] < 1e-9 and res["max_center_error_m"] < 1e-9
    assert res["median_rotation_error_deg"] < 1e-5 and res["max_rotation_error_deg"] < 1e-5
    assert res["pct_center_within_1cm"] == res["pct_center_within_10cm"] == 100.0
    assert np.isclose(res["alignment_scale"], 1 / s) and res["alignment_inliers"] == 8


def test_perturbed_rotation_and_outlier_centre():
    cams = _gt_scene()
    R_a, t_a = _rot([0, 0, 1], 30), np.array([1.0, 2.0, 3.0])
    poses = _sfm_from_gt(cams, 0.5, R_a, t_a)
    # camera 3 rotated by 2 deg about its optical axis: only its rotation error changes
    R_cw, t_cw = poses["0003.jpg"]
    C = -R_cw.T @ t_cw
    R_new = _rot([0, 0, 1], 2.0) @ R_cw
    poses["0003.jpg"] = (R_new, -R_new @ C)
    # camera 5 badly placed (1 m off in GT units): an alignment outlier
    R_cw, t_cw = poses["0005.jpg"]
    C = -R_cw.T @ t_cw + R_a.T @ np.array([1.0, 0, 0]) / 0.5
    poses["0005.jpg"] = (R_cw, -R_cw @ C)
    res = E.evaluate_poses(poses, cams)
    per = res["per_image"]
    assert np.isclose(per["0003.jpg"]["rotation_error_deg"], 2.0, atol=1e-6)
    assert np.isclose(per["0005.jpg"]["center_error_m"], 1.0, atol=1e-6)
    assert not per["0005.jpg"]["alignment_inlier"] and res["alignment_inliers"] == 7
    others = [v for k, v in per.items() if k not in ("0003.jpg", "0005.jpg")]
    assert max(v["center_error_m"] for v in others) < 1e-9
    assert max(v["rotation_error_deg"] for v in others) < 1e-5
    assert np.isclose(res["pct_center_within_10cm"], 100 * 7 / 8)


def test_unregistered_and_too_few_images():
    cams = _gt_scene()
    poses = _sfm_from_gt(cams, 1.0, np.eye(3), np.zeros(3))
    partial = {k: poses[k] for k in list(poses)[:6]}
    res = E.evaluate_poses(partial, cams)
    assert res["registered_images"] == 6 and res["total_images"] == 8
    assert res["pct_center_within_1cm"] == 75.0  # unregistered images count as failures
    few = E.evaluate_poses({k: poses[k] for k in list(poses)[:2]}, cams)
    assert few["registered_images"] == 2 and few["median_center_error_m"] is None
    assert few["pct_center_within_1cm"] == 0.0
    # SfM images without GT are ignored
    extra = {**poses, "unknown.jpg": poses["0000.jpg"]}
    assert E.evaluate_poses(extra, cams)["registered_images"] == 8


def test_evaluate_noisy_scene_statistics():
    cams = _gt_scene(n=11, seed=3)
    rng = np.random.default_rng(0)
    poses = {}
    for name, (R_cw, t_cw) in _sfm_from_gt(cams, 2.0, _rot([1, 1, 1], 50), np.array([3.0, 0, 0])).items():
        C = -R_cw.T @ t_cw + rng.normal(scale=0.0025, size=3)  # ~5 mm noise in GT units
        poses[name] = (R_cw, -R_cw @ C)
    res = E.evaluate_poses(poses, cams)
    assert 0.001 < res["median_center_error_m"] < 0.02
    assert res["pct_center_within_3cm"] == 100.0
    assert res["median_rotation_error_deg"] < 0.5


def test_failure_is_flagged_registered_but_wrong():
    """Every image registered, the poses far off: failed, not only a large number."""
    cams = _gt_scene()
    rng = np.random.default_rng(5)
    poses = {}
    for name, (R_cw, t_cw) in _sfm_from_gt(cams, 1.0, np.eye(3), np.zeros(3)).items():
        C = rng.normal(scale=3.0, size=3)  # centres scattered at random
        poses[name] = (R_cw, -R_cw @ C)
    res = E.evaluate_poses(poses, cams)
    assert res["registered_images"] == 8 and res["failed"]
    assert "scene extent" in res["failure"] or "fit the similarity" in res["failure"]
    extent = E.scene_extent(np.stack([c.C for c in cams.values()]))
    assert res["scene_extent_m"] == pytest.approx(extent)
    # a good model is not failed
    good = E.evaluate_poses(_sfm_from_gt(cams, 2.0, _rot([0, 1, 0], 10), np.ones(3)), cams)
    assert not good["failed"] and good["failure"] == ""


def test_failure_rules_separately():
    cams = _gt_scene(n=10)
    poses = _sfm_from_gt(cams, 1.0, np.eye(3), np.zeros(3))
    extent = E.scene_extent(np.stack([c.C for c in cams.values()]))
    # 7 of 10 cameras moved by 30 % of the extent, each its own way: fewer than half fit the alignment
    moved = dict(poses)
    directions = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1], [1, 1, 1]]) / [
        [1], [1], [1], [1], [1], [1], [np.sqrt(3)]]
    for name, d in zip(list(poses)[:7], directions):
        R_cw, t_cw = poses[name]
        C = -R_cw.T @ t_cw + 0.3 * extent * d
        moved[name] = (R_cw, -R_cw @ C)
    res = E.evaluate_poses(moved, cams)
    assert res["alignment_inliers"] < 5, res
    assert res["failed"] and "fit the similarity" in res["failure"]
    # fewer than 3 registered images: failed, with the reason
    few = E.evaluate_poses({k: poses[k] for k in list(poses)[:2]}, cams)
    assert few["failed"] and "at least 3" in few["failure"]
    # a model off by a similarity only (any scale) passes; off by 30 % of the extent, alternating, fails
    C_shift = {}
    for name, (R_cw, t_cw) in poses.items():
        C = -R_cw.T @ t_cw
        direction = np.array([1.0, -1.0, 0.5]) if int(name[:4]) % 2 else np.array([-1.0, 1.0, -0.5])
        C_shift[name] = (R_cw, -R_cw @ (C + 0.3 * extent * direction / np.linalg.norm(direction)))
    res = E.evaluate_poses(C_shift, cams, threshold=extent)  # every camera an inlier: only the error rule
    assert res["alignment_inliers"] == 10 and res["failed"] and "scene extent" in res["failure"]


def test_rotation_angle_vectorised():
    Rs = np.stack([_rot([0, 0, 1], a) for a in (0.0, 10.0, 90.0, 179.0)])
    assert np.allclose(E.rotation_angle_deg(Rs), [0.0, 10.0, 90.0, 179.0], atol=1e-6)
