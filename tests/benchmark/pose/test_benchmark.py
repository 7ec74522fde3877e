"""The relative-pose benchmark: the estimator on exact correspondences, and a small real run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sekd_plugin.benchmark import core
from sekd_plugin.benchmark.pose import benchmark as P
from sekd_plugin.datasets.strecha import load_gt_cameras, relative_pose

from ...conftest import SHARED, shared_file

REPO = Path(__file__).resolve().parents[3]
CONFIG = str(REPO / "benchmark_configs/reconstruction/fountain-P11.yaml")


def test_estimator_recovers_gt_pose_from_exact_projections():
    """Points projected with two real Strecha cameras (hloc's pixel-centre convention): the
    estimated relative pose is the GT one, so the benchmark's conventions agree end to end."""
    gt = load_gt_cameras(shared_file("scenes/fountain-P11/gt_dense_cameras"), ["0002.jpg", "0005.jpg"])
    c0, c1 = gt["0002.jpg"], gt["0005.jpg"]
    rng = np.random.default_rng(0)
    X = c0.C + (c0.R @ np.c_[rng.uniform(-3, 3, (300, 2)), rng.uniform(6, 12, 300)].T).T  # in front of camera 0
    kp0, kp1 = c0.project(X) - 0.5, c1.project(X) - 0.5  # K is in COLMAP's corner convention
    est = P.estimate_pose(kp0, kp1, c0, c1, threshold_px=1.0)
    R_gt, t_gt = relative_pose(c0, c1)
    from sekd_plugin.metrics.pose import pose_error_deg

    err_R, err_t, err = pose_error_deg(est["R"], est["t"], R_gt, t_gt)
    assert est["num_inliers"] == 300 and err < 0.05  # RANSAC tolerance; a convention slip gives degrees
    assert P.estimate_pose(kp0[:4], kp1[:4], c0, c1, 1.0) is None  # fewer than 5 matches


def test_summary_of_rows():
    rows = [{"pose_error_deg": e, "rotation_error_deg": e, "translation_error_deg": e / 2, "num_inliers": n,
             "num_matches": 2 * n} for e, n in ((0.0, 100), (0.0, 50), (np.inf, 0), (np.inf, 0))]
    s = P.summarize(rows)
    assert s["num_pairs"] == 4 and s["num_estimated"] == 2
    assert s["auc@5"] == pytest.approx(0.5) and s["auc@20"] == pytest.approx(0.5)
    assert s["median_inliers"] == 25.0 and s["mean_matches"] == 75.0


@pytest.mark.integration
def test_pose_benchmark_small(tmp_path):
    shared_file("scenes/fountain-P11")
    from sekd_plugin.benchmark.__main__ import main as bench_main

    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i:04d}.jpg\n" for i in range(4, 8)))
    out = tmp_path / "pose"
    rc = bench_main(["pose", "--config", CONFIG, "--methods", "colmap-sift,sift", "--output", str(out),
                     "resize_max=640", "colmap_extraction.max_image_size=640", f"image_list={listing}",
                     f"data_root={SHARED / 'scenes'}", "num_threads=2", "device=cpu"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(core.ENVELOPE_KEYS)
    for method in ("colmap-sift", "sift"):
        r = results["methods"][method]["scenes"]["fountain-P11"]
        assert len([row for row in results["rows"] if row["method"] == method]) == 6
        assert r["summary"]["num_estimated"] == 6
        assert r["summary"]["auc@20"] > 0.8 and r["summary"]["median_pose_error_deg"] < 2.0
        assert results["methods"][method]["all_scenes"]["num_pairs"] == 6
    with open(out / "pairs.csv") as f:
        assert len(list(csv.DictReader(f))) == 12
    md = (out / "results.md").read_text()
    assert "| fountain-P11 | sift | NN-ratio | 6 (6) |" in md and "**all scenes**" in md
    assert (out / "auc.png").stat().st_size > 1000
    # a pair list restricts the pairs; a bad one is a clear error
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("0004.jpg 0005.jpg\n0005.jpg 0009.jpg\n")
    assert bench_main(["pose", "--config", CONFIG, "--methods", "sift", "--output", str(tmp_path / "p2"),
                       "--pairs", str(pairs), f"image_list={listing}", f"data_root={SHARED / 'scenes'}"]) == 2
