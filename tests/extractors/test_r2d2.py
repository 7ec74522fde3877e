"""R2D2 against naver/r2d2's extract.py outputs (../shared/weights/r2d2_reference.npz, made with
naver/r2d2 @ 0ff8f6a on a real photo): the README's multi-scale settings and single scale.

The weights are CC BY-NC-SA 3.0 (non-commercial use only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sekd_plugin.infra import assets
from sekd_plugin.benchmark.methods import method_entry
from sekd_plugin.extractors.base import load_extractor
from sekd_plugin.extractors.r2d2 import R2D2
from sekd_plugin.models.checkpoint import CheckpointError
from sekd_plugin.models.r2d2 import QuadL2NetConfCFS, architecture_name, load_r2d2_weights
from tests.conftest import shared_file
from tests.extractors.parity import assert_parity, load_reference, parity, rgb_image

LICENSE = "R2D2 weights are CC BY-NC-SA 3.0: non-commercial use only"


def r2d2_shared(rel: str):
    """``shared_file`` whose skip line also states the weights' licence."""
    try:
        return shared_file(rel)
    except pytest.skip.Exception as e:
        pytest.skip(f"{e.msg}; {LICENSE}")


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_reference(r2d2_shared("weights/r2d2_reference.npz"))


@pytest.fixture(scope="module")
def image(reference) -> torch.Tensor:
    return rgb_image(reference)


@pytest.fixture()
def weights_dir(monkeypatch, tmp_path):
    r2d2_shared("weights/r2d2_WASF_N16.pt")
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(shared_file("weights")))
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("run,multiscale", [("ss", False), ("ms", True)])
def test_parity_with_official(run, multiscale, reference, image, weights_dir):
    out = load_extractor({"name": "r2d2", "multiscale": multiscale})({"image": image})
    out = {k: v.numpy() for k, v in out.items()}
    assert_parity(parity(out, reference[f"{run}_keypoints"], reference[f"{run}_scores"],
                         reference[f"{run}_descriptors"]), run)
    assert np.all(np.diff(out["scores"][0]) <= 0)  # by decreasing score


def test_levels_follow_the_official_loop():
    r = R2D2.__new__(R2D2)
    r.conf = dict(R2D2.default_conf)
    used = [round(s, 4) for s, u in r.levels(427, 640) if u]
    assert used == [round(2 ** (-i / 4), 4) for i in range(6)]  # 640 px down to 269 px (> 256)
    big = r.levels(1500, 2000)  # scales above 1024 px are skipped but still resized through
    assert not big[0][1] and all(u for s, u in big if s * 2000 <= 1024.001)
    r.conf["multiscale"] = False
    assert r.levels(427, 640) == [(1.0, True)]


def test_budget(image, weights_dir):
    out = load_extractor({"name": "r2d2", "multiscale": False, "max_keypoints": 50})({"image": image})
    assert out["keypoints"].shape == (1, 50, 2) and out["descriptors"].shape == (1, 128, 50)


def _checkpoint(tmp_path, net: str) -> str:
    state = {f"module.{k}": v for k, v in QuadL2NetConfCFS().state_dict().items()}
    path = tmp_path / "r2d2.pt"
    torch.save({"net": net, "state_dict": state}, path)
    return str(path)


def test_other_architecture_refused_by_name(tmp_path):
    load_r2d2_weights(QuadL2NetConfCFS(), _checkpoint(tmp_path, "Quad_L2Net_ConfCFS()"))
    for net in ("Fast_Quad_L2Net_ConfCFS()", "__import__('os').system('echo pwned')", "Quad_L2Net_ConfCFS(dim=64)"):
        with pytest.raises(CheckpointError, match="is not Quad_L2Net_ConfCFS") as e:
            load_r2d2_weights(QuadL2NetConfCFS(), _checkpoint(tmp_path, net))
        assert "\n" not in str(e.value)
    assert architecture_name("Fast_Quad_L2Net_ConfCFS()") == "Fast_Quad_L2Net_ConfCFS"
    assert architecture_name(3) is None


def test_manifest_states_the_licence():
    asset = assets.load_manifest("r2d2_WASF_N16")
    assert "NON-COMMERCIAL" in asset.license and asset.url.endswith("naver/r2d2/raw/master/models/r2d2_WASF_N16.pt")
    result = assets.verify(r2d2_shared("weights/r2d2_WASF_N16.pt"))
    assert result.status == "verified", result.message


def test_skip_line_and_report_state_the_licence(monkeypatch, tmp_path):
    from sekd_plugin.benchmark.homography.report import licence_lines
    from sekd_plugin.extractors.base import missing_weights_reason

    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path))
    reason = missing_weights_reason({"name": "r2d2"}, label="r2d2-ss")
    assert reason.startswith("r2d2-ss skipped: weights not found") and "non-commercial" in reason
    results = {"methods": {"r2d2": {"conf": {"model": {"name": "r2d2"}}}, "sift": {"conf": {"model": {"name": "sift"}}}}}
    assert licence_lines(results) == ["- r2d2: R2D2 weights (naver/r2d2): CC BY-NC-SA 3.0, non-commercial use only"]


def test_registry_and_confs():
    for name in ("r2d2", "r2d2-ss"):
        entry = method_entry(name)
        assert entry["matcher"] == "NN-mutual" and entry["extractor"] == name
