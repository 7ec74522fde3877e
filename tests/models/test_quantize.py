"""The int8 network (models/quantize.py) in both CPU runtimes: which layers run int8, the
calibration tables, and the parity fixture's keypoints kept."""

import json

import numpy as np
import pytest
import torch

from sekd_plugin.common.errors import ConfigError
from sekd_plugin.extractors.sekd import SEKD
from sekd_plugin.models import quantize
from sekd_plugin.models.onnx_runtime import onnx_missing, state_fingerprint
from sekd_plugin.models.openvino_runtime import openvino_missing

PAPER = dict(confidence_threshold=0.4, nms_radius=4, max_keypoints=500)
needs_onnx = pytest.mark.skipif(onnx_missing() is not None, reason=str(onnx_missing()))


def test_calibration_image_is_landscape_covered_and_cropped():
    portrait = np.tile(np.arange(300, dtype=np.uint8)[:, None], (1, 100))  # 300 x 100, a ramp down the rows
    x = quantize.calibration_image(portrait, (40, 60))
    assert x.shape == (1, 1, 40, 60) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    # transposed to landscape: the ramp now runs along the columns, constant down each column
    assert np.allclose(x[0, 0, 0], x[0, 0, -1]) and x[0, 0, 0, -1] > x[0, 0, 0, 0]


def test_photo_list_spreads_over_the_folder_and_refuses_an_empty_one(tmp_path):
    for i in range(10):
        (tmp_path / f"{i:02d}.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in quantize.photo_list(tmp_path, 3)] == ["00.jpg", "03.jpg", "06.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no photos"):
        quantize.photo_list(empty, 3)


def test_table_of_another_network_or_none_is_one_line_with_the_command(tmp_path):
    with pytest.raises(ConfigError, match=r"no int8 calibration table .*python -m sekd_plugin.models.quantize"):
        quantize.table_for("0123456789abcdef")
    other = tmp_path / "t.json"
    other.write_text(json.dumps({"fingerprint": "ffff", "ranges": {}}))
    with pytest.raises(ConfigError, match="calibration table of the network ffff"):
        quantize.table_for("0123456789abcdef", other)
    other.write_text("{not json")
    with pytest.raises(ConfigError, match="not an int8 calibration table"):
        quantize.table_for("ffff", other)


def test_the_shipped_network_has_its_table():
    net = SEKD({"checkpoint": "sekd_evolved"}).net
    path = quantize.table_for(state_fingerprint(net))
    assert json.loads(path.read_text())["quantizer"] == quantize.QUANT_VERSION


@needs_onnx
def test_int8_layers_are_the_documented_ones(sekd_weights, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path))
    model = SEKD({"weights": str(sekd_weights), **PAPER, "backend": "onnxruntime", "precision": "int8"})
    graph = onnx.load(str(model.runner.path)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    int8 = sorted(n.name for n in graph.node if n.op_type == "Conv"
                  and made_by.get(n.input[1]) is not None and made_by[n.input[1]].op_type == "DequantizeLinear")
    convs = sorted(n.name for n in graph.node if n.op_type == "Conv")
    assert int8 == sorted(c for c in convs if not c.startswith(quantize.FP32_PREFIXES))
    assert "/descriptor/convb/convb.2/Conv" in int8 and "/detector/Conv" not in int8 and len(int8) == 7
    assert not any(n.op_type == "DequantizeLinear" for n in graph.node
                   if any(o in ("prob", "desc") for o in n.output))  # both outputs stay fp32


def _kept(model, reference) -> float:
    image = torch.from_numpy(reference["image"])
    with torch.inference_mode():
        kpts, _, _ = model.extract(image)
    dist = np.abs(reference["keypoints"][:, None] - kpts.numpy()[None]).max(-1).min(1)
    return float(np.mean(dist < 1e-3))


@needs_onnx
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_keeps_95_percent_of_the_fixture_keypoints(sekd_weights, sekd_reference, tmp_path, monkeypatch,
                                                         backend):
    if backend == "openvino" and openvino_missing():
        pytest.skip(openvino_missing())
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    model = SEKD({"weights": str(sekd_weights), **PAPER, "backend": backend, "precision": "int8"})
    kept = _kept(model, sekd_reference)
    assert kept >= 0.95, f"{backend} int8 kept {kept:.3f} of the fixture's top-500"
    # and it is int8 that runs: the probability map is not the fp32 one
    image = torch.from_numpy(sekd_reference["image"])
    prob_int8 = model.network(image)[0]
    prob_fp32 = SEKD({"weights": str(sekd_weights)}).network(image)[0]
    assert not torch.allclose(prob_int8, prob_fp32, atol=1e-4)


def test_int8_needs_a_runtime_and_falls_back_with_one_line(sekd_weights, monkeypatch, caplog):
    with pytest.raises(ConfigError, match="int8.*openvino.*onnxruntime"):
        SEKD({"weights": str(sekd_weights), "precision": "int8"})
    import sekd_plugin.models.openvino_runtime as ov

    monkeypatch.setattr(ov, "openvino_missing", lambda: "the openvino backend needs the package(s) openvino: pip ...")
    import sekd_plugin.models.onnx_runtime as ort

    monkeypatch.setattr(ort, "onnx_missing", lambda: "the onnxruntime backend needs onnxruntime: pip ...")
    with caplog.at_level("WARNING"):
        model = SEKD({"weights": str(sekd_weights), "backend": "openvino", "precision": "int8"})
    assert model.runner is None
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 2 and "falling back to backend onnxruntime" in lines[0] and "backend torch" in lines[1]
