"""The scenes x methods SfM benchmark: methods with their matchers, the colmap-sift reference row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sekd_plugin.benchmark import core, methods as Mth
from sekd_plugin.benchmark import scenes
from sekd_plugin.benchmark.sfm import benchmark as B
from sekd_plugin.common import ConfigError

from ...conftest import SHARED, shared_file

REPO = Path(__file__).resolve().parents[3]
CONFIG = str(REPO / "benchmark_configs/reconstruction/fountain-P11.yaml")


def test_method_entries_and_plan(tmp_path):
    assert Mth.method_entry("sift") == {"label": "sift", "pipeline": "hloc", "extractor": "sift-colmap",
                                        "matcher": "NN-ratio", "weights": None}
    assert Mth.method_entry("superpoint")["matcher"] == "NN-superpoint"
    assert Mth.method_entry("sekd-sfm")["extractor"] == "sekd-sfm"
    assert Mth.method_entry("sift-colmap") == {"label": "sift-colmap", "pipeline": "hloc", "extractor": "sift-colmap",
                                               "matcher": "NN-ratio", "weights": None}
    assert Mth.method_entry("ours=sekd", "w.pth") == {"label": "ours", "pipeline": "hloc", "extractor": "sekd",
                                                      "matcher": "NN-mutual", "weights": "w.pth"}
    assert Mth.method_entry("colmap-sift")["pipeline"] == "colmap"
    assert Mth.method_entry("sift-n4096")["matcher"] == "NN-ratio"  # any conf: its model's matcher
    assert Mth.method_entry("orb")["matcher"] == "NN-mutual"
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        Mth.method_entry("nope")
    plans = scenes.plan([CONFIG], ["colmap-sift", "sift", "sekd-sfm"], tmp_path, ["intrinsics=gt"])
    by_method = {m: cfg for _, m, cfg in plans}
    assert by_method["colmap-sift"]["pipeline"] == "colmap"
    assert by_method["sift"]["matcher"] == "NN-ratio" and by_method["sekd-sfm"]["matcher"] == "NN-mutual"
    assert all(cfg["intrinsics"] == "gt" for cfg in by_method.values())
    assert by_method["sift"]["output"] == str(tmp_path / "fountain-P11" / "sift")
    # a matcher given on the command line replaces every method's
    plans = scenes.plan([CONFIG], ["sift", "sekd"], tmp_path, ["matcher=NN-mutual"])
    assert {cfg["matcher"] for _, _, cfg in plans} == {"NN-mutual"}
    # every config x method is validated before the first run
    with pytest.raises(ConfigError, match="mapper.bogus"):
        scenes.plan([CONFIG], ["sift"], tmp_path, ["mapper.bogus=1"])


def _result(failed: bool, registered: int = 11):
    return {"registered_images": registered, "total_images": 11, "num_points3D": 100, "mean_track_length": 3.0,
            "mean_reprojection_error_px": 0.5, "num_verified_pairs": 55, "num_pairs": 55, "matcher": "NN-ratio",
            "mean_keypoints_per_image": 1000.0, "timings": {"extract_s": 1.0, "match_s": 2.0, "import_s": 0.5,
                                                             "verification_s": 1.0, "mapping_s": 1.5,
                                                             "pairs_per_s": 27.5},
            "gt": {"median_center_error_m": 2.7 if failed else 0.003, "pct_center_within_1cm": 0.0,
                   "pct_center_within_3cm": 0.0, "pct_center_within_10cm": 0.0, "median_rotation_error_deg": 1.0,
                   "failed": failed, "failure": "median centre error 2.7 m > 10% of the scene extent" if failed else ""}}


def test_table_makes_failures_impossible_to_miss(tmp_path):
    results = {"settings": {"overrides": []}, "skipped": {}, "failed": {}, "methods": {
        m: {"scenes": {"s": r}} for m, r in (("good", _result(False)), ("wrong", _result(True)),
                                            ("none", {**_result(False, 0), "gt": None}))}}
    rows = {r[1]: r for r in B.table_rows(results)}
    col = {c: i for i, c in enumerate(B.COLUMNS)}
    assert rows["good"][col["status"]] == "ok" and rows["good"][col["med centre err (cm)"]] == "0.30"
    assert rows["wrong"][col["status"]].startswith("FAILED (median centre error")
    assert rows["wrong"][col["med centre err (cm)"]] == "**270.00** FAILED"
    assert rows["none"][col["status"]] == "FAILED (no model)"
    assert rows["good"][col["match (pairs/s)"]] == "27.5" and rows["good"][col["matcher"]] == "NN-ratio"
    assert rows["good"][col["extract/match/sfm (s)"]] == "1.0/2.0/3.0"  # sfm: import + verification + mapping
    md = B.markdown_report(results)
    assert md.count("FAILED (") == 2
    assert B.plot(results, tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.integration
def test_benchmark_reconstruction_with_colmap_reference(tmp_path, monkeypatch):
    """5 images at 640 px: colmap-sift and sift rows, a method without weights skipped."""
    shared_file("scenes/fountain-P11")
    from sekd_plugin.benchmark.__main__ import main as bench_main

    monkeypatch.setattr(scenes, "skip_reason",
                        lambda method, cfg: "sekd skipped: weights not found (test)" if method == "sekd" else None)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i:04d}.jpg\n" for i in range(3, 8)))
    out = tmp_path / "bench"
    rc = bench_main(["reconstruction", "--config", CONFIG, "--methods", "colmap-sift,sekd,sift", "--output", str(out),
                     "resize_max=640", "colmap_extraction.max_image_size=640", "intrinsics=gt",
                     f"image_list={listing}", f"data_root={SHARED / 'scenes'}", "num_threads=2", "device=cpu"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(core.ENVELOPE_KEYS) and "sekd" in results["skipped"] and results["failed"] == {}
    rows = {m: e["scenes"]["fountain-P11"] for m, e in results["methods"].items()}
    assert [(r["scene"], r["method"], r["status"]) for r in results["rows"]] == [
        ("fountain-P11", "colmap-sift", "ok"), ("fountain-P11", "sift", "ok")]
    for method in ("colmap-sift", "sift"):
        r = rows[method]
        assert r["registered_images"] == 5 and r["gt"]["registered_images"] == 5, method
        assert not r["gt"]["failed"] and r["gt"]["median_center_error_m"] < 0.05
        assert r["timings"]["pairs_per_s"] > 0 and r["mean_keypoints_per_image"] > 500
    assert rows["colmap-sift"]["pipeline"] == "colmap" and rows["sift"]["matcher"] == "NN-ratio"
    md = (out / "results.md").read_text()
    assert "| fountain-P11 | colmap-sift | COLMAP" in md and "| fountain-P11 | sift | NN-ratio | ok | 5/5 |" in md
    assert "- sekd skipped" in md
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "fountain-P11" / "colmap-sift" / "sfm" / "images.bin").exists()
