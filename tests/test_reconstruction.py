"""SfM stage, config runner and benchmark on real data (small and fast), plus option checks."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest

from sekd_plugin import match_features, pairs as P, reconstruct, reconstruction as R
from sekd_plugin.eval_sfm import intrinsics_from_gt, load_gt_cameras
from sekd_plugin.extract_features import extract
from sekd_plugin.extractors.base import ConfigError
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.io.h5 import get_keypoints

from .conftest import SHARED, shared_file

CONFIG = "benchmark_configs/reconstruction/fountain-P11.yaml"


def test_options_and_helpers():
    opts = R.pipeline_options({"num_threads": 1, "mapper": {"init_min_num_inliers": 50}})
    assert opts.num_threads == 1 and opts.mapper.init_min_num_inliers == 50
    with pytest.raises(R.ReconstructionError, match="unknown mapper option 'mapper.bogus'"):
        R.pipeline_options({"mapper": {"bogus": 1}})
    with pytest.raises(R.ReconstructionError, match="valid"):
        R.pipeline_options({"not_an_option": 1})
    with pytest.raises(R.ReconstructionError, match="camera_mode"):
        R._camera_mode("PER_PLANET")
    assert R._camera_mode("single") == pycolmap.CameraMode.SINGLE
    K = np.array([[1000.0, 0, 768], [0, 1000, 512], [0, 0, 1]])
    half = R._scaled_K(K, (1536, 1024), (768, 512))
    assert np.allclose(half, [[500, 0, 384], [0, 500, 256], [0, 0, 1]])


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
    matches = match_features.main(match_features.get_conf("mutual_nn"), pairs, features, matches=out / "m.h5")
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
    assert stats["mean_track_length"] >= 2 and stats["mean_reprojection_error_px"] < 2
    assert set(stats["timings"]) == {"import_s", "verification_s", "mapping_s"}
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


# --------------------------------------------------------------------------- config runner


def test_config_errors(tmp_path, monkeypatch):
    cfg = reconstruct.load_config(CONFIG, ["extractor=sift", "resize_max=800", "mapper.num_threads=1"])
    assert cfg["scene"] == "fountain-P11" and cfg["resize_max"] == 800 and cfg["mapper"] == {"num_threads": 1}
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['bogus'\].*valid keys"):
        reconstruct.load_config(CONFIG, ["bogus=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: x\nimagez: y\n")
    with pytest.raises(ConfigError, match="imagez"):
        reconstruct.load_config(bad)
    cfg = reconstruct.load_config(CONFIG, ["extractor=sekd", "extractor_options.sekd.max_keypoints=2000",
                                           "extractor_options.sift.max_keypoints=7"])
    assert reconstruct.extraction_conf(cfg)["model"]["max_keypoints"] == 2000
    cfg["extractor"] = "sift"
    assert reconstruct.extraction_conf(cfg)["model"]["max_keypoints"] == 7
    cfg["extractor"] = "sift-n4096"  # options of other extractors are ignored
    assert reconstruct.extraction_conf(cfg)["model"]["max_keypoints"] == 4096
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['bogus'\] in extractor_options.sekd"):
        reconstruct.load_config(CONFIG, ["extractor=sekd", "extractor_options.sekd.bogus=1"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        reconstruct.load_config(CONFIG, ["extractor_options.max_keypoints=1"])
    with pytest.raises(ConfigError, match="unknown extraction conf"):
        reconstruct.load_config(CONFIG, ["extractor=nope"])
    with pytest.raises(ConfigError, match="matcher"):
        reconstruct.load_config(CONFIG, ["matcher=nope"])
    with pytest.raises(ConfigError, match="intrinsics"):
        reconstruct.load_config(CONFIG, ["intrinsics=magic"])
    with pytest.raises(ConfigError, match="gt_cameras"):
        reconstruct.load_config("benchmark_configs/reconstruction/sacre_coeur.yaml", ["intrinsics=gt"])
    with pytest.raises(ConfigError, match="not found"):
        reconstruct.load_config(tmp_path / "missing.yaml")
    cfg = reconstruct.load_config(CONFIG, [f"data_root={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        reconstruct.run(cfg)
    monkeypatch.setenv(reconstruct.SCENES_ENV, str(tmp_path / "env-scenes"))
    with pytest.raises(FileNotFoundError, match="env-scenes"):
        reconstruct.data_root(reconstruct.load_config(CONFIG))


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path("benchmark_configs/reconstruction").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"sacre_coeur", "fountain-P11", "Herz-Jesu-P8", "castle-P19", "castle-P30",
                                         "entry-P10", "Herz-Jesu-P25"}
    for config in configs:
        cfg = reconstruct.load_config(config)
        assert cfg["scene"] == config.stem and cfg["images"] == f"{config.stem}/images"


def test_reconstruct_config_fountain6(tmp_path):
    """SIFT on 6 fountain-P11 images at 800 px with GT intrinsics: all register, cm-level accuracy."""
    shared_file("scenes/fountain-P11")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i:04d}.jpg\n" for i in range(3, 9)))
    cfg = reconstruct.load_config(CONFIG, [
        "extractor=sift", "resize_max=800", "intrinsics=gt", f"image_list={listing}", f"output={tmp_path / 'out'}",
        f"data_root={SHARED / 'scenes'}", "num_threads=2", "device=cpu"])
    stats = reconstruct.run(cfg)
    assert stats["total_images"] == 6 and stats["registered_images"] >= 5
    gt = stats["gt"]
    assert gt["registered_images"] >= 5 and gt["median_center_error_m"] < 0.05
    assert gt["median_rotation_error_deg"] < 1.0
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["gt"]["median_center_error_m"] == pytest.approx(gt["median_center_error_m"])
    assert {"extract_s", "match_s", "sfm_s"} <= set(saved["timings"])
    assert (tmp_path / "out" / "sfm" / "points3D.bin").exists()
    # a second run reuses features and matches
    again = reconstruct.run(cfg)
    assert again["cached"] == {"extract": True, "match": True}
    assert again["timings"]["extract_s"] == pytest.approx(stats["timings"]["extract_s"])
    assert "GT: median centre error" in reconstruct.format_summary(again)


def test_benchmark_reconstruction(tmp_path, monkeypatch):
    """Benchmark runner on 3 images: results files, and a method without weights is skipped."""
    shared_file("scenes/fountain-P11")
    from sekd_plugin.benchmark.__main__ import main as bench_main
    from sekd_plugin.extractors import base

    monkeypatch.setattr(base, "missing_weights_reason",
                        lambda model, label=None: "sekd skipped: weights not found (test)" if label == "sekd" else None)
    listing = tmp_path / "list.txt"
    listing.write_text("0004.jpg\n0005.jpg\n0006.jpg\n")
    out = tmp_path / "bench"
    rc = bench_main(["reconstruction", "--config", CONFIG, "--extractors", "sekd,sift", "--output", str(out),
                     "resize_max=640", f"image_list={listing}", f"data_root={SHARED / 'scenes'}", "num_threads=2",
                     "device=cpu"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert "fountain-P11/sekd" in results["skipped"]
    r = results["scenes"]["fountain-P11"]["sift"]
    assert r["registered_images"] == 3 and r["gt"]["registered_images"] == 3
    md = (out / "results.md").read_text()
    assert "| fountain-P11 | sift | 3/3 |" in md and "skipped fountain-P11/sekd" in md
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "fountain-P11" / "sift" / "sfm" / "images.bin").exists()


def test_unreadable_image_is_left_out_not_fatal(tmp_path):
    """One broken image: a warning, the others are reconstructed, totals still count it."""
    src = shared_file("scenes/fountain-P11/images")
    images = tmp_path / "scene" / "images"
    images.mkdir(parents=True)
    for i in range(3, 8):
        (images / f"{i:04d}.jpg").symlink_to(src / f"{i:04d}.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cfg = reconstruct.load_config(CONFIG, [
        "extractor=sift", "resize_max=640", "gt_cameras=null", "images=scene/images",
        f"data_root={tmp_path}", f"output={tmp_path / 'out'}", "num_threads=2", "device=cpu"])
    stats = reconstruct.run(cfg)
    assert stats["total_images"] == 6 and 3 <= stats["registered_images"] <= 5
