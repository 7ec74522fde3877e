"""sekd_plugin.triangulation: hloc's contract on 4 downscaled fountain-P11 images with GT cameras."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest

from sekd_plugin import triangulation as T

from .fountain_small import fountain_small


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return fountain_small(tmp_path_factory.mktemp("tri"))


def test_gt_model_and_known_pose_geometry(data):
    rec = T.model_from_gt_cameras(data["gt"], data["names"])
    assert rec.num_reg_images() == 4 and rec.num_points3D() == 0
    cam = data["gt"]["0004.jpg"]
    image = rec.find_image_with_name("0004.jpg")
    assert np.allclose(image.projection_center(), cam.C, atol=1e-4)  # R re-orthonormalised
    assert np.allclose(rec.cameras[image.camera_id].calibration_matrix(), cam.K)
    # a point seen by two GT cameras has zero Sampson distance to the F of their poses
    X = cam.C + 8 * cam.R[:, 2]
    x0, x1 = data["gt"]["0003.jpg"].project(X[None]), cam.project(X[None])
    F = T.fundamental_from_poses(rec, rec.find_image_with_name("0003.jpg").image_id, image.image_id)
    assert T.sampson_distance(F, x0, x1)[0] < 1e-2 and T.sampson_distance(F, x0, x1 + [0, 5])[0] > 1


@pytest.mark.parametrize("verification", T.VERIFICATIONS)
def test_triangulation_keeps_cameras_fixed(data, tmp_path, verification):
    ref = T.model_from_gt_cameras(data["gt"], data["names"])
    rec = T.main(tmp_path / "sfm", ref, data["images"], data["pairs"], data["features"], data["matches"],
                 verification=verification)
    stats = json.loads((tmp_path / "sfm" / "stats.json").read_text())
    assert rec.num_points3D() > 100 and stats["num_points3D"] == rec.num_points3D()
    assert rec.compute_mean_track_length() >= 3  # two-view tracks are dropped by default
    assert rec.compute_mean_reprojection_error() < 1.5
    for image in rec.images.values():  # poses and intrinsics unchanged
        cam = data["gt"][image.name]
        assert np.allclose(image.projection_center(), ref.images[image.image_id].projection_center(), atol=1e-9)
        assert np.allclose(rec.cameras[image.camera_id].calibration_matrix(), cam.K)
    assert pycolmap.Reconstruction(tmp_path / "sfm").num_points3D() == rec.num_points3D()
    assert stats["num_verified_matches"] <= stats["num_matches"]


def test_errors(data, tmp_path, capsys):
    ref = T.model_from_gt_cameras(data["gt"], data["names"])
    args = (data["images"], data["pairs"], data["features"], data["matches"])
    T.main(tmp_path / "a", ref, *args)
    with pytest.raises(T.TriangulationError, match="already holds a triangulation"):
        T.main(tmp_path / "a", ref, *args)
    with pytest.raises(T.TriangulationError, match="reference model not found"):
        T.main(tmp_path / "b", tmp_path / "nothing", *args)
    with pytest.raises(T.TriangulationError, match="unknown verification"):
        T.main(tmp_path / "b", ref, *args, verification="magic")
    code = T.cli(["--sfm-dir", str(tmp_path / "c"), "--reference-model", str(tmp_path / "nothing"),
                  "--images", str(data["images"]), "--pairs", str(data["pairs"]), "--features", str(data["features"]),
                  "--matches", str(data["matches"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: reference model not found")
    assert T.cli(["--sfm-dir", str(tmp_path / "d"), "--gt-cameras", str(data["gt_dir"]), "--images",
                  str(data["images"]), "--pairs", str(data["pairs"]), "--features", str(data["features"]),
                  "--matches", str(data["matches"])]) == 0
