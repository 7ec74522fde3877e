"""The head-to-head's reading aids: bold best values, the verdict, one keypoint budget for all,
the budget sweep and the accuracy-against-time picture."""

import json

import numpy as np
import pytest

from sekd_plugin.benchmark.__main__ import main as bench_main
from sekd_plugin.benchmark.homography import plots, report
from sekd_plugin.benchmark.homography.run import method_conf, split_overrides
from sekd_plugin.common.errors import ConfigError

from .test_run import dataset  # noqa: F401 - the fixture


def _aggregate(mma3, h3, auc3, rep3, kp=500, pairs=20):
    return {"num_pairs": pairs, "mma": {t: mma3 - 0.1 + 0.01 * t for t in range(1, 11)} | {3: mma3},
            "homography_accuracy": {t: h3 for t in range(1, 11)}, "homography_auc": {1: auc3 / 2, 3: auc3, 5: auc3},
            "repeatability@3": rep3, "num_keypoints": kp, "num_matches": 250}


def _envelope(demo=False):
    methods = {
        "fast": (0.600, 0.70, 0.500, 0.500, 5.0),
        "accurate": (0.750, 0.90, 0.550, 0.600, 400.0),
        "tied": (0.700, 0.90, 0.600, 0.500, 90.0),
    }
    return {"protocol": "sekd", "environment": {"device": "cpu"}, "skipped": {}, "failed": {}, "rows": [],
            "settings": {"sequences": {"a/v_x": "v"}, "demo": demo, "max_keypoints": None,
                         "matcher": {"name": "nearest_neighbor", "do_mutual_check": True, "ratio_threshold": 0.8,
                                     "distance_threshold": None},
                         "ransac": {"method": "OpenCV RANSAC", "threshold_px": 3.0, "seed": 0}},
            "methods": {m: {"ms_per_image": ms, **{s: _aggregate(a, h, auc, rep) for s in ("i", "v", "all")}}
                        for m, (a, h, auc, rep, ms) in methods.items()}}


def test_best_values_are_bold_and_the_verdict_names_each_winner(tmp_path):
    md = report.markdown_report(_envelope(), tmp_path / "out")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    cols = ("method", *report.COLUMNS)
    cell = {m: dict(zip(cols, r)) for m, r in rows.items() if m in ("fast", "accurate", "tied")}
    assert cell["accurate"]["MMA@3"] == "**0.750**" and cell["tied"]["MMA@3"] == "0.700"
    assert cell["accurate"]["H@3"] == cell["tied"]["H@3"] == "**0.900**"  # a tie as printed: both bold
    assert cell["tied"]["AUC@3"] == "**0.600**" and cell["fast"]["ms/img"].startswith("**5**")
    assert "**" not in cell["accurate"]["#kp"]  # counts are not ranked
    verdict = md[md.index("## Verdict"):]
    assert "MMA@3 (matching accuracy, higher is better): **accurate** 0.750; next tied 0.700" in verdict
    assert "H@3 (homographies within 3 px, higher is better): **accurate = tied** 0.900; next fast 0.700" in verdict
    assert "ms/img (extraction time, lower is better): **fast** 5 ms" in verdict
    assert "matching: mutual nearest neighbour, ratio test 0.8" in md and "{'name'" not in md
    last = md.strip().splitlines()[-3:]
    assert last[0].startswith(f"Results: {tmp_path / 'out' / 'results.md'}")
    assert last[1].startswith(f"Picture: {tmp_path / 'out' / 'curves.png'}")
    assert last[2].startswith(f"Picture: {tmp_path / 'out' / 'pareto.png'}")
    assert "not for ranking" not in md
    assert "is not for ranking" in report.markdown_report(_envelope(demo=True))


def test_pareto_front_and_picture(tmp_path):
    # (time, score): b is beaten by a (slower and worse); c and d are on the front
    assert plots.pareto_front([10, 20, 5, 100], [0.6, 0.5, 0.4, 0.9]) == [2, 0, 3]
    assert plots.pareto_front([10, 10], [0.5, 0.5]) == [0, 1]  # equal points do not beat each other
    path = tmp_path / "pareto.png"
    plots.plot_pareto(_envelope(), path)
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 800 and img[..., :3].std() > 0.05  # a drawing, not blank


def test_fitted_axis_limits():
    lo, hi = plots.fitted_limits([0.70, 0.75])
    assert 0.6 < lo < 0.70 and 0.75 < hi < 0.85
    assert plots.fitted_limits([]) == (0.0, 1.0)


def test_one_budget_caps_every_method_and_overrides_are_strict():
    for name in ("sekd-best", "sekd", "sift", "superpoint", "d2net", "orb", "akaze", "brisk"):
        assert method_conf(name, "sekd", max_keypoints=1234)["model"]["max_keypoints"] == 1234
        assert method_conf(name, "sekd")["model"]["max_keypoints"] == 500  # the protocol's budget
    # the protocol keeps its other settings (the SEKD authors' export threshold)
    assert method_conf("sekd-best", "sekd", max_keypoints=1234)["model"]["confidence_threshold"] == 0.4
    over = split_overrides(["model.max_keypoints=7", "ms.model.multi_scale=true"], ["ms", "sift"])
    assert over == {"ms": {"model": {"max_keypoints": 7, "multi_scale": True}}, "sift": {"model": {"max_keypoints": 7}}}
    assert method_conf("ms=sekd", "sekd", overrides=over["ms"])["model"]["multi_scale"] is True
    with pytest.raises(ConfigError, match="unknown sift option key.*multi_scale"):
        method_conf("sift", "sekd", overrides={"model": {"multi_scale": True}})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        split_overrides(["model.multi_scale"], ["sift"])


@pytest.mark.integration
def test_max_keypoints_and_budget_sweep_end_to_end(dataset, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "one"
    assert bench_main(["hpatches", "--dataset", str(dataset), "--output", str(out), "--methods", "sift,orb",
                       "--max-keypoints", "40"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["max_keypoints"] == 40
    for m in ("sift", "orb"):
        assert 0 < res["methods"][m]["all"]["num_keypoints"] <= 40
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("Picture:") and "pareto.png" in printed[-1]
    assert (out / "pareto.png").is_file() and (out / "curves.png").is_file()

    sweep = tmp_path / "sweep"
    assert bench_main(["hpatches", "--dataset", str(dataset), "--output", str(sweep), "--methods", "sift,orb",
                       "--budgets", "20,60"]) == 0
    md = (sweep / "results.md").read_text()
    assert "## At most 20 keypoints per image" in md and "## At most 60 keypoints per image" in md
    gathered = json.loads((sweep / "results.json").read_text())
    kp = {b: gathered["methods"]["orb"][b]["all"]["num_keypoints"] for b in ("20", "60")}
    assert kp["20"] <= 20 < kp["60"] <= 60
    assert (sweep / "budgets.png").is_file() and (sweep / "n20" / "results.md").is_file()
    assert np.isfinite(gathered["methods"]["sift"]["60"]["all"]["mma"]["3"])


def test_budget_flags_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_main(["hpatches", "--output", str(tmp_path), "--budgets", "500,500"])
    assert exit_.value.code == 2 and "budgets repeat a value" in capsys.readouterr().err
    assert bench_main(["hpatches", "--output", str(tmp_path), "--budgets", "500", "--max-keypoints", "9"]) == 2
