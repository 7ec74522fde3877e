"""What every scene benchmark (reconstruction, pose, triangulation, localization) shares: the
results envelope, a failing method recorded (exit 1) without losing the others, one stats
schema for both SfM pipelines, and the help of every subcommand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sekd_plugin import reconstruction as R
from sekd_plugin.benchmark import core, scenes
from sekd_plugin.benchmark.__main__ import main as bench_main

from ..conftest import SHARED, shared_file
from ..helpers import fake_scene_result

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "benchmark_configs/reconstruction/fountain-P11.yaml")
COMMANDS = ("hpatches", "speed", "train-speed", "scene", "reconstruction", "pose", "triangulation", "localization")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand(command, capsys):
    try:
        code = bench_main([command, "--help"])
    except SystemExit as exit_:  # argparse's help
        code = exit_.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower() or command == "scene"


def _tiny(tmp_path: Path) -> list[str]:
    shared_file("scenes/fountain-P11")
    listing = tmp_path / "list.txt"
    listing.write_text("0004.jpg\n0005.jpg\n0006.jpg\n")
    return [f"data_root={SHARED / 'scenes'}", f"image_list={listing}", "resize_max=640", "num_threads=1", "device=cpu"]


def _forced(*args, **kwargs):
    raise RuntimeError("forced failure\nsecond line")


# the function each benchmark evaluates one method on one scene with
TARGETS = {
    "reconstruction": ("sekd_plugin.benchmark.sfm.benchmark", "run_scene"),
    "pose": ("sekd_plugin.benchmark.pose.benchmark", "evaluate_method"),
    "triangulation": ("sekd_plugin.benchmark.known_poses.triangulation", "evaluate"),
    "localization": ("sekd_plugin.benchmark.known_poses.localization", "evaluate"),
}


@pytest.mark.parametrize("command", list(TARGETS))
def test_a_failing_method_is_recorded_and_exits_1(command, tmp_path, monkeypatch, capsys):
    import importlib

    module, name = TARGETS[command]
    monkeypatch.setattr(importlib.import_module(module), name, _forced)
    out = tmp_path / "out"
    code = bench_main([command, "--config", CONFIG, "--methods", "sift", "--output", str(out), *_tiny(tmp_path)])
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(core.ENVELOPE_KEYS) and list(results) == list(core.ENVELOPE_KEYS)
    assert results["failed"] == {"sift": "fountain-P11: RuntimeError: forced failure"}
    assert results["methods"] == {} and results["rows"] == [] and results["settings"]["methods"] == ["sift"]
    md = (out / "results.md").read_text()
    assert "Failed:" in md and "- sift: fountain-P11: RuntimeError: forced failure" in md
    capsys.readouterr()


def test_one_failing_method_keeps_the_others(tmp_path, monkeypatch):
    """reconstruction: ``sift`` fails, ``sift-colmap`` goes on into ``methods`` and ``rows``."""
    from sekd_plugin.benchmark.sfm import benchmark as B

    def fake_run(cfg, label):
        if label == "sift":
            raise RuntimeError("forced")
        return fake_scene_result()

    monkeypatch.setattr(B, "run_scene", fake_run)
    out = tmp_path / "out"
    results = B.run([CONFIG], ["sift", "sift-colmap"], out, _tiny(tmp_path))
    assert core.exit_code(results) == 1 and list(results["failed"]) == ["sift"]
    assert list(results["methods"]) == ["sift-colmap"] and results["rows"][0]["status"] == "ok"
    assert "| fountain-P11 | sift-colmap | NN-ratio | ok | 3/3 |" in (out / "results.md").read_text()


def test_a_failing_scene_keeps_the_methods_other_scenes(monkeypatch):
    """Two scenes, the second fails: the method is in ``failed`` naming the scene, and the first
    scene's summary and rows are kept."""
    monkeypatch.setattr(scenes, "skip_reason", lambda method, cfg: None)
    monkeypatch.setattr(scenes, "effective_confs", lambda cfg: {"extractor": cfg})
    plans = [("a", "m", {"x": 1}), ("b", "m", {"x": 2})]

    def evaluate(scene, method, cfg):
        if scene == "b":
            raise ValueError("bad scene")
        return {"score": 1}, [{"item": 1}, {"item": 2}]

    results = scenes.run(core.new_results("test", {}), plans, evaluate, save=lambda r: None)
    assert results["failed"] == {"m": "b: ValueError: bad scene"}
    assert results["methods"] == {"m": {"scenes": {"a": {"score": 1}}, "confs": {"a": {"extractor": {"x": 1}}}}}
    assert results["rows"] == [{"method": "m", "scene": "a", "item": 1}, {"method": "m", "scene": "a", "item": 2}]


@pytest.mark.integration
def test_both_sfm_pipelines_give_the_same_stats_keys(tmp_path):
    """The hloc-features and COLMAP-native pipelines on 3 fountain-P11 images (640 px): the
    reconstruction stats follow :data:`R.STATS_KEYS` and the scene runs have the same keys."""
    from sekd_plugin.benchmark.sfm import config, scene

    overrides = _tiny(tmp_path) + ["colmap_extraction.max_image_size=640", "camera_mode=SINGLE", "intrinsics=gt"]
    stats = {}
    for pipeline in ("hloc", "colmap"):
        cfg = config.load_config(CONFIG, [*overrides, "extractor=sift", f"pipeline={pipeline}",
                                          f"output={tmp_path / pipeline}"])
        stats[pipeline] = scene.run(cfg)
        sfm = json.loads((tmp_path / pipeline / "sfm" / "stats.json").read_text())
        assert list(sfm) == list(R.STATS_KEYS) and list(sfm["timings"]) == list(R.TIMING_KEYS), pipeline
        assert sfm["pipeline"] == pipeline and sfm["registered_images"] == 3, pipeline
    hloc, colmap = stats["hloc"], stats["colmap"]
    assert list(hloc) == list(colmap) and list(hloc["timings"]) == list(colmap["timings"])
    assert colmap["timings"]["verification_s"] is None  # COLMAP verifies while matching (in match_s)
    assert all(hloc["timings"][k] is not None for k in ("extract_s", "match_s", "verification_s", "mapping_s"))
    assert hloc["gt"]["registered_images"] == colmap["gt"]["registered_images"] == 3
