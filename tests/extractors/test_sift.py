"""SIFT extractor (pycolmap): hloc output contract and coordinate convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pycolmap")

from sekd_plugin.extractors.base import ConfigError, load_extractor  # noqa: E402
from sekd_plugin.extractors.sift import sift_to_rootsift  # noqa: E402


def _blobs(h=120, w=160, seed=0):
    """Smooth random texture in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3)
    return (image - image.min()) / (image.max() - image.min())


def test_output_contract():
    model = load_extractor({"name": "sift"})
    pred = model({"image": torch.from_numpy(_blobs())[None, None]})
    n = pred["keypoints"].shape[1]
    assert n > 10
    assert pred["keypoints"].shape == (1, n, 2) and pred["keypoints"].dtype == torch.float32
    assert pred["descriptors"].shape == (1, 128, n) and pred["descriptors"].dtype == torch.float32
    for key in ("scores", "scales", "oris"):
        assert pred[key].shape == (1, n)
    assert torch.allclose(pred["descriptors"].norm(dim=1), torch.ones(1, n), atol=1e-4)
    assert (pred["descriptors"] >= 0).all()  # RootSIFT
    kp = pred["keypoints"][0]
    assert (kp >= -0.5).all() and (kp[:, 0] <= 159.5).all() and (kp[:, 1] <= 119.5).all()


def test_keypoint_at_blob_centre_is_pixel_index():
    ys, xs = np.mgrid[:100, :120]
    image = 0.2 + 0.7 * np.exp(-((xs - 50) ** 2 + (ys - 40) ** 2) / 18.0)
    pred = load_extractor({"name": "sift"})({"image": torch.from_numpy(image.astype(np.float32))[None, None]})
    assert pred["keypoints"].shape[1] >= 1
    assert torch.allclose(pred["keypoints"][0, 0], torch.tensor([50.0, 40.0]), atol=0.05)


def test_max_keypoints_keeps_largest_scores():
    data = {"image": torch.from_numpy(_blobs())[None, None]}
    full = load_extractor({"name": "sift"})(data)
    top = load_extractor({"name": "sift", "max_keypoints": 20})(data)
    assert top["keypoints"].shape == (1, 20, 2)
    assert torch.allclose(top["scores"][0], full["scores"][0].sort(descending=True).values[:20])


def test_plain_sift_is_l2_normalised():
    pred = load_extractor({"name": "sift", "rootsift": False})({"image": torch.from_numpy(_blobs())[None, None]})
    assert torch.allclose(pred["descriptors"].norm(dim=1), torch.ones_like(pred["scores"]), atol=1e-4)


def test_rootsift_formula():
    x = np.abs(np.random.default_rng(0).normal(size=(3, 128))).astype(np.float32)
    expected = np.sqrt(x / x.sum(1, keepdims=True))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(sift_to_rootsift(x), expected, atol=1e-5)


def test_bad_input_and_conf():
    model = load_extractor({"name": "sift"})
    with pytest.raises(ConfigError, match="grayscale"):
        model({"image": torch.zeros(1, 3, 32, 32)})
    with pytest.raises(ConfigError, match="backend"):
        load_extractor({"name": "sift", "backend": "cuda"})
    with pytest.raises(ConfigError, match="root"):
        load_extractor({"name": "sift", "root": True})
    assert model({"image": torch.zeros(1, 1, 3, 3)})["keypoints"].shape == (1, 0, 2)
