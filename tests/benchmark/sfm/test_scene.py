"""One scene's run (``python -m sekd_plugin.benchmark scene``): typed config (struct mode), errors
before any work, runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sekd_plugin
from sekd_plugin.benchmark.sfm import config as C, scene
from sekd_plugin.common import ConfigError, InputError

from ...conftest import SHARED, shared_file

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "benchmark_configs/reconstruction/fountain-P11.yaml"


def test_config_errors(tmp_path, monkeypatch):
    cfg = C.load_config(CONFIG, ["extractor=sift", "resize_max=800", "mapper.num_threads=1"])
    assert cfg["scene"] == "fountain-P11" and cfg["resize_max"] == 800 and cfg["mapper"] == {"num_threads": 1}
    assert cfg["matcher"] is None and C.matcher_name(cfg) == "NN-ratio"  # the extractor's matcher
    assert C.matcher_name(C.load_config(CONFIG, ["extractor=superpoint"])) == "NN-superpoint"
    assert C.matcher_name(C.load_config(CONFIG, ["extractor=sekd"])) == "NN-mutual"
    assert C.matcher_name(C.load_config(CONFIG, ["extractor=sift", "matcher=NN-mutual"])) == "NN-mutual"
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['bogus'\].*valid keys"):
        C.load_config(CONFIG, ["bogus=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: x\nimagez: y\n")
    with pytest.raises(ConfigError, match="imagez"):
        C.load_config(bad)
    with pytest.raises(ConfigError, match="key 'window'.*abc"):
        C.load_config(CONFIG, ["window=abc"])
    cfg = C.load_config(CONFIG, ["extractor=sekd", "extractor_options.sekd.max_keypoints=2000",
                                      "extractor_options.sift.max_keypoints=7"])
    assert C.extraction_conf(cfg)["model"]["max_keypoints"] == 2000
    cfg["extractor"] = "sift"
    assert C.extraction_conf(cfg)["model"]["max_keypoints"] == 7
    cfg["extractor"] = "sift-n4096"  # options of other extractors are ignored
    assert C.extraction_conf(cfg)["model"]["max_keypoints"] == 4096
    with pytest.raises(ConfigError, match=r"unknown sekd option key\(s\) \['bogus'\] in extractor_options.sekd"):
        C.load_config(CONFIG, ["extractor=sekd", "extractor_options.sekd.bogus=1"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        C.load_config(CONFIG, ["extractor_options.max_keypoints=1"])
    with pytest.raises(ConfigError, match="unknown extraction conf"):
        C.load_config(CONFIG, ["extractor=nope"])
    with pytest.raises(ConfigError, match="matcher"):
        C.load_config(CONFIG, ["matcher=nope"])
    with pytest.raises(ConfigError, match="intrinsics"):
        C.load_config(CONFIG, ["intrinsics=magic"])
    with pytest.raises(ConfigError, match="device"):
        C.load_config(CONFIG, ["device=tpu:0"])
    with pytest.raises(ConfigError, match="pipeline"):
        C.load_config(CONFIG, ["pipeline=magic"])
    with pytest.raises(ConfigError, match="gt_cameras"):
        C.load_config(REPO / "benchmark_configs/reconstruction/sacre_coeur.yaml", ["intrinsics=gt"])
    with pytest.raises(ConfigError, match="not found"):
        C.load_config(tmp_path / "missing.yaml")
    # mapper / verification / COLMAP option keys and types are checked at load time
    with pytest.raises(ConfigError, match="unknown config key 'mapper.mapper.bogus'"):
        C.load_config(CONFIG, ["mapper.mapper.bogus=1"])
    with pytest.raises(ConfigError, match="init_min_num_inliers' must be a int"):
        C.load_config(CONFIG, ["mapper.mapper.init_min_num_inliers=many"])
    with pytest.raises(ConfigError, match="unknown config key 'verification.ransac.bogus'"):
        C.load_config(CONFIG, ["verification.ransac.bogus=1"])
    with pytest.raises(ConfigError, match="colmap_extraction option 'sift.bogus'"):
        C.load_config(CONFIG, ["pipeline=colmap", "colmap_extraction.sift.bogus=1"])
    with pytest.raises(ConfigError, match="extractor_options.sekd.checkpoint: unknown asset 'nope'"):
        C.load_config(CONFIG, ["extractor=sekd", "extractor_options.sekd.checkpoint=nope"])
    cfg = C.load_config(CONFIG, [f"data_root={tmp_path / 'nowhere'}"])
    with pytest.raises(InputError, match="nowhere"):
        scene.run(cfg)
    monkeypatch.setenv(C.SCENES_ENV, str(tmp_path / "env-scenes"))
    with pytest.raises(InputError, match="env-scenes"):
        C.data_root(C.load_config(CONFIG))


def test_shipped_configs_load():
    configs = sorted((REPO / "benchmark_configs/reconstruction").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"sacre_coeur", "fountain-P11", "Herz-Jesu-P8", "castle-P19", "castle-P30",
                                         "entry-P10", "Herz-Jesu-P25"}
    for config in configs:
        cfg = C.load_config(config)
        assert cfg["scene"] == config.stem and cfg["images"] == f"{config.stem}/images"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_errors_are_one_line_exit_2_before_any_work(tmp_path, capsys):
    """YAML syntax error, unknown mapper key, unknown checkpoint name: one line, exit 2, nothing written.

    Before: a traceback for the YAML error and the checkpoint name (exit 1); the mapper key
    was only caught after extraction and matching had run."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("scene: x\nimages: [unclosed\n")
    assert scene.cli([str(bad)]) == 2
    line = _one_error_line(capsys)
    assert "broken.yaml" in line and "YAML syntax error at line" in line
    out = tmp_path / "out"
    assert scene.cli([str(CONFIG), "extractor=sift", "mapper.mapper.init_min_num_inlierz=5", f"output={out}"]) == 2
    assert "mapper.mapper.init_min_num_inlierz" in _one_error_line(capsys)
    assert not out.exists()  # nothing extracted or matched
    assert scene.cli([str(CONFIG), "extractor=sekd", "extractor_options.sekd.checkpoint=sekd_typo",
                       f"output={out}"]) == 2
    assert "unknown asset 'sekd_typo'" in _one_error_line(capsys) and not out.exists()
    assert scene.cli([str(CONFIG), f"data_root={tmp_path / 'none'}", f"output={out}"]) == 2
    assert "scenes folder not found" in _one_error_line(capsys)
    # the documented command is the benchmark's ``scene`` subcommand; the old stub modules are gone
    from sekd_plugin.benchmark.__main__ import main as bench_main

    assert bench_main(["scene", str(bad)]) == 2 and "YAML syntax error" in _one_error_line(capsys)
    assert bench_main(["scene"]) == 2 and "benchmark scene" in capsys.readouterr().out
    package = Path(sekd_plugin.__file__).parent
    for old in ("reconstruct", "eval_sfm", "hloc", "benchmark/reconstruction"):
        assert not (package / f"{old}.py").exists(), old


def test_yaml_headers_and_readme_name_the_scene_command():
    for config in sorted((REPO / "benchmark_configs/reconstruction").glob("*.yaml")):
        text = config.read_text()
        assert f"# Run: python -m sekd_plugin.benchmark scene benchmark_configs/reconstruction/{config.name}" in text
        assert "sekd_plugin.reconstruct " not in text
    assert "sekd_plugin.reconstruct " not in (REPO / "README.md").read_text()


@pytest.mark.integration
def test_reconstruct_config_fountain6(tmp_path):
    """SIFT on 6 fountain-P11 images at 800 px with GT intrinsics: all register, cm-level accuracy."""
    shared_file("scenes/fountain-P11")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i:04d}.jpg\n" for i in range(3, 9)))
    cfg = C.load_config(CONFIG, [
        "extractor=sift", "resize_max=800", "intrinsics=gt", f"image_list={listing}", f"output={tmp_path / 'out'}",
        f"data_root={SHARED / 'scenes'}", "num_threads=2", "device=cpu"])
    stats = scene.run(cfg)
    assert stats["total_images"] == 6 and stats["registered_images"] >= 5 and stats["matcher"] == "NN-ratio"
    gt = stats["gt"]
    assert gt["registered_images"] >= 5 and gt["median_center_error_m"] < 0.05 and not gt["failed"]
    assert gt["median_rotation_error_deg"] < 1.0
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["gt"]["median_center_error_m"] == pytest.approx(gt["median_center_error_m"])
    assert {"extract_s", "match_s", "import_s", "verification_s", "mapping_s", "pairs_per_s"} == set(saved["timings"])
    assert saved["timings"]["pairs_per_s"] == pytest.approx(15 / saved["timings"]["match_s"])
    assert (tmp_path / "out" / "sfm" / "points3D.bin").exists()
    # a second run reuses features and matches (and may replace its own sfm/)
    again = scene.run(cfg)
    assert again["cached"] == {"extract": True, "match": True}
    assert again["timings"]["extract_s"] == pytest.approx(stats["timings"]["extract_s"])
    summary = scene.format_summary(again)
    assert "GT: median centre error" in summary and "(>= 15 inliers" in summary


@pytest.mark.integration
def test_unreadable_image_is_left_out_not_fatal(tmp_path):
    """One broken image: a warning, the others are reconstructed, totals still count it."""
    src = shared_file("scenes/fountain-P11/images")
    images = tmp_path / "scene" / "images"
    images.mkdir(parents=True)
    for i in range(3, 8):
        (images / f"{i:04d}.jpg").symlink_to(src / f"{i:04d}.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cfg = C.load_config(CONFIG, [
        "extractor=sift", "resize_max=640", "gt_cameras=null", "images=scene/images",
        f"data_root={tmp_path}", f"output={tmp_path / 'out'}", "num_threads=2", "device=cpu"])
    stats = scene.run(cfg)
    assert stats["total_images"] == 6 and 3 <= stats["registered_images"] <= 5
