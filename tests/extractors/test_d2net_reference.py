"""D2-Net against the official test-time code (../shared/weights/d2net_reference.npz: mihaidusmanu/d2-net's
``process_multiscale`` with random weights saved under the published key names, stored as float16
and cast to float32), single scale and multi-scale (0.5, 1, 2), through the extractor and through
``extract_features``."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import torch

from sekd_plugin import extract_features
from sekd_plugin.extractors.base import load_extractor
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.models.d2net import preprocess
from tests.conftest import shared_file
from tests.extractors.parity import assert_parity, parity


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(shared_file("weights/d2net_reference.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def weights() -> str:
    return str(shared_file("weights/d2net_random_fp16.pth"))


def _expected(reference: dict, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference keypoints and scores of the descriptors kept in the fixture (the top 1000)."""
    idx = reference[f"{run}_top1000_index"]
    return reference[f"{run}_keypoints"], reference[f"{run}_scores"], idx


def _check(out: dict, reference: dict, run: str) -> None:
    kpts, scores, idx = _expected(reference, run)
    # D2-Net's scores are raw feature values (up to ~330 here): float32 summation order gives
    # differences of a few 1e-4 (measured 6.4e-4, i.e. 2e-6 relative); allow 1e-5 relative
    tol = 1e-5 * float(np.abs(scores).max())
    assert_parity(parity(out, kpts, scores), run, tol)  # every keypoint
    top = {"keypoints": np.asarray(out["keypoints"]).reshape(-1, 2), "scores": np.asarray(out["scores"]).reshape(-1),
           "descriptors": np.asarray(out["descriptors"]).reshape(512, -1)}
    stats = parity(top, kpts[idx], scores[idx], reference[f"{run}_descriptors_top1000"])
    stats["count_diff"] = 0.0  # the fixture keeps descriptors of the top 1000 only: counts checked above
    assert_parity(stats, f"{run} top1000", tol)


@pytest.mark.parametrize("run,multiscale", [("ss", False), ("ms", True)])
def test_extractor_matches_official(run, multiscale, reference, weights):
    image = torch.from_numpy(reference["image_rgb"]).permute(2, 0, 1)[None].float() / 255.0
    extractor = load_extractor({"name": "d2net", "weights": weights, "multiscale": multiscale})
    if not multiscale:
        features = extractor.net(preprocess(image))
        assert list(features.shape) == reference["dense_features_shape"].tolist()
        np.testing.assert_allclose(features.double().sum().item(), float(reference["dense_features_sum"]), rtol=1e-5)
    out = {k: v.numpy() for k, v in extractor({"image": image}).items()}
    _check(out, reference, run)


@pytest.mark.parametrize("run,conf_name", [("ss", "d2net-ss"),
                                           pytest.param("ms", "d2net-ms", marks=pytest.mark.integration)])
def test_extract_features_matches_official(run, conf_name, reference, weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "fountain.png"), cv2.cvtColor(reference["image_rgb"], cv2.COLOR_RGB2BGR))
    conf = get_conf(conf_name)
    conf["model"]["weights"] = weights
    path = extract_features.main(conf, images, tmp_path / "out", as_half=False)
    with h5py.File(path, "r") as f:
        g = f["fountain.png"]
        out = {"keypoints": g["keypoints"][()], "scores": g["scores"][()], "descriptors": g["descriptors"][()]}
    _check(out, reference, run)
