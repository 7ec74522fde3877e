"""The speed command's pieces on tiny inputs (numbers are not checked, only that they come)."""

import pytest
import torch

from sekd_plugin.benchmark import speed
from sekd_plugin.common import ConfigError


def test_matching_modes_report_pairs_per_second():
    rows = speed.matching(1, torch.device("cpu"), images=3, keypoints=60, dim=16)
    assert [r["pairs"] for r in rows] == [3] * 5 and all(r["pairs_per_s"] > 0 for r in rows)
    assert "before" in rows[0]["mode"] and "partners" in rows[2]["mode"] and "blocked" in rows[4]["mode"]


def test_matching_pair_times_both_paths_and_checks_they_agree():
    rows = speed.matching_pair(1, torch.device("cpu"), keypoints=1100, dim=32)  # > 1 block of rows
    assert [r["mode"] for r in rows] == ["full similarity matrix (before)", "blocked",
                                         "full similarity matrix (before), ratio 0.8", "blocked, ratio 0.8"]
    assert all(r["identical"] and r["ms_per_pair"] > 0 and r["mutual_matches"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] == rows[0]["ms_per_pair"] / rows[1]["ms_per_pair"]
    assert rows[3]["speedup"] == rows[2]["ms_per_pair"] / rows[3]["ms_per_pair"]
    assert rows[2]["mutual_matches"] < rows[0]["mutual_matches"]  # the ratio test removes some


def test_achieved_rate_and_fraction_of_peak_from_known_flop_and_time():
    from sekd_plugin.benchmark.peak import fraction_of, gflops_per_s

    assert gflops_per_s(3.0, 250.0) == 12.0  # 3 GFLOP in a quarter of a second
    assert gflops_per_s(None, 10.0) is None and gflops_per_s(1.0, None) is None and gflops_per_s(1.0, 0.0) is None
    assert fraction_of(12.0, 48.0) == 0.25 and fraction_of(None, 48.0) is None and fraction_of(1.0, None) is None
    row = speed.with_rates(40.0, {"gflop": 2.0, "ms_end_to_end": 500.0, "ms_network": 100.0})
    assert (row["gflops_end_to_end"], row["gflops_network"]) == (4.0, 20.0)
    assert (row["fraction_fp32_peak_end_to_end"], row["fraction_fp32_peak_network"]) == (0.1, 0.5)
    assert row["fp32_peak_same_load"] == 40.0
    sift = speed.with_rates(40.0, {"gflop": None, "ms_end_to_end": 30.0, "ms_network": None})
    assert sift["gflops_end_to_end"] is None and sift["fraction_fp32_peak_end_to_end"] is None


def test_matmul_peak_measures_a_rate_and_shrinks_a_slow_product(monkeypatch):
    from sekd_plugin.benchmark import peak

    row = peak.matmul_peak("fp32", size=256, repeats=2)
    assert row["size"] == 256 and row["ms"] > 0
    assert abs(row["gflops"] - 2 * 256 ** 3 / 1e9 / (row["ms"] / 1000)) < 1e-6 * row["gflops"]
    # every product "takes" 0.1 s: 8x that is over max_seconds, so the size stays at 256
    monkeypatch.setattr(peak, "_seconds", lambda fn, a, b, device: 0.1)
    slow = peak.matmul_peak("bf16", size=2048, repeats=1, max_seconds=0.5)
    assert slow["size"] == 256 and slow["gflops"] == 2 * 256 ** 3 / 1e9 / 0.1
    monkeypatch.setattr(peak, "_seconds", lambda fn, a, b, device: 0.001)  # fast: grows to the cap
    assert peak.matmul_peak("fp32", size=1024, repeats=1)["size"] == 1024


def test_matmul_peak_reports_a_dtype_it_cannot_run(monkeypatch):
    from sekd_plugin.benchmark import peak

    def refuse(a, b):
        raise RuntimeError("_int_mm: no kernel for this CPU\nmore")

    monkeypatch.setattr(peak, "_product", lambda dtype: refuse)
    row = peak.matmul_peak("int8", size=256)
    assert row == {"dtype": "int8", "op": peak.OPS["int8"], "error": "RuntimeError: _int_mm: no kernel for this CPU"}
    assert "int8 n/a (RuntimeError" in peak.describe([row])
    rows = peak.matmul_peaks(size=256, repeats=1, dtypes=("fp32",))
    assert rows[0]["threads"] == torch.get_num_threads()


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
    text = (out / "results.md").read_text()
    assert "| orb |" in text and "% of fp32 peak" in text and "Measured peak" in text
    peaks = {r["dtype"]: r for r in data["rows"] if r["kind"] == "peak"}
    assert set(peaks) == {"fp32", "bf16", "int8", "ort-fp32", "ort-int8"} and peaks["fp32"]["gflops"] > 0
    orb = data["rows"][0]
    assert orb["fp32_peak_same_load"] > 0 and orb["gflops_end_to_end"] is None  # no learned layers: no rate


def test_every_cpu_runtime_is_skipped_with_one_line_when_its_package_is_missing(monkeypatch):
    import sekd_plugin.models.onnx_runtime as onnx_runtime
    import sekd_plugin.models.openvino_runtime as openvino_runtime

    monkeypatch.setattr(onnx_runtime, "onnx_missing", lambda: "needs onnxruntime")
    monkeypatch.setattr(openvino_runtime, "openvino_missing", lambda: None)
    backends, notes = speed.available_backends(None)
    # openvino needs onnxruntime's quantiser and the export too
    assert backends == ["torch"] and notes == ["backend onnxruntime skipped: needs onnxruntime",
                                               "backend openvino skipped: needs onnxruntime"]
    monkeypatch.setattr(onnx_runtime, "onnx_missing", lambda: None)
    monkeypatch.setattr(openvino_runtime, "openvino_missing", lambda: "needs openvino")
    assert speed.available_backends(None) == (["torch", "onnxruntime"], ["backend openvino skipped: needs openvino"])


def test_sekd_variants_follow_the_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    every = ["torch", "onnxruntime", "openvino"]
    assert speed.sekd_variants({"precision": "fp32"}, every, cpu) == every
    assert speed.sekd_variants({}, every, cuda) == ["torch"]  # the CPU runtimes only on the CPU
    assert speed.sekd_variants({"precision": "int8"}, every, cpu) == ["onnxruntime", "openvino"]
    assert speed.sekd_variants({"precision": "int8"}, ["torch"], cpu) == []
    assert speed.sekd_variants({"precision": "bf16"}, every, cpu) == ["torch"]


def test_authors_code_must_be_a_checkout_and_the_weights_present(tmp_path):
    from sekd_plugin.benchmark import authors_code

    with pytest.raises(ConfigError, match="nets/sekd.py is missing"):
        authors_code.load(tmp_path, tmp_path / "sekd.pth")
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "sekd.py").write_text("")
    with pytest.raises(ConfigError, match="weights fetch sekd"):
        authors_code.load(tmp_path, tmp_path / "sekd.pth")


def test_onnxruntime_peaks_run_or_fall_back_with_one_line(monkeypatch):
    import sekd_plugin.models.onnx_runtime as onnx_runtime
    from sekd_plugin.benchmark import peak

    if onnx_runtime.onnx_missing() is None:  # installed: both products run (tiny)
        for dtype in ("ort-fp32", "ort-int8"):
            row = peak.matmul_peak(dtype, size=64, repeats=1)
            assert row["size"] == 64 and row["gflops"] > 0, row
    monkeypatch.setattr(onnx_runtime, "onnx_missing", lambda: "needs onnxruntime: pip install -e \".[onnx]\"")
    row = peak.matmul_peak("ort-int8", size=64)
    assert row["error"] == "RuntimeError: needs onnxruntime: pip install -e \".[onnx]\""
