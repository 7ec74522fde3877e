"""Issue 34.4: any extractor or matcher option of a method is set from the command line with the
trainer's dotlist syntax (``model.max_keypoints=2000``, ``LABEL.model.KEY=VALUE`` per method in
the benchmarks), an unknown key is one line and exit 2, and what ran is recorded (h5
provenance, results.json)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from sekd_plugin import extract_features as EF, match_features as MF, pairs as P
from sekd_plugin.benchmark import scenes
from sekd_plugin.benchmark.__main__ import main as bench_main
from sekd_plugin.common import ConfigError
from sekd_plugin.io.h5 import read_conf, read_features
from tests.helpers import fake_scene_result, only_error_line, texture

from .conftest import SHARED, shared_file

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "benchmark_configs/reconstruction/fountain-P11.yaml")
NAMES = ["a.png", "b.png", "c.png"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("options") / "images"
    root.mkdir()
    for i, name in enumerate(NAMES):
        cv2.imwrite(str(root / name), texture(240, 320, i))
    return root


def test_extract_features_takes_model_and_preprocessing_options(images, tmp_path, capsys):
    out = tmp_path / "feats.h5"
    argv = ["--conf", "sift", "--images", str(images), "--output", str(out), "--quiet"]
    assert EF.cli([*argv, "model.max_keypoints=40", "preprocessing.resize_max=200"]) == 0
    recorded = read_conf(out)
    assert recorded["model"]["max_keypoints"] == 40 and recorded["preprocessing"]["resize_max"] == 200
    for name in NAMES:
        assert 0 < len(read_features(out, name)["keypoints"]) <= 40
    capsys.readouterr()
    assert EF.cli([*argv, "--output", str(tmp_path / "bad.h5"), "model.max_keypoint=40"]) == 2
    line = only_error_line(capsys)
    assert "unknown sift option key(s) ['max_keypoint']" in line and "max_keypoints" in line
    assert not (tmp_path / "bad.h5").exists()


def test_match_features_takes_matcher_options(images, tmp_path, capsys):
    feats = EF.main(EF.confs["sift"], images, tmp_path, feature_path=tmp_path / "f.h5")
    pairs = P.main(tmp_path / "pairs.txt", image_list=NAMES)
    out = tmp_path / "m.h5"
    argv = ["--pairs", str(pairs), "--features", str(feats), "--output", str(out), "--conf", "NN-mutual"]
    assert MF.cli([*argv, "model.ratio_threshold=0.9"]) == 0
    assert read_conf(out, "matches")["matcher"]["ratio_threshold"] == 0.9
    assert "3 pairs matched" in capsys.readouterr().out
    assert MF.cli([*argv, "--output", str(tmp_path / "bad.h5"), "model.ratio=0.9"]) == 2
    assert "unknown nearest_neighbor option key(s) ['ratio']" in only_error_line(capsys)


def test_benchmark_speed_records_the_confs_and_overrides(tmp_path, capsys):
    out = tmp_path / "speed"
    argv = ["speed", "--methods", "sift,orb", "--runs", "1", "--threads", "1", "--device", "cpu", "--output", str(out)]
    assert bench_main([*argv, "model.max_keypoints=300", "orb.model.max_keypoints=64"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["overrides"] == ["model.max_keypoints=300", "orb.model.max_keypoints=64"]
    assert results["settings"]["confs"]["sift"]["model"]["max_keypoints"] == 300
    assert results["settings"]["confs"]["orb"]["model"]["max_keypoints"] == 64
    assert results["methods"]["orb"]["-"]["keypoints"] <= 64
    capsys.readouterr()
    assert bench_main([*argv, "orb.model.bogus=1"]) == 2
    assert "unknown orb option key(s) ['bogus'] in method orb" in only_error_line(capsys)


def _tiny(tmp_path: Path) -> list[str]:
    shared_file("scenes/fountain-P11")
    listing = tmp_path / "list.txt"
    listing.write_text("0004.jpg\n0005.jpg\n0006.jpg\n")
    return [f"data_root={SHARED / 'scenes'}", f"image_list={listing}", "resize_max=640", "device=cpu"]


def test_scene_benchmarks_give_each_method_its_options(tmp_path):
    overrides = [*_tiny(tmp_path), "model.max_keypoints=1000", "ours.model.max_keypoints=300",
                 "matcher.ratio_threshold=0.9"]
    plans = {m: cfg for _, m, cfg in scenes.plan([CONFIG], ["sift", "ours=sekd", "colmap-sift"], tmp_path, overrides)}
    sift, ours, colmap = plans["sift"], plans["ours=sekd"], plans["colmap-sift"]
    assert sift["extractor_options"] == {"sift-colmap": {"max_keypoints": 1000}}
    assert ours["extractor_options"] == {"sekd": {"max_keypoints": 300}}
    assert sift["matcher_options"] == ours["matcher_options"] == {"ratio_threshold": 0.9}
    assert colmap["extractor_options"] == {} and colmap["matcher_options"] == {}  # COLMAP's own pipeline
    confs = scenes.effective_confs(ours)
    assert confs["extractor"]["model"]["max_keypoints"] == 300 and confs["matcher"]["model"]["ratio_threshold"] == 0.9
    with pytest.raises(ConfigError, match="method colmap-sift: COLMAP's own pipeline"):
        scenes.plan([CONFIG], ["colmap-sift"], tmp_path, [*_tiny(tmp_path), "colmap-sift.model.max_keypoints=5"])


@pytest.mark.parametrize("command", ["reconstruction", "pose", "triangulation", "localization"])
def test_scene_benchmarks_refuse_an_unknown_option_before_any_work(command, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [command, "--config", CONFIG, "--methods", "sift", "--output", str(out), *_tiny(tmp_path)]
    assert bench_main([*argv, "sift.model.max_keypoint=5"]) == 2
    line = only_error_line(capsys)
    assert "unknown sift option key(s) ['max_keypoint']" in line and "extractor_options.sift-colmap" in line
    assert not out.exists() or not any(out.rglob("*.h5"))


def test_a_scene_benchmark_records_the_confs_in_effect(tmp_path, monkeypatch):
    """reconstruction with a stand-in for the SfM run: results.json holds the method's confs."""
    from sekd_plugin.benchmark.sfm import benchmark as B

    def fake_run(cfg, label):
        return fake_scene_result()

    monkeypatch.setattr(B, "run_scene", fake_run)
    out = tmp_path / "out"
    assert bench_main(["reconstruction", "--config", CONFIG, "--methods", "sift", "--output", str(out),
                       *_tiny(tmp_path), "sift.model.max_keypoints=777", "matcher.ratio_threshold=0.7"]) == 0
    results = json.loads((out / "results.json").read_text())
    confs = results["methods"]["sift"]["confs"]["fountain-P11"]
    assert confs["extractor"]["model"] == {"name": "sift", **confs["extractor"]["model"], "max_keypoints": 777}
    assert confs["matcher"]["model"]["ratio_threshold"] == 0.7
    assert "sift.model.max_keypoints=777" in results["settings"]["overrides"]


