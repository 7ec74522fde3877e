"""The triangulation and leave-one-out localization benchmarks on 3 downscaled fountain-P11 images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sekd_plugin.benchmark import core
from sekd_plugin.benchmark.__main__ import main as bench_main
from sekd_plugin.benchmark.known_poses import triangulation as T

from ...conftest import SHARED, shared_file

REPO = Path(__file__).resolve().parents[3]
CONFIG = str(REPO / "benchmark_configs/reconstruction/fountain-P11.yaml")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    shared_file("scenes/fountain-P11")
    root = tmp_path_factory.mktemp("kp")
    (root / "list.txt").write_text("0004.jpg\n0005.jpg\n0006.jpg\n")
    return root, [f"data_root={SHARED / 'scenes'}", f"image_list={root / 'list.txt'}", "resize_max=640",
                  "num_threads=1", "device=cpu"]


def test_triangulation_benchmark(small, capsys):
    root, overrides = small
    assert bench_main(["triangulation", "--config", CONFIG, "--methods", "sift", "--output", str(root / "tri"),
                       "--work", str(root / "work"), *overrides]) == 0
    results = json.loads((root / "tri" / "results.json").read_text())
    assert set(results) == set(core.ENVELOPE_KEYS)
    r = results["methods"]["sift"]["scenes"]["fountain-P11"]
    assert results["rows"] == [{"method": "sift", "scene": "fountain-P11", **{k: r[k] for k in T.ROW_KEYS}}]
    assert r["num_images"] == 3 and r["num_points3D"] > 50 and 2.5 < r["mean_track_length"] <= 3
    assert r["num_observations"] == round(r["mean_track_length"] * r["num_points3D"]) and 0 < r["mean_reprojection_error_px"] < 1.5
    assert "triangulation_s" in r["timings"]
    assert "| fountain-P11 | sift | NN-ratio | 3 |" in (root / "tri" / "results.md").read_text()


def test_localization_benchmark(small):
    root, overrides = small
    assert bench_main(["localization", "--config", CONFIG, "--methods", "sift", "--output", str(root / "loc"),
                       "--work", str(root / "work"), *overrides]) == 0
    results = json.loads((root / "loc" / "results.json").read_text())
    assert set(results) == set(core.ENVELOPE_KEYS)
    r, queries = results["methods"]["sift"]["scenes"]["fountain-P11"], results["rows"]
    assert r["summary"]["num_queries"] == 3 and len(queries) == 3  # failures are rows too
    # with two model images only two-view tracks exist, which the triangulator drops: every query misses
    for q in queries:
        assert q["scene"] == "fountain-P11" and q["method"] == "sift" and (q["localized"] or q["reason"])
    assert r["summary"]["recall@25cm,2deg"] == sum(q["localized"] for q in queries) / 3


def test_bad_inputs_are_one_line(small, tmp_path, capsys):
    root, overrides = small
    sacre = str(REPO / "benchmark_configs/reconstruction/sacre_coeur.yaml")
    assert bench_main(["triangulation", "--config", sacre, "--methods", "sift", "--output", str(tmp_path),
                       f"data_root={SHARED / 'scenes'}"]) == 2
    assert "has no gt_cameras" in capsys.readouterr().err
    assert bench_main(["localization", "--config", CONFIG, "--output", str(tmp_path), "--query-intrinsics", "guess",
                       *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--query-intrinsics" in err[0]
