"""The speed command's pieces on tiny inputs (numbers are not checked, only that they come)."""

import pytest
import torch

from sekd_plugin.benchmark import speed
from sekd_plugin.common import ConfigError


def test_matching_modes_report_pairs_per_second():
    rows = speed.matching(1, torch.device("cpu"), images=3, keypoints=60, dim=16)
    assert [r["pairs"] for r in rows] == [3, 3, 3] and all(r["pairs_per_s"] > 0 for r in rows)
    assert "before" in rows[0]["mode"] and "partners" in rows[2]["mode"]


def test_backends_are_checked_and_a_missing_one_is_explained(monkeypatch):
    with pytest.raises(ConfigError, match="tensorrt"):
        speed.available_backends(["torch", "tensorrt"])
    import sekd_plugin.models.onnx_runtime as onnx_runtime

    monkeypatch.setattr(onnx_runtime, "onnx_missing", lambda: "needs onnxruntime: pip install -e \".[onnx]\"")
    backends, notes = speed.available_backends(None)
    assert backends == ["torch"] and "onnxruntime skipped" in notes[0] and ".[onnx]" in notes[0]


@pytest.mark.integration
def test_breakdown_has_every_stage(sekd_weights):
    from sekd_plugin.extractors.sekd import SEKD

    stages = speed.breakdown(SEKD({"weights": str(sekd_weights)}), 1, torch.device("cpu"))
    assert {"decode (JPEG -> uint8)", "network", "NMS", "selection (threshold + top-k)", "descriptor sampling",
            "h5 write (float16)"} <= set(stages)
    assert all(v > 0 for v in stages.values())


def test_a_failing_method_is_recorded_in_the_envelope_and_exits_1(tmp_path, monkeypatch):
    import json

    from sekd_plugin.benchmark import __main__ as cli
    from sekd_plugin.benchmark.core import ENVELOPE_KEYS

    real = speed.load_extractor

    def load(conf, device):
        if conf["name"] == "brisk":
            raise RuntimeError("forced failure")
        return real(conf, device)

    monkeypatch.setattr(speed, "load_extractor", load)
    out = tmp_path / "speed"
    assert cli.main(["speed", "--methods", "orb,brisk", "--runs", "1", "--device", "cpu", "--output", str(out)]) == 1
    data = json.loads((out / "results.json").read_text())
    assert set(data) == set(ENVELOPE_KEYS) and data["failed"] == {"brisk": "RuntimeError: forced failure"}
    assert set(data["methods"]) == {"orb"} and data["rows"][0]["ms_end_to_end"] > 0
    assert "| orb |" in (out / "results.md").read_text()
