"""sekd_plugin.common.text: one error line and one table cell for every command."""

from __future__ import annotations

import math

import numpy as np

from sekd_plugin.common.text import first_line, fmt


def test_first_line():
    assert first_line(KeyError("Unable to open object")) == "Unable to open object"  # repr quotes dropped
    assert first_line(RuntimeError("")) == "RuntimeError"
    advice = RuntimeError("Weights only load failed. Re-running with weights_only=False...\nmore")
    assert first_line(advice) == "Weights only load failed. Re-running with weights_only=False..."
    assert first_line(advice, sentence=True) == "Weights only load failed"
    assert len(first_line(OSError("x" * 500))) == 200 and len(first_line(OSError("x" * 500), limit=None)) == 500


def test_fmt():
    assert fmt(None) == fmt(math.nan) == fmt(np.float32("inf")) == "-"
    assert fmt(0.123456) == "0.1235" and fmt(0.5, ".1f", 100) == "50.0" and fmt(3, ".2f") == "3" and fmt(3, ".1f", 2) == "6.0"
    assert fmt("ok") == "ok" and fmt(True) == "True"
