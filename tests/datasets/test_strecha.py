"""Strecha .camera files: parsing, the convention, the GT relative pose."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.datasets import strecha as S

from ..conftest import shared_file

from tests.helpers import STRECHA_K as K  # noqa: E402
from tests.helpers import rotation as _rot  # noqa: E402
from tests.helpers import write_strecha_camera as _write_camera  # noqa: E402


def test_parse_strecha_camera(tmp_path):
    R = _rot([1, 2, 3], 40)
    C = np.array([1.5, -2.0, 0.25])
    path = tmp_path / "0003.jpg.camera"
    _write_camera(path, R, C)
    cam = S.read_strecha_camera(path)
    assert np.allclose(cam.K, K) and np.allclose(cam.R, R) and np.allclose(cam.C, C)
    assert (cam.width, cam.height) == (1536, 1024)
    # convention: R camera-to-world, t = centre; x ~ K R^T (X - C)
    assert np.allclose(cam.R_cw, R.T) and np.allclose(cam.t_cw, -R.T @ C)
    X = C + R @ np.array([0.3, -0.2, 5.0])  # 5 m in front of the camera
    x = cam.project(X[None])[0]
    assert np.allclose(x, (K @ [0.3, -0.2, 5.0])[:2] / 5.0)
    assert S.gt_camera_path(tmp_path, "images/0003.jpg") == path
    assert set(S.load_gt_cameras(tmp_path, ["0003.jpg"])) == {"0003.jpg"}
    with pytest.raises(S.GroundTruthError, match="0004.jpg"):
        S.load_gt_cameras(tmp_path, ["0004.jpg"])
    assert S.load_gt_cameras(tmp_path, ["0004.jpg"], strict=False) == {}
    (tmp_path / "bad.jpg.camera").write_text("1 2 3\n")
    with pytest.raises(S.GroundTruthError, match="bad.jpg.camera"):
        S.read_strecha_camera(tmp_path / "bad.jpg.camera")
    _write_camera(tmp_path / "skewed.jpg.camera", 2 * R, C)
    with pytest.raises(S.GroundTruthError, match="not a rotation"):
        S.read_strecha_camera(tmp_path / "skewed.jpg.camera")
    with pytest.raises(S.GroundTruthError, match="not found"):
        S.load_gt_cameras(tmp_path / "nope", ["x"])
    from sekd_plugin.common import InputError

    assert issubclass(S.GroundTruthError, InputError)  # one line + exit 2 in every CLI


def test_parse_shared_strecha_file():
    path = shared_file("scenes/fountain-P11/gt_dense_cameras/0003.jpg.camera")
    cam = S.read_strecha_camera(path)
    assert np.allclose(cam.K, K, atol=1e-3)
    assert (cam.width, cam.height) == (1536, 1024)
    assert abs(np.linalg.det(cam.R) - 1) < 1e-6
    intr = S.intrinsics_from_gt({"0003.jpg": cam})
    assert intr["0003.jpg"][1:] == (1536, 1024)


def test_relative_pose_maps_points_between_cameras(tmp_path):
    cam0 = S.StrechaCamera(K, np.zeros(3), _rot([0, 1, 0], 10), np.array([0.0, 0, 0]), 1536, 1024)
    cam1 = S.StrechaCamera(K, np.zeros(3), _rot([0, 1, 0], -15) @ _rot([1, 0, 0], 3), np.array([2.0, 0.1, -0.3]),
                           1536, 1024)
    X = np.random.default_rng(0).uniform(-1, 1, (20, 3)) + [0, 0, 8]
    R, t = S.relative_pose(cam0, cam1)
    X0 = (cam0.R_cw @ X.T).T + cam0.t_cw
    X1 = (cam1.R_cw @ X.T).T + cam1.t_cw
    assert np.allclose((R @ X0.T).T + t, X1)
    assert np.isclose(np.linalg.norm(t), np.linalg.norm(cam1.C - cam0.C))


def _sampson_px(F, x0, x1):
    h0 = np.c_[x0, np.ones(len(x0))]
    h1 = np.c_[x1, np.ones(len(x1))]
    Fx0, Ftx1 = h0 @ F.T, h1 @ F
    num = np.sum(h1 * Fx0, axis=1) ** 2
    return np.sqrt(num / (Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2))


def test_gt_relative_pose_convention_on_real_strecha_files(tmp_path):
    """SIFT matches of two real fountain-P11 images satisfy the epipolar geometry of the GT
    relative pose read with the documented convention, and not with the other reading."""
    images = shared_file("scenes/fountain-P11/images")
    gt_dir = shared_file("scenes/fountain-P11/gt_dense_cameras")
    from sekd_plugin import match_features, pairs as P
    from sekd_plugin.extract_features import extract
    from sekd_plugin.extractors.confs import get_conf
    from sekd_plugin.io.h5 import get_keypoints, get_matches

    names = ["0004.jpg", "0005.jpg"]
    conf = get_conf("sift")
    conf["preprocessing"]["resize_max"] = 768
    feats = extract(conf, images, image_list=names, feature_path=tmp_path / "f.h5", as_half=False).feature_path
    pairs = P.main(tmp_path / "pairs.txt", image_list=names)
    matches = match_features.main(match_features.get_conf("NN-ratio"), pairs, feats, matches=tmp_path / "m.h5")
    m, _ = get_matches(matches, *names)
    x0 = get_keypoints(feats, names[0])[m[:, 0]] + 0.5  # the K convention: COLMAP's pixel corner
    x1 = get_keypoints(feats, names[1])[m[:, 1]] + 0.5
    cams = S.load_gt_cameras(gt_dir, names)

    def fundamental(R, t, K0, K1):
        tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        return np.linalg.inv(K1).T @ tx @ R @ np.linalg.inv(K0)

    R, t = S.relative_pose(cams[names[0]], cams[names[1]])
    err = _sampson_px(fundamental(R, t, cams[names[0]].K, cams[names[1]].K), x0, x1)
    assert len(m) > 200 and np.median(err) < 1.0 and np.mean(err < 2.0) > 0.8
    # the other reading of the file (x ~ K (R X + t)) does not explain the matches
    c0, c1 = cams[names[0]], cams[names[1]]
    R_w = c1.R @ c0.R.T
    t_w = c1.C - R_w @ c0.C
    wrong = _sampson_px(fundamental(R_w, t_w, c0.K, c1.K), x0, x1)
    assert np.median(wrong) > 10.0
