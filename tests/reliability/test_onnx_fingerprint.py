"""Issue #24 (item 10): a cached ONNX export is checked against the network by the fingerprint
it records (ONNX ``metadata_props``), not trusted by its file name: a swapped file, or an
export without the record, is exported again instead of running the wrong network."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from sekd_plugin.models.onnx_runtime import (FINGERPRINT_KEY, OnnxNetwork, export_path, export_stamp,
                                             onnx_missing)
from sekd_plugin.models.sekd import SEKDNet

pytestmark = pytest.mark.skipif(onnx_missing() is not None, reason=str(onnx_missing()))


def _net(seed):
    torch.manual_seed(seed)
    return SEKDNet().eval()


def _torch_prob(net, image):
    with torch.no_grad():
        logits, _, _ = net.features(image)
        return torch.softmax(logits, dim=1)[:, 1:]


def test_a_swapped_export_is_not_run(tmp_path, caplog):
    a, b = _net(0), _net(1)
    image = torch.rand(1, 1, 64, 64)
    OnnxNetwork(a, cache=tmp_path, threads=1)
    OnnxNetwork(b, cache=tmp_path, threads=1)
    shutil.copyfile(export_path(b, tmp_path), export_path(a, tmp_path))  # a's name, b's network
    with caplog.at_level(logging.WARNING):
        runner = OnnxNetwork(a, cache=tmp_path, threads=1)
    assert "exporting it again" in caplog.text and export_stamp(b) in caplog.text
    prob, _ = runner(image)
    assert torch.allclose(prob, _torch_prob(a, image), atol=1e-5)
    assert not torch.allclose(prob, _torch_prob(b, image), atol=1e-3)


def test_an_export_without_the_record_is_exported_again(tmp_path):
    import onnx

    net = _net(2)
    path = OnnxNetwork(net, cache=tmp_path, threads=1).path
    model = onnx.load(str(path))
    assert {p.key: p.value for p in model.metadata_props}[FINGERPRINT_KEY] == export_stamp(net)
    del model.metadata_props[:]
    onnx.save(model, str(path))
    OnnxNetwork(net, cache=tmp_path, threads=1)
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}[FINGERPRINT_KEY] == export_stamp(net)
