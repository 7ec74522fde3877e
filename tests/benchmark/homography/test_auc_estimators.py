"""Homography AUC (glue-factory) and the benchmark's --estimator choice."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.benchmark.__main__ import main as bench_main
from sekd_plugin.metrics import homography as M


def test_homography_auc_known_values():
    # errors 0.5 and inf: recall 0.5 from e=0.5 on; AUC@1 = (0.5*0.5/2 + 0.5*0.5) / 1 = 0.375
    auc = M.homography_auc([0.5, np.inf])
    assert auc[1] == pytest.approx(0.375) and auc[5] == pytest.approx((0.5 * 0.5 / 2 + 4.5 * 0.5) / 5)
    assert M.homography_auc([0.0, 0.0])[3] == pytest.approx(1.0)
    assert M.homography_auc([np.inf])[1] == 0.0


@pytest.mark.parametrize("estimator", ["opencv", "magsac", "pycolmap"])
def test_estimate_homography_by_name(estimator):
    rng = np.random.default_rng(1)
    H = np.array([[0.9, 0.1, 20], [0.0, 1.1, -10], [0, 0, 1.0]])
    kp0 = rng.uniform(0, 500, (100, 2))
    kp1 = np.c_[kp0, np.ones(100)] @ H.T
    kp1 = kp1[:, :2] / kp1[:, 2:]
    matches = np.stack([np.arange(100), np.arange(100)], 1)
    assert M.corner_error(M.estimate_homography(kp0, kp1, matches, estimator=estimator), H, (500, 500)) < 0.05


def test_cli_refuses_unknown_estimator(tmp_path, capsys):
    assert bench_main(["hpatches", "--output", str(tmp_path), "--estimator", "bogus"]) == 2
    assert "unknown estimator 'bogus'" in capsys.readouterr().err
