import numpy as np
import pytest

from sekd_plugin.metrics import homography as M

RNG = np.random.default_rng(0)
H_GT = np.array([[0.9, 0.1, 20.0], [-0.05, 1.1, 10.0], [1e-4, -2e-4, 1.0]])
SIZE = (320, 240)


def _points(n=200):
    return RNG.uniform([40, 40], [280, 200], size=(n, 2))


def test_perfect_matches_give_mma_one():
    kp0 = _points()
    kp1 = M.warp_points(kp0, H_GT)
    matches = np.stack([np.arange(len(kp0))] * 2, 1)
    err = M.reprojection_errors(kp0, kp1, matches, H_GT)
    assert np.allclose(M.matching_accuracy(err), 1.0)


def test_two_pixel_shift_mma_thresholds():
    kp0 = _points()
    kp1 = M.warp_points(kp0, H_GT) + np.array([2.0, 0.0])
    matches = np.stack([np.arange(len(kp0))] * 2, 1)
    mma = M.matching_accuracy(M.reprojection_errors(kp0, kp1, matches, H_GT), thresholds=(1, 2.5, 3))
    assert mma[0] == 0.0 and mma[1] == 1.0 and mma[2] == 1.0


def test_no_matches_is_zero_accuracy():
    assert np.all(M.matching_accuracy(np.zeros(0)) == 0)


def test_known_homography_has_zero_corner_error():
    assert M.corner_error(H_GT, H_GT, SIZE) == pytest.approx(0.0, abs=1e-9)
    assert M.corner_error(None, H_GT, SIZE) == float("inf")
    shifted = np.array([[1, 0, 5.0], [0, 1, 0], [0, 0, 1]]) @ H_GT
    assert M.corner_error(shifted, H_GT, SIZE) == pytest.approx(5.0)


def test_ransac_recovers_homography_with_outliers():
    kp0 = _points(300)
    kp1 = M.warp_points(kp0, H_GT)
    kp1[:60] = RNG.uniform(0, 300, size=(60, 2))  # 20 % outliers
    matches = np.stack([np.arange(300)] * 2, 1)
    H = M.estimate_homography(kp0, kp1, matches)
    assert M.corner_error(H, H_GT, SIZE) < 0.01
    assert M.estimate_homography(kp0[:3], kp1[:3], matches[:3]) is None


def test_repeatability_identity_and_disjoint():
    kp = np.stack(np.meshgrid(np.arange(40, 280, 20.0), np.arange(40, 200, 20.0)), -1).reshape(-1, 2)
    assert M.repeatability(kp, kp, np.eye(3), SIZE, SIZE) == 1.0
    assert M.repeatability(kp, kp + 10.0, np.eye(3), SIZE, SIZE) == 0.0
    # points outside the common region do not count
    far = np.array([[10.0, 10.0]])
    shift = np.array([[1, 0, -100.0], [0, 1, 0], [0, 0, 1]])
    assert M.repeatability(np.concatenate([kp, far]), M.warp_points(kp, shift), shift, SIZE, SIZE) == pytest.approx(
        M.repeatability(kp, M.warp_points(kp, shift), shift, SIZE, SIZE))


def test_matching_score():
    kp0 = _points(100)
    kp1 = M.warp_points(kp0, np.eye(3))
    matches = np.stack([np.arange(50)] * 2, 1)  # half of the keypoints matched correctly
    err = M.reprojection_errors(kp0, kp1, matches, np.eye(3))
    assert M.matching_score(kp0, kp1, err, np.eye(3), SIZE, SIZE) == pytest.approx(0.5)
