"""Localization metrics on known poses."""

from __future__ import annotations

import numpy as np
import pytest

from sekd_plugin.metrics import localization as M

from ..helpers import rotation


def test_pose_errors():
    R = rotation([0, 0, 1], 30)
    t = np.array([1.0, 2.0, 3.0])
    assert M.pose_errors(R, t, R, t) == pytest.approx((0.0, 0.0), abs=1e-6)
    R2 = rotation([0, 0, 1], 31)
    C = -R.T @ t
    t2 = -R2 @ (C + [0.03, 0, 0])  # centre 3 cm off, rotation 1 deg off
    err_m, err_deg = M.pose_errors(R2, t2, R, t)
    assert err_m == pytest.approx(0.03) and err_deg == pytest.approx(1.0)


def test_recall_and_summary_count_misses():
    e_m = [0.005, 0.04, 0.2, np.inf]
    e_d = [0.05, 0.4, 1.0, np.inf]
    assert M.recall(e_m, e_d) == [0.25, 0.5, 0.75]
    s = M.summarize(e_m, e_d)
    assert s["num_queries"] == 4 and s["num_localized"] == 3 and s["recall@1cm,0.1deg"] == 0.25
    assert s["median_position_error_m"] == pytest.approx(0.12)
    assert M.recall([0.001], [0.5]) == [0.0, 1.0, 1.0]  # both bounds must hold
