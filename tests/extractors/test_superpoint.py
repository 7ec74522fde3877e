"""SuperPoint extractor: geometry, sampling conventions, weights lookup and hloc export."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sekd_plugin import extract_features
from sekd_plugin.infra.assets import AssetNotFoundError
from sekd_plugin.extractors.base import ConfigError, get_extractor, load_extractor
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.extractors.base import missing_weights_reason
from sekd_plugin.extractors.superpoint import (
    WEIGHTS_NOTE,
    SuperPoint,
    sample_descriptors_magicleap,
    superglue_nms,
)
from sekd_plugin.ops import sample_descriptors
from tests.conftest import shared_file
from tests.helpers import check_features_h5, run_with_conf

SQUARES = [(40, 50, 60, 60), (130, 60, 50, 70), (50, 180, 80, 50), (150, 200, 60, 60)]  # r0, c0, h, w


@pytest.fixture(autouse=True)
def _isolated_assets(tmp_path, monkeypatch):
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="module")
def weights():
    return str(shared_file("weights/superpoint_v1_recovered.pth"))


@pytest.fixture(scope="module")
def sp(weights):
    return SuperPoint({"weights": weights})


@pytest.fixture(scope="module")
def reference_image():
    with np.load(shared_file("weights/superpoint_reference.npz")) as f:
        return torch.from_numpy(f["image"])[None, None]


def squares_image() -> tuple[np.ndarray, np.ndarray]:
    """White squares on black, 240 x 320, and their true corners (x, y), pixel centre = integer."""
    img = np.zeros((240, 320), np.float32)
    corners = []
    for r0, c0, h, w in SQUARES:
        img[r0 : r0 + h, c0 : c0 + w] = 1.0
        for x in (c0 - 0.5, c0 + w - 0.5):
            for y in (r0 - 0.5, r0 + h - 0.5):
                corners.append((x, y))
    return img, np.array(corners)


def test_registered_and_note():
    assert get_extractor("superpoint") is SuperPoint
    assert SuperPoint.detection_noise == 2.0
    assert "non-commercial" in WEIGHTS_NOTE and "fp16" in WEIGHTS_NOTE and "MagicLeap" in WEIGHTS_NOTE


def test_keypoints_on_square_corners(sp):
    img, corners = squares_image()
    pred = run_with_conf(sp, torch.from_numpy(img)[None, None])
    kpts = pred["keypoints"][0].numpy()
    assert pred["keypoints"].dtype == torch.float32 and pred["descriptors"].dtype == torch.float32
    dist = np.linalg.norm(kpts[:, None] - corners[None], axis=-1)
    assert dist.min(axis=0).max() <= 2.0  # every corner found (measured 1.6 px)
    assert dist.min(axis=1).max() <= 3.0  # and nothing else
    assert len(kpts) == len(corners)


def test_outputs_and_selection(sp, reference_image):
    pred = run_with_conf(sp, reference_image)
    kpts, scores, desc = pred["keypoints"][0], pred["scores"][0], pred["descriptors"][0]
    n = len(kpts)
    assert n > 100 and desc.shape == (256, n) and scores.shape == (n,)
    assert torch.allclose(desc.norm(dim=0), torch.ones(n), atol=1e-5)
    assert torch.all(scores > 0.005) and torch.all(scores[:-1] >= scores[1:])
    assert torch.equal(kpts, kpts.round())  # integer = pixel centre
    assert kpts[:, 0].min() >= 4 and kpts[:, 0].max() <= 320 - 5
    assert kpts[:, 1].min() >= 4 and kpts[:, 1].max() <= 240 - 5
    # scores are the heatmap at the keypoints
    heat, _ = sp.network(reference_image)
    assert torch.equal(heat[kpts[:, 1].long(), kpts[:, 0].long()], scores)
    # top-k keeps the strongest
    top = run_with_conf(sp, reference_image, max_keypoints=50)
    assert torch.equal(top["keypoints"][0], kpts[:50]) and torch.equal(top["scores"][0], scores[:50])
    # demo threshold gives a subset
    demo = run_with_conf(sp, reference_image, keypoint_threshold=0.015)
    assert 0 < demo["keypoints"].shape[1] < n


def test_rgb_input_is_converted_to_gray(sp, reference_image):
    rgb = reference_image.expand(-1, 3, -1, -1).contiguous()
    a, b = run_with_conf(sp, reference_image), run_with_conf(sp, rgb)
    assert torch.equal(a["keypoints"], b["keypoints"])
    assert torch.allclose(a["descriptors"], b["descriptors"], atol=1e-5)


def test_padding_keeps_border_pixels(sp):
    img = np.zeros((235, 317), np.float32)  # not multiples of 8: 232 + 3 rows, 312 + 5 columns
    img[190:233, 270:313] = 1.0  # corners at x 269.5 / 312.5, y 189.5 / 232.5: next to the remainder
    corners = torch.tensor([[269.5, 189.5], [312.5, 189.5], [269.5, 232.5], [312.5, 232.5]])
    image = torch.from_numpy(img)[None, None]
    padded = run_with_conf(sp, image, remove_borders=0)["keypoints"][0]
    cropped = run_with_conf(sp, image, remove_borders=0, padding="crop")["keypoints"][0]
    assert padded[:, 0].max() <= 316 and padded[:, 1].max() <= 234
    assert torch.cdist(corners, padded).min(dim=1).values.max() <= 2.5  # all four found
    # SuperGlue/hloc (crop) cannot place keypoints in the remainder and miss corners near it
    assert not ((cropped[:, 1] >= 232) | (cropped[:, 0] >= 312)).any()
    assert len(cropped) < len(padded)
    tiny = run_with_conf(sp, torch.rand(1, 1, 5, 7))
    assert tiny["keypoints"].shape[1] == 0 and tiny["descriptors"].shape == (1, 256, 0)


def test_superglue_nms():
    scores = torch.zeros(1, 1, 20, 20)
    scores[0, 0, 5, 5] = 0.9
    scores[0, 0, 5, 7] = 0.8  # suppressed by (5, 5) with radius 2
    scores[0, 0, 5, 10] = 0.7  # outside the window of (5, 5): kept
    scores[0, 0, 15, 15] = 0.5
    keep = superglue_nms(scores, 2)[0, 0] & (scores[0, 0] > 0)
    assert torch.nonzero(keep).tolist() == [[5, 5], [5, 10], [15, 15]]
    # a point only suppressed by a suppressed neighbour comes back in the second round
    chain = torch.zeros(1, 1, 1, 12)
    chain[0, 0, 0, [2, 4, 6]] = torch.tensor([0.5, 0.9, 0.6])
    keep = superglue_nms(chain, 2)[0, 0] & (chain[0, 0] > 0)
    assert torch.nonzero(keep)[:, 1].tolist() == [4]


def test_descriptor_sampling_modes():
    torch.manual_seed(0)
    h, w = 5, 7
    desc_map = F.normalize(torch.randn(16, h, w), dim=0)
    i, j = 3, 2
    # magicleap (SuperGlue): x = 3.5 + j (8w - 4.5) / (w - 1) reads cell j exactly
    x = 3.5 + j * (8 * w - 4.5) / (w - 1)
    y = 3.5 + i * (8 * h - 4.5) / (h - 1)
    got = sample_descriptors_magicleap(desc_map, torch.tensor([[x, y]]))
    assert torch.allclose(got[:, 0], desc_map[:, i, j], atol=1e-5)
    # centered (hloc fix_sampling): pixel centre 8 j + 3.5 is the cell centre
    got = sample_descriptors(desc_map, torch.tensor([[8 * j + 3.5, 8 * i + 3.5]]), (8 * h, 8 * w), "centered")
    assert torch.allclose(got[:, 0], desc_map[:, i, j], atol=1e-5)
    # hloc's fix_sampling formula, evaluated directly
    kp = torch.tensor([[13.0, 22.0]])
    grid = ((kp + 0.5) / torch.tensor([w * 8, h * 8]) * 2 - 1).view(1, 1, -1, 2)
    ref = F.normalize(F.grid_sample(desc_map[None], grid, align_corners=False).reshape(16, -1), dim=0)
    assert torch.allclose(sample_descriptors(desc_map, kp, (8 * h, 8 * w), "centered"), ref, atol=1e-6)


def test_sampling_conf_changes_descriptors_only(sp, reference_image):
    a = run_with_conf(sp, reference_image)
    b = run_with_conf(sp, reference_image, sampling="centered")
    assert torch.equal(a["keypoints"], b["keypoints"])
    cos = (a["descriptors"][0] * b["descriptors"][0]).sum(0)
    assert cos.min() > 0.5 and not torch.allclose(a["descriptors"], b["descriptors"])


def test_bad_conf(weights):
    with pytest.raises(ConfigError, match="sampling"):
        SuperPoint({"weights": weights, "sampling": "nearest"})
    with pytest.raises(ConfigError, match="padding"):
        SuperPoint({"weights": weights, "padding": "reflect"})
    with pytest.raises(ConfigError, match="nms"):
        SuperPoint({"weights": weights, "nms": 3})


def test_weights_lookup_by_published_name(tmp_path, monkeypatch, weights):
    with pytest.raises(AssetNotFoundError, match="superpoint_v1"):
        SuperPoint()
    reason = missing_weights_reason({"name": "superpoint"})
    assert reason == (f"superpoint skipped: weights not found at {tmp_path / 'cache' / 'superpoint_v1.pth'} "
                      "(see third_party/superpoint_v1.toml; get them with: "
                      "python -m sekd_plugin.weights fetch superpoint_v1)")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "superpoint_v1.pth").symlink_to(weights)
    monkeypatch.setenv("SEKD_PLUGIN_WEIGHTS_DIR", str(folder))
    assert missing_weights_reason({"name": "superpoint"}) is None
    assert isinstance(load_extractor({"name": "superpoint"}), SuperPoint)


def _write_images(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for k in range(2):
        img = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 2.0)
        img = (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(folder / f"im{k}.png"), np.rint(img * 255).astype(np.uint8))
    return folder


def test_end_to_end_extract_features(tmp_path, weights):
    images = _write_images(tmp_path / "images")
    conf = get_conf("superpoint")
    conf["model"]["weights"] = weights
    path = extract_features.main(conf, images, feature_path=tmp_path / "feats.h5", device="cpu")
    attrs = check_features_h5(path, ["im0.png", "im1.png"], 256, [160, 120])
    assert all(a["uncertainty"] == pytest.approx(2.0) for a in attrs.values())