def test_the_scene_command_takes_model_and_matcher_options(tmp_path, monkeypatch):
    """``benchmark scene CONFIG model.KEY=VALUE matcher.KEY=VALUE``: the config the run gets."""
    from sekd_plugin.benchmark.sfm import scene

    seen = {}
    monkeypatch.setattr(scene, "run", lambda cfg, label=None: seen.setdefault("cfg", cfg))
    scene.main(CONFIG, [*_tiny(tmp_path), "extractor=sift", "model.max_keypoints=500", "matcher.ratio_threshold=0.75"])
    assert seen["cfg"]["extractor_options"] == {"sift": {"max_keypoints": 500}}
    assert seen["cfg"]["matcher_options"] == {"ratio_threshold": 0.75}
    with pytest.raises(ConfigError, match=r"unknown sift option key\(s\) \['max_keypoint'\]"):
        scene.main(CONFIG, [*_tiny(tmp_path), "extractor=sift", "model.max_keypoint=500"])


def test_benchmark_hpatches_takes_extractor_and_matcher_options(tmp_path, capsys):
    """``LABEL.model.KEY=VALUE`` and ``matcher.KEY=VALUE``: recorded in results.json."""
    from tests.benchmark.homography.test_run import _write_hpatches_seq

    data = tmp_path / "hp"
    _write_hpatches_seq(data, "v_toy", warp=True)
    out = tmp_path / "out"
    argv = ["hpatches", "--dataset", str(data), "--methods", "orb", "--device", "cpu", "--output", str(out)]
    assert bench_main([*argv, "orb.model.max_keypoints=64", "matcher.ratio_threshold=0.95"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["orb"]["conf"]["model"]["max_keypoints"] == 64
    assert results["settings"]["matcher"]["ratio_threshold"] == 0.95
    assert results["settings"]["overrides"] == ["orb.model.max_keypoints=64", "matcher.ratio_threshold=0.95"]
    capsys.readouterr()
    assert bench_main([*argv, "matcher.ratio=0.9"]) == 2
    assert "unknown nearest_neighbor option key(s) ['ratio'] in the overrides" in only_error_line(capsys)
