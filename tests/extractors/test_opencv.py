"""ORB / AKAZE / BRISK through one OpenCV extractor with binary (uint8) descriptors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sekd_plugin import extract_features
from sekd_plugin.extractors.base import ConfigError, get_extractor, load_extractor
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.extractors.opencv import (
    OpenCVFeatures,
    OpenCVFeatureUnavailableError,
    is_available,
    opencv_factory,
    to_uint8_gray,
)
from tests.helpers import check_features_h5

ALGORITHMS = {"orb": 32, "akaze": 61, "brisk": 64}  # descriptor bytes


def need(algorithm: str) -> None:
    if not is_available(algorithm):
        pytest.skip(f"{algorithm.upper()} is not in this OpenCV build ({cv2.__version__}); "
                    "OpenCV 5 moved it to opencv-contrib-python-headless")


def textured(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5)
    return (img - img.min()) / (img.max() - img.min())


def as_input(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.rint(img * 255).astype(np.float32) / 255)[None, None]


def test_registry_names_set_the_algorithm():
    for name in ALGORITHMS:
        assert get_extractor(name) is OpenCVFeatures
    assert OpenCVFeatures.binary_descriptors and OpenCVFeatures.name_is_algorithm
    orb = load_extractor({"name": "orb", "max_keypoints": 100})
    assert orb.conf["algorithm"] == "orb" and orb.conf["max_keypoints"] == 100


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_outputs(algorithm):
    need(algorithm)
    ex = load_extractor({"name": algorithm})
    assert ex.conf["algorithm"] == algorithm
    pred = ex({"image": as_input(textured())})
    n = pred["keypoints"].shape[1]
    assert n > 10
    assert pred["keypoints"].shape == (1, n, 2) and pred["keypoints"].dtype == torch.float32
    assert pred["scores"].shape == (1, n) and pred["scores"].dtype == torch.float32
    assert pred["descriptors"].shape == (1, ALGORITHMS[algorithm], n) and pred["descriptors"].dtype == torch.uint8
    assert pred["scales"].shape == pred["oris"].shape == (1, n)
    scores = pred["scores"][0]
    assert torch.all(scores[:-1] >= scores[1:])
    kp = pred["keypoints"][0]
    assert kp.min() >= 0 and kp[:, 0].max() <= 159 and kp[:, 1].max() <= 119

    # no offset: exactly OpenCV's KeyPoint.pt, and the descriptors are OpenCV's bytes
    kps, desc = opencv_factory(algorithm)(**({"nfeatures": 2000} if algorithm == "orb" else {})).detectAndCompute(
        to_uint8_gray(as_input(textured())), None)
    order = np.argsort(-np.array([k.response for k in kps]), kind="stable")
    assert np.array_equal(kp.numpy(), np.array([kps[i].pt for i in order], np.float32))
    assert np.array_equal(pred["descriptors"][0].numpy(), desc[order].T)

    top = OpenCVFeatures({"algorithm": algorithm, "max_keypoints": 7})({"image": as_input(textured())})
    if algorithm == "orb":  # nfeatures=7 re-detects; descriptor computation may drop some near the border
        assert 0 < top["keypoints"].shape[1] <= 7
    else:
        assert torch.equal(top["scores"][0], scores[:7])


def test_orb_corners_and_rgb():
    img = np.zeros((240, 320), np.float32)
    corners = []
    for r0, c0, h, w in [(40, 50, 60, 60), (130, 60, 50, 70), (50, 180, 80, 50), (150, 200, 60, 60)]:
        img[r0 : r0 + h, c0 : c0 + w] = 1.0
        corners += [(x, y) for x in (c0 - 0.5, c0 + w - 0.5) for y in (r0 - 0.5, r0 + h - 0.5)]
    ex = OpenCVFeatures({"algorithm": "orb"})
    pred = ex({"image": torch.from_numpy(img)[None, None]})
    kp, size = pred["keypoints"][0].numpy(), pred["scales"][0].numpy()
    dist = np.linalg.norm(kp[:, None] - np.array(corners)[None], axis=-1).min(1)
    finest = size == size.min()  # coarser pyramid levels are scaled by OpenCV with x * s
    assert finest.sum() >= 4 and dist[finest].max() <= 2.5
    rgb = torch.from_numpy(img)[None, None].expand(-1, 3, -1, -1)
    assert torch.equal(ex({"image": rgb})["keypoints"], pred["keypoints"])


def test_empty_image_and_bad_conf():
    out = OpenCVFeatures({"algorithm": "orb"})({"image": torch.zeros(1, 1, 64, 64)})
    assert out["keypoints"].shape == (1, 0, 2) and out["descriptors"].shape == (1, 32, 0)
    with pytest.raises(ConfigError, match="algorithm"):
        OpenCVFeatures({"algorithm": "surf"})
    with pytest.raises(ConfigError, match="options"):
        OpenCVFeatures({"algorithm": "orb", "options": {"no_such_option": 1}})
    with pytest.raises(ConfigError, match="max_keypoints"):
        OpenCVFeatures({"algorithm": "orb", "max_keypoints": 0})


def test_unavailable_algorithm_message(monkeypatch):
    monkeypatch.delattr(cv2, "BRISK_create", raising=False)
    if hasattr(cv2, "xfeatures2d"):
        monkeypatch.delattr(cv2.xfeatures2d, "BRISK_create", raising=False)
    with pytest.raises(OpenCVFeatureUnavailableError, match="opencv-contrib"):
        OpenCVFeatures({"algorithm": "brisk"})


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_end_to_end_extract_features(tmp_path, algorithm):
    need(algorithm)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(2):
        cv2.imwrite(str(folder / f"im{k}.png"), np.rint(textured(seed=k) * 255).astype(np.uint8))
    path = extract_features.main(get_conf(algorithm), folder, feature_path=tmp_path / "feats.h5", device="cpu")
    check_features_h5(path, ["im0.png", "im1.png"], ALGORITHMS[algorithm], [160, 120], dtype=np.uint8)


def test_tiny_image_fails_that_image_only():
    from sekd_plugin.extractors.base import load_extractor

    model = load_extractor({"name": "brisk"})
    with pytest.raises(ValueError, match="cannot process this 5 x 5 image"):
        model({"image": torch.rand(1, 1, 5, 5)})
