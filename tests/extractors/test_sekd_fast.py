"""SEKD's batched path and the optional ONNX Runtime backend, against the torch path and the fixture."""

import numpy as np
import pytest
import torch

from sekd_plugin.extractors.base import ConfigError
from sekd_plugin.extractors.sekd import SEKD
from sekd_plugin.models.onnx_runtime import export_path, onnx_missing, state_fingerprint

PAPER = dict(confidence_threshold=0.4, nms_radius=4, max_keypoints=500)
CONFS = {"single-scale": {}, "multi-scale": {"multi_scale": True, "multi_scale_min_size": 64},
         "sub-pixel": {"sub_pixel": True, "subpixel_score": "reread"}}


def _match_sets(k, rk, tol=1e-3):
    dist = np.abs(k[:, None] - rk[None]).max(-1)
    ia, ib = np.arange(len(k)), dist.argmin(1)
    ok = dist[ia, ib] <= tol
    assert len(k) == len(rk) and ok.all() and len(set(ib)) == len(ib), f"{(~ok).sum()} keypoints differ"
    return ia, ib


@pytest.fixture(scope="module")
def torch_model(sekd_weights):
    torch.set_num_threads(1)
    return SEKD({"weights": str(sekd_weights), **PAPER})


@pytest.mark.parametrize("name", list(CONFS))
def test_batch_equals_one_image_at_a_time(torch_model, sekd_reference, name):
    image = torch.from_numpy(sekd_reference["image"])
    batch = torch.stack([image, image.flip(-1), image.flip(-2).contiguous()])[:, None]
    torch_model.conf.update(CONFS[name])
    try:
        outs = torch_model.extract_batch(batch)
        for i in range(3):
            one = torch_model({"image": batch[i:i + 1]})
            assert torch.equal(outs[i]["keypoints"], one["keypoints"][0])
            assert torch.equal(outs[i]["scores"], one["scores"][0])
            assert torch.equal(outs[i]["descriptors"], one["descriptors"][0])
    finally:
        for key in CONFS[name]:
            torch_model.conf[key] = SEKD.default_conf[key]


def test_unknown_backend_is_a_conf_error(sekd_weights):
    with pytest.raises(ConfigError, match="backend"):
        SEKD({"weights": str(sekd_weights), "backend": "tensorrt"})


def test_missing_onnxruntime_falls_back_to_torch_with_one_line(sekd_weights, monkeypatch, caplog):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with caplog.at_level("WARNING"):
        model = SEKD({"weights": str(sekd_weights), "backend": "onnxruntime"})
    assert model.runner is None  # the torch network runs
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and "onnxruntime" in lines[0] and 'pip install -e ".[onnx]"' in lines[0]
    assert "falling back to backend torch" in lines[0]


def test_fingerprint_follows_the_weights(torch_model):
    net = torch_model.net
    before = export_path(net, "/cache")
    assert before.name.startswith("sekd-" + state_fingerprint(net)) and before.parent.name == "onnx"
    changed = type(net)()
    changed.load_state_dict(net.state_dict())
    with torch.no_grad():
        changed.detector.bias[0] += 1e-6
    assert export_path(changed, "/cache") != before  # a retrained checkpoint never reuses an export


needs_onnx = pytest.mark.skipif(onnx_missing() is not None, reason=str(onnx_missing()))


@pytest.fixture(scope="module")
def onnx_model(sekd_weights, tmp_path_factory):
    if onnx_missing():
        pytest.skip(onnx_missing())
    mp = pytest.MonkeyPatch()
    mp.setenv("SEKD_PLUGIN_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield SEKD({"weights": str(sekd_weights), **PAPER, "backend": "onnxruntime", "backend_threads": 1})
    finally:
        mp.undo()


@needs_onnx
def test_onnx_export_is_cached_under_the_fingerprint(onnx_model, tmp_path):
    path = onnx_model.runner.path
    assert path.exists() and state_fingerprint(onnx_model.net) in path.name
    assert not list(path.parent.glob(".*tmp*"))  # written atomically, no leftovers


@needs_onnx
def test_onnx_network_parity_with_official_maps(onnx_model, sekd_reference):
    prob, desc, _ = onnx_model.network(torch.from_numpy(sekd_reference["image"]))
    ref_desc = torch.from_numpy(sekd_reference["desc_map"])
    assert (prob - torch.from_numpy(sekd_reference["prob_map"])).abs().max() < 1e-5
    assert (desc - ref_desc).abs().max() / ref_desc.abs().max() < 1e-5


@needs_onnx
@pytest.mark.parametrize("prefix,conf", [("", {}), ("ms_", {"multi_scale": True}),
                                         ("sp_", {"sub_pixel": True, "subpixel_score": "reread"})],
                         ids=["single-scale", "multi-scale", "sub-pixel"])
def test_onnx_parity_with_official_fixture(onnx_model, sekd_reference, prefix, conf):
    onnx_model.conf.update(conf)
    try:
        out = onnx_model({"image": torch.from_numpy(sekd_reference["image"])[None, None]})
    finally:
        for key in conf:
            onnx_model.conf[key] = SEKD.default_conf[key]
    k, s, d = (out[key][0].numpy() for key in ("keypoints", "scores", "descriptors"))
    ia, ib = _match_sets(k, sekd_reference[prefix + "keypoints"])
    assert len(ia) == 500
    np.testing.assert_allclose(s[ia], sekd_reference[prefix + "scores"][ib], atol=1e-5, rtol=0)
    assert (d.T[ia] * sekd_reference[prefix + "descriptors"][ib]).sum(1).min() > 0.9999


@needs_onnx
def test_onnx_batch_and_odd_sizes(onnx_model, torch_model, sekd_reference):
    image = torch.from_numpy(sekd_reference["image"])[:287, :381]  # not multiples of 4
    batch = torch.stack([image, image.flip(-1)])[:, None]
    outs = onnx_model.extract_batch(batch)
    for i in range(2):
        ref = torch_model({"image": batch[i:i + 1]})
        k, rk = outs[i]["keypoints"].numpy(), ref["keypoints"][0].numpy()
        dist = np.abs(k[:, None] - rk[None]).max(-1)
        ia = np.flatnonzero(dist.min(1) <= 1e-3)
        ib = dist[ia].argmin(1)
        # the 500th place can be a near-tie decided by float rounding (torch vs ORT kernels)
        assert len(k) == len(rk) and len(ia) >= 0.99 * len(k)
        cos = (outs[i]["descriptors"].numpy().T[ia] * ref["descriptors"][0].numpy().T[ib]).sum(1)
        assert cos.min() > 0.9999


def test_bf16_is_close_to_fp32_and_refused_with_onnx(torch_model, sekd_weights, sekd_reference):
    bf16 = SEKD({"weights": str(sekd_weights), **PAPER, "precision": "bf16"})
    prob, desc, _ = bf16.network(torch.from_numpy(sekd_reference["image"]))
    assert prob.dtype == torch.float32 and desc.dtype == torch.float32
    assert (prob - torch.from_numpy(sekd_reference["prob_map"])).abs().max() < 0.05
    out = bf16({"image": torch.from_numpy(sekd_reference["image"])[None, None]})
    assert out["keypoints"].shape[1] == 500
    with pytest.raises(ConfigError, match="bf16"):
        SEKD({"weights": str(sekd_weights), "precision": "bf16", "backend": "onnxruntime"})
