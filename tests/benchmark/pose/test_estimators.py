"""The pose benchmark's --estimator: every estimator recovers a GT relative pose; recorded in results."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.benchmark.__main__ import main as bench_main
from sekd_plugin.benchmark.pose import benchmark as P
from sekd_plugin.metrics.pose import pose_error_deg
from sekd_plugin.datasets.strecha import StrechaCamera, relative_pose
from sekd_plugin.geometry.estimators import ESTIMATORS, poselib_available

from ...helpers import STRECHA_K, rotation


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_recovers_the_gt_pose(estimator):
    if estimator == "poselib" and not poselib_available():
        pytest.skip("poselib not installed")
    c0 = StrechaCamera(STRECHA_K, np.zeros(3), np.eye(3), np.zeros(3), 1536, 1024)
    c1 = StrechaCamera(STRECHA_K, np.zeros(3), rotation([0, 1, 0], 8), np.array([1.5, 0.1, 0.2]), 1536, 1024)
    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-3, 3, (300, 2)), rng.uniform(6, 12, 300)]
    kp0, kp1 = c0.project(X) - 0.5, c1.project(X) - 0.5
    est = P.estimate_pose(kp0, kp1, c0, c1, 1.0, estimator=estimator)
    assert pose_error_deg(est["R"], est["t"], *relative_pose(c0, c1))[2] < 0.05


def test_cli_refuses_unknown_estimator(tmp_path, capsys):
    config = str(P.Path(__file__).resolve().parents[3] / "benchmark_configs/reconstruction/fountain-P11.yaml")
    assert bench_main(["pose", "--config", config, "--output", str(tmp_path), "--estimator", "lmeds"]) == 2
    assert "unknown estimator 'lmeds'" in capsys.readouterr().err
