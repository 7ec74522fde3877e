"""SfM stage (``sekd_plugin.reconstruction``) on real data (small and fast), option checks, and
what it says and refuses when things go wrong."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest

from sekd_plugin import match_features, pairs as P, reconstruction as R
from sekd_plugin.common import InputError
from sekd_plugin.datasets.strecha import intrinsics_from_gt, load_gt_cameras
from sekd_plugin.extract_features import extract
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.io.h5 import get_keypoints

from .conftest import shared_file


def test_options_and_helpers():
    opts = R.pipeline_options({"num_threads": 1, "mapper": {"init_min_num_inliers": 50}})
    assert opts.num_threads == 1 and opts.mapper.init_min_num_inliers == 50
    with pytest.raises(R.ReconstructionError, match="unknown mapper option 'mapper.bogus'"):
        R.pipeline_options({"mapper": {"bogus": 1}})
    with pytest.raises(R.ReconstructionError, match="valid"):
        R.pipeline_options({"not_an_option": 1})
    with pytest.raises(R.ReconstructionError, match="must be a int"):
        R.pipeline_options({"mapper": {"init_min_num_inliers": "many"}})
    with pytest.raises(R.ReconstructionError, match="unknown verification option 'ransac.bogus'"):
        R.verification_options({"ransac": {"bogus": 1}})
    assert R.verification_options({"ransac": {"max_error": 2.0}}).ransac.max_num_trials == 20000  # hloc's kept
    assert issubclass(R.ReconstructionError, InputError)
    with pytest.raises(R.ReconstructionError, match="camera_mode"):
        R.camera_mode("PER_PLANET")
    assert R.camera_mode("single") == pycolmap.CameraMode.SINGLE
    K = np.array([[1000.0, 0, 768], [0, 1000, 512], [0, 0, 1]])
    half = R.scaled_K(K, (1536, 1024), (768, 512))
    assert np.allclose(half, [[500, 0, 384], [0, 500, 256], [0, 0, 1]])
    assert np.allclose(R.scaled_K(K, (1536, 1024), (1536, 1024)), K)


@pytest.fixture(scope="module")
def fountain3(tmp_path_factory):
    """SIFT features + mutual-NN matches of 3 fountain-P11 images at 640 px (a few seconds)."""
    images = shared_file("scenes/fountain-P11/images")
    gt_dir = shared_file("scenes/fountain-P11/gt_dense_cameras")
    out = tmp_path_factory.mktemp("fountain3")
    names = ["0004.jpg", "0005.jpg", "0006.jpg"]
    conf = get_conf("sift")
    conf["preprocessing"]["resize_max"] = 640
    features = extract(conf, images, image_list=names, feature_path=out / "feats.h5", as_half=False).feature_path
    pairs = P.main(out / "pairs.txt", image_list=names)
    matches = match_features.main(match_features.get_conf("NN-ratio"), pairs, features, matches=out / "m.h5")
    return {"images": images, "gt": gt_dir, "out": out, "names": names, "features": features,
            "pairs": pairs, "matches": matches}


def test_reconstruction_end_to_end_fast(fountain3):
    f = fountain3
    sfm = f["out"] / "sfm"
    rec = R.main(sfm, f["images"], f["pairs"], f["features"], f["matches"], camera_mode="SINGLE",
                 image_list=f["names"], num_threads=2)
    assert rec is not None and rec.num_reg_images() == 3 and rec.num_points3D() > 100
    for name in ("cameras.bin", "images.bin", "points3D.bin", "database.db", "stats.json"):
        assert (sfm / name).exists(), name
    assert (sfm / "models" / "0" / "images.bin").exists()
    stats = json.loads((sfm / "stats.json").read_text())
    assert stats["registered_images"] == 3 and stats["num_verified_pairs"] == 3
    assert stats["verification_min_inliers"] == 15 and stats["max_pair_inliers"] >= stats["median_pair_inliers"] > 100
    assert stats["init_min_num_inliers"] == 100 and stats["num_pairs_above_init_min_inliers"] == 3
    assert stats["mean_track_length"] >= 2 and stats["mean_reprojection_error_px"] < 2
    assert list(stats) == list(R.STATS_KEYS) and set(stats["timings"]) == set(R.TIMING_KEYS)
    assert stats["timings"]["extract_s"] is None and stats["timings"]["mapping_s"] > 0  # extraction is the caller's
    assert stats["pipeline"] == "hloc" and stats["mean_keypoints_per_image"] > 100
    # keypoints are stored with COLMAP's corner origin: +0.5
    with pycolmap.Database.open(sfm / "database.db") as db:
        image = db.read_image_with_name("0005.jpg")
        stored = np.asarray(db.read_keypoints(image.image_id))[:, :2]
    assert np.allclose(stored, get_keypoints(f["features"], "0005.jpg") + 0.5, atol=1e-4)
    loaded = pycolmap.Reconstruction(sfm)
    assert loaded.num_reg_images() == 3


def test_reconstruction_fixed_gt_intrinsics(fountain3):
    f = fountain3
    fixed = intrinsics_from_gt(load_gt_cameras(f["gt"], f["names"]))
    rec = R.main(f["out"] / "sfm-gtK", f["images"], f["pairs"], f["features"], f["matches"],
                 camera_mode="SINGLE", fixed_intrinsics=fixed, image_list=f["names"], num_threads=2)
    assert rec is not None and rec.num_reg_images() == 3
    (camera,) = rec.cameras.values()
    assert camera.model == pycolmap.CameraModelId.PINHOLE
    assert np.allclose(camera.params, [1379.74, 1382.08, 760.345, 503.405])  # never refined
    # a name without K is an error
    with pytest.raises(R.ReconstructionError, match="no K"):
        R.main(f["out"] / "sfm-x", f["images"], f["pairs"], f["features"], f["matches"],
               fixed_intrinsics={"0004.jpg": fixed["0004.jpg"]}, image_list=f["names"])


def test_reconstruction_skip_verification_and_input_errors(fountain3):
    f = fountain3
    rec = R.main(f["out"] / "sfm-skip", f["images"], f["pairs"], f["features"], f["matches"], camera_mode="SINGLE",
                 image_list=f["names"], skip_geometric_verification=True, min_match_score=0.5, num_threads=2)
    assert rec is not None and rec.num_reg_images() >= 2
    with pytest.raises(R.ReconstructionError, match="no features"):
        R.main(f["out"] / "sfm-y", f["images"], f["pairs"], f["features"], f["matches"],
               image_list=f["names"] + ["0000.jpg"])
    with pytest.raises(FileNotFoundError, match="matches file"):
        R.main(f["out"] / "sfm-y", f["images"], f["pairs"], f["features"], f["out"] / "none.h5")




# --------------------------------------------------------------------------- #18: what it refuses and says


def test_existing_sfm_dir_is_never_wiped(fountain3, tmp_path, capsys):
    """Before: ``--sfm-dir EXISTING`` deleted EXISTING/models/ recursively without a word."""
    f = fountain3
    sfm = tmp_path / "mine"
    (sfm / "models").mkdir(parents=True)
    keep = sfm / "models" / "my_notes.txt"
    keep.write_text("precious")
    argv = ["--sfm-dir", str(sfm), "--images", str(f["images"]), "--pairs", str(f["pairs"]), "--features",
            str(f["features"]), "--matches", str(f["matches"]), "--image-list", str(f["out"] / "list.txt"),
            "--camera-mode", "SINGLE"]
    (f["out"] / "list.txt").write_text("\n".join(f["names"]) + "\n")
    assert R.cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a reconstruction" in err and "--overwrite" in err
    assert keep.read_text() == "precious"
    assert R.cli([*argv, "--overwrite"]) == 2  # even with --overwrite: models/ holds a file we did not write
    assert "did not write (my_notes.txt)" in capsys.readouterr().err and keep.exists()
    keep.unlink()
    (sfm / "models").rmdir()
    assert R.cli(argv) == 0 and (sfm / "models" / "0" / "images.bin").exists()
    capsys.readouterr()
    assert R.cli(argv) == 2 and "already holds" in capsys.readouterr().err  # our own output: refused too
    assert R.cli([*argv, "--overwrite"]) == 0 and (sfm / "points3D.bin").exists()


def test_noise_scene_says_what_verification_required(tmp_path):
    """Before: "6/6 verified pairs" while nothing registered, no word on the inlier counts."""
    import cv2

    images = tmp_path / "noise"
    images.mkdir()
    rng = np.random.default_rng(0)
    names = [f"{i}.png" for i in range(4)]
    for name in names:
        cv2.imwrite(str(images / name), cv2.GaussianBlur(rng.integers(0, 256, (480, 640), dtype=np.uint8), (3, 3), 0))
    conf = get_conf("sift")
    features = extract(conf, images, feature_path=tmp_path / "f.h5", as_half=False).feature_path
    pairs = P.main(tmp_path / "pairs.txt", image_list=names)
    matches = match_features.main(match_features.get_conf("NN-mutual"), pairs, features, matches=tmp_path / "m.h5")
    rec, stats = R.reconstruct(tmp_path / "sfm", images, pairs, features, matches, num_threads=2)
    assert stats == json.loads((tmp_path / "sfm" / "stats.json").read_text())
    assert rec is None and stats["registered_images"] == 0
    assert stats["verification_min_inliers"] == 15 and stats["init_min_num_inliers"] == 100
    assert stats["max_pair_inliers"] < 100 and stats["num_pairs_above_init_min_inliers"] == 0
    hint = stats["failure_hint"]
    assert ("init_min_num_inliers" in hint and str(stats["max_pair_inliers"]) in hint) or "no image pair" in hint
    from sekd_plugin.benchmark.sfm.scene import verification_summary

    line = verification_summary({**stats, "num_pairs": 6})
    assert "(>= 15 inliers" in line and "100" in line


def test_two_image_scene_explains_the_rejected_initial_pair(fountain3, capsys):
    """Before: "Could not reconstruct any model!" without the hint that COLMAP's initial pair was rejected."""
    f = fountain3
    names = f["names"][:2]
    (f["out"] / "two.txt").write_text("\n".join(names) + "\n")
    argv = ["--sfm-dir", str(f["out"] / "sfm-two"), "--images", str(f["images"]), "--pairs", str(f["pairs"]),
            "--features", str(f["features"]), "--matches", str(f["matches"]), "--image-list",
            str(f["out"] / "two.txt"), "--camera-mode", "SINGLE", "--overwrite",
            "--mapper-option", "mapper.init_min_tri_angle=60"]  # a pair COLMAP must reject
    assert R.cli(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model could be reconstructed" in err[0]
    assert "initial image pair" in err[0] and "init_min_tri_angle" in err[0] and "60" in err[0]


def test_a_folder_without_a_model_is_replaced_not_defended(fountain3, tmp_path, capsys):
    """Issue 33: a run that ended without a model (here: one that left only its own files) does not
    make the corrected command need --overwrite."""
    f = fountain3
    sfm = tmp_path / "failed"
    (sfm / "models").mkdir(parents=True)
    (sfm / "stats.json").write_text("{}")
    (sfm / "database.db").write_bytes(b"")
    (f["out"] / "list.txt").write_text("\n".join(f["names"]) + "\n")
    argv = ["--sfm-dir", str(sfm), "--images", str(f["images"]), "--pairs", str(f["pairs"]), "--features",
            str(f["features"]), "--matches", str(f["matches"]), "--image-list", str(f["out"] / "list.txt"),
            "--camera-mode", "SINGLE"]
    assert R.cli(argv) == 0 and (sfm / "images.bin").exists()
