"""The ``gluefactory`` protocol: glue-factory's HPatches evaluation (short side 480, one budget,
1 px RANSAC, AUC@1/3/5 of the outer-corner error)."""

import json

import cv2
import numpy as np
import pytest

from sekd_plugin.benchmark.homography.protocols import PROTOCOLS, pixel_scale_matrix, prepare, short_side_size
from sekd_plugin.benchmark.homography.run import method_conf, run
from sekd_plugin.datasets.hpatches import load_dataset
from sekd_plugin.metrics import homography as M
from tests.benchmark.homography.test_run import _texture, _write_hpatches_seq


def test_sizes_follow_glue_factory():
    assert short_side_size(1000, 750, 480) == (640, 480)
    assert short_side_size(750, 1000, 480) == (480, 640)
    assert short_side_size(200, 150, 480) == (640, 480)  # small images are upsampled, as glue-factory
    assert short_side_size(1001, 667, 480) == (int(480 * 1001 / 667), 480)


def test_prepare_resizes_short_side_and_maps_homographies(tmp_path):
    d = tmp_path / "hp" / "v_big"
    d.mkdir(parents=True)
    img = cv2.cvtColor(_texture(900, 600), cv2.COLOR_GRAY2BGR)
    H = np.array([[1.1, 0.05, 12.0], [-0.02, 0.95, 7.0], [1e-5, 2e-5, 1.0]])
    for k in range(1, 7):
        cv2.imwrite(str(d / f"{k}.ppm"), img)
        if k > 1:
            np.savetxt(d / f"H_1_{k}", H)
    prep = prepare(load_dataset(d.parent), "gluefactory", tmp_path / "img")[0]
    assert prep.sizes[0] == (720, 480)
    assert cv2.imread(str(tmp_path / "img" / prep.names[0])).shape[:2] == (480, 720)
    A = pixel_scale_matrix(720 / 900, 480 / 600)
    np.testing.assert_allclose(prep.homographies[0], A @ H @ np.linalg.inv(A))


def test_outer_corner_error():
    H_gt = np.eye(3)
    shift = np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]])
    assert M.corner_error(shift, H_gt, (640, 480), outer=True) == pytest.approx(2.0)
    np.testing.assert_allclose(M.image_corners((4, 3), outer=True), [[-0.5, -0.5], [3.5, -0.5], [3.5, 2.5], [-0.5, 2.5]])
    scale = np.diag([1.01, 1.01, 1.0])  # a zoom moves the outer corners further than the pixel centres
    assert M.corner_error(scale, H_gt, (640, 480), outer=True) > M.corner_error(scale, H_gt, (640, 480))


def test_budget_and_settings():
    p = PROTOCOLS["gluefactory"]
    assert p["max_keypoints"] == 1024 and p["short_side"] == 480 and p["ransac_threshold"] == 1.0
    assert method_conf("alike-n", "gluefactory")["model"]["max_keypoints"] == 1024
    assert method_conf("sift", "gluefactory")["model"]["max_keypoints"] == 1024


@pytest.mark.integration
def test_gluefactory_run_reports_auc_and_the_partial_hpatches_note(tmp_path):
    root = tmp_path / "hp"
    _write_hpatches_seq(root, "v_toy", warp=True)
    _write_hpatches_seq(root, "i_contruction", warp=False)  # one of the excluded large sequences
    out = tmp_path / "out"
    run([root], out, ["sift"], "gluefactory")
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["ransac"]["threshold_px"] == 1.0
    assert list(data["settings"]["sequences"]) == ["hp/v_toy"] or len(data["settings"]["sequences"]) == 1
    auc = data["methods"]["sift"]["all"]["homography_auc"]
    assert set(auc) == {"1", "3", "5"} and 0 <= auc["1"] <= auc["3"] <= auc["5"] <= 1
    md = (out / "results.md").read_text()
    assert "Protocol note: 5 pair(s) here" in md and "540 pairs" in md
