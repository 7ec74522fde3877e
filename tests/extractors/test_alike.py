"""ALIKE against the official code's outputs (../shared/weights/alike_reference.npz, made with
Shiaoming/ALIKE @ 4e61fc7 on a real photo): every size, top-1000 and threshold-0.2 runs, with and
without sub-pixel refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sekd_plugin.infra import assets
from sekd_plugin.benchmark.methods import method_entry
from sekd_plugin.extractors.base import load_extractor, missing_weights_reason
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.models.alike import ALIKE_CONFIGS, ALNet, alike_size_of
from sekd_plugin.models.checkpoint import CheckpointError
from tests.conftest import shared_file
from tests.extractors.parity import assert_parity, load_reference, parity, rgb_image

SIZES = ("t", "s", "n", "l")
RUNS = {"top1000": {"top_k": 1000, "scores_th": 0.5, "n_limit": 5000},
        "th02": {"top_k": -1, "scores_th": 0.2, "n_limit": 5000}}


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_reference(shared_file("weights/alike_reference.npz"))


@pytest.fixture(scope="module")
def image(reference) -> torch.Tensor:
    return rgb_image(reference)


@pytest.fixture()
def weights_dir(monkeypatch, tmp_path):
    shared_file("weights/alike-n.pth")
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(shared_file("weights")))
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("size", SIZES)
def test_parity_with_official(size, reference, image, weights_dir):
    for run, conf in RUNS.items():
        for sp in ("px", "sp"):
            extractor = load_extractor({"name": "alike", "model": f"alike-{size}", **conf, "sub_pixel": sp == "sp"})
            out = {k: v.numpy() for k, v in extractor({"image": image}).items()}
            key = f"{size}_{run}_{sp}"
            desc = reference.get(f"{key}_descriptors")
            assert_parity(parity(out, reference[f"{key}_keypoints"], reference[f"{key}_scores"], desc), key)


def test_score_map_and_gray_input(reference, image, weights_dir):
    extractor = load_extractor({"name": "alike", "model": "alike-n"})
    scores, desc = extractor.dense(image)
    assert scores.shape == image.shape[-2:] and desc.shape == (128, *image.shape[-2:])
    np.testing.assert_allclose(scores.detach().numpy(), reference["n_scores_map"].astype(np.float32), atol=2e-3)
    gray = extractor({"image": image.mean(1, keepdim=True)})  # repeated to 3 channels, runs
    assert gray["descriptors"].shape[1] == 128


def test_defaults_are_the_official_threshold_run(reference, image, weights_dir):
    out = load_extractor({"name": "alike", "model": "alike-l"})({"image": image})
    assert_parity(parity({k: v.numpy() for k, v in out.items()}, reference["l_th02_sp_keypoints"],
                         reference["l_th02_sp_scores"]), "defaults")


def test_budget_keeps_the_strongest(image, weights_dir):
    full = load_extractor({"name": "alike", "model": "alike-t"})({"image": image})
    capped = load_extractor({"name": "alike", "model": "alike-t", "max_keypoints": 100})({"image": image})
    assert capped["keypoints"].shape[1] == 100
    top = torch.sort(full["scores"][0], descending=True).values[:100]
    torch.testing.assert_close(capped["scores"][0], top)


def test_other_size_weights_refused_naming_both(weights_dir):
    path = shared_file("weights/alike-l.pth")
    with pytest.raises(CheckpointError, match="holds alike-l weights, but the conf asks for alike-n") as e:
        load_extractor({"name": "alike", "model": "alike-n", "weights": str(path)})
    assert "\n" not in str(e.value)


def test_size_inference_and_unknown_model():
    for name, cfg in ALIKE_CONFIGS.items():
        assert alike_size_of(ALNet(**cfg).state_dict()) == name
    assert alike_size_of({"x": torch.zeros(1)}) is None
    with pytest.raises(Exception, match="model must be one of"):
        load_extractor({"name": "alike", "model": "alike-xl"})


def test_manifests_match_the_shared_files():
    for size in SIZES:
        path = shared_file(f"weights/alike-{size}.pth")
        result = assets.verify(path)
        assert result.status == "verified", result.message
        asset = assets.load_manifest(f"alike-{size}")
        assert asset.url.endswith(f"Shiaoming/ALIKE/raw/main/models/alike-{size}.pth") and "BSD 3-Clause" in asset.license


def test_missing_weights_reason_names_the_asset(monkeypatch, tmp_path):
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path))
    reason = missing_weights_reason({"name": "alike", "model": "alike-s"}, label="alike-s")
    assert "alike-s.pth" in reason and "third_party/alike-s.toml" in reason


def test_registry_and_confs():
    for size in SIZES:
        conf = get_conf(f"alike-{size}")
        assert conf["model"] == {"name": "alike", "model": f"alike-{size}"}
        entry = method_entry(f"alike-{size}")
        assert entry["matcher"] == "NN-mutual" and entry["extractor"] == f"alike-{size}"


def test_scene_config_takes_alike():
    from pathlib import Path

    from sekd_plugin.benchmark.sfm.config import check_checkpoint, load_config, matcher_name, validate

    path = Path(__file__).resolve().parents[2] / "benchmark_configs" / "reconstruction" / "fountain-P11.yaml"
    cfg = load_config(path, ["extractor=alike-n", "extractor_options.alike-n.max_keypoints=2048"])
    validate(cfg)
    check_checkpoint(cfg)  # the asset is named after the size (alike-n), not a "checkpoint" key
    assert matcher_name(cfg) == "NN-mutual"
