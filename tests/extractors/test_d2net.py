"""D2-Net: published checkpoint layout (random weights), detection math, hloc export.

The published checkpoints (d2_tf.pth, ...) are not available here: the architecture is
checked with random tensors saved under the published key names, and the detection /
localisation / description steps on constructed feature maps.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sekd_plugin import extract_features
from sekd_plugin.infra.assets import AssetNotFoundError
from sekd_plugin.extractors.base import ConfigError, get_extractor
from sekd_plugin.extractors.confs import get_conf
from sekd_plugin.extractors.d2net import D2Net
from sekd_plugin.extractors.base import missing_weights_reason
from sekd_plugin.models.checkpoint import CheckpointError
from sekd_plugin.models.d2net import (
    D2NetModel,
    edge_test,
    hard_detection,
    interpolate_features,
    load_d2net_weights,
    localization_offsets,
    preprocess,
    soft_detection_scores,
    upscale_positions,
)
from tests.helpers import check_features_h5, run_with_conf

# (Sequential index, weight shape) of the published checkpoints: VGG16 up to conv4_3.
PUBLISHED = [
    (0, (64, 3, 3, 3)), (2, (64, 64, 3, 3)), (5, (128, 64, 3, 3)), (7, (128, 128, 3, 3)),
    (10, (256, 128, 3, 3)), (12, (256, 256, 3, 3)), (14, (256, 256, 3, 3)),
    (17, (512, 256, 3, 3)), (19, (512, 512, 3, 3)), (21, (512, 512, 3, 3)),
]


def published_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the published names and shapes (biases > 0 keep ReLUs alive)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, shape in PUBLISHED:
        fan_in = shape[1] * 9
        sd[f"dense_feature_extraction.model.{i}.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        sd[f"dense_feature_extraction.model.{i}.bias"] = torch.rand(shape[0], generator=g) * 0.05
    return sd


@pytest.fixture(autouse=True)
def _isolated_assets(tmp_path, monkeypatch):
    monkeypatch.setenv("SEKD_PLUGIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEKD_PLUGIN_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> str:
    """A training-style checkpoint as D2-Net's train.py writes it, with random weights."""
    path = tmp_path_factory.mktemp("d2") / "d2_random.pth"
    torch.save({
        "args": argparse.Namespace(lr=1e-3, preprocessing="caffe"),
        "epoch_idx": 3,
        "model": published_state_dict(),
        "train_loss_history": [np.float64(1.5)],
        "validation_loss_history": [np.mean([1.0, 2.0])],
    }, path)
    return str(path)


class FixedFeatures(nn.Module):
    """Stands in for the network: returns a constructed feature map whatever the input."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features[None]


# --------------------------------------------------------------------------- architecture


def test_state_dict_layout_matches_published():
    sd = D2NetModel().state_dict()
    expected = []
    for i, shape in PUBLISHED:
        expected += [(f"dense_feature_extraction.model.{i}.weight", shape),
                     (f"dense_feature_extraction.model.{i}.bias", (shape[0],))]
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == expected
    assert sum(v.numel() for v in sd.values()) == 7_635_264


def test_test_time_architecture():
    layers = D2NetModel().dense_feature_extraction.model
    assert isinstance(layers[16], nn.AvgPool2d) and layers[16].stride == 1 and layers[16].kernel_size == 2
    assert isinstance(layers[4], nn.MaxPool2d) and isinstance(layers[9], nn.MaxPool2d)
    for i in (17, 19, 21):
        assert layers[i].dilation == (2, 2) and layers[i].padding == (2, 2)
    assert len(layers) == 22  # cut after conv4_3; the final ReLU is applied in forward


def test_training_checkpoint_loads_strict_and_runs(random_checkpoint):
    model = load_d2net_weights(D2NetModel(), random_checkpoint).eval()
    sd = published_state_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    with torch.no_grad():
        out = model(torch.randn(1, 3, 45, 62))
    # two max poolings (floor), then the 2x2 / stride-1 average pool removes one row/column
    assert out.shape == (1, 512, 45 // 2 // 2 - 1, 62 // 2 // 2 - 1)
    assert out.min() >= 0  # use_relu


@pytest.mark.parametrize("change", ["missing", "renamed"])
def test_bad_checkpoint_names_the_key(tmp_path, change):
    sd = published_state_dict()
    if change == "missing":
        del sd["dense_feature_extraction.model.21.bias"]
        words = ["missing", "dense_feature_extraction.model.21.bias"]
    else:
        sd["features.17.weight"] = sd.pop("dense_feature_extraction.model.17.weight")
        words = ["dense_feature_extraction.model.17.weight", "features.17.weight"]
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        D2Net({"weights": str(path)})
    for word in words:
        assert word in str(info.value)


def test_caffe_preprocessing():
    image = torch.zeros(1, 3, 2, 2)
    image[:, 0] = 1.0  # pure red
    x = preprocess(image, "caffe")
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-103.939, -116.779, 255.0 - 123.68]))
    gray = preprocess(torch.full((1, 1, 2, 2), 0.5), "caffe")
    assert gray.shape == (1, 3, 2, 2)


# --------------------------------------------------------------------------- detection math


def quadratic_peak(c: int, h: int, w: int, channel: int, ci: float, cj: float, height: float = 10.0) -> torch.Tensor:
    """Zero features except one channel holding a concave quadratic peak at (ci, cj)."""
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    f = torch.zeros(c, h, w)
    f[channel] = (height - 0.3 * (i - ci) ** 2 - 0.2 * (j - cj) ** 2 + 0.05 * (i - ci) * (j - cj)).clamp(min=0)
    return f


def test_single_peak_detected_refined_and_scored():
    feats = quadratic_peak(4, 12, 14, channel=2, ci=5.2, cj=7.3)
    pos = hard_detection(feats)
    assert pos.tolist() == [[2, 5, 7]]
    # central differences are exact on a quadratic: one Newton step lands on the true peak
    step = localization_offsets(feats, pos)
    assert torch.allclose(step, torch.tensor([[0.2, 0.3]]), atol=1e-4)
    # through the extractor (network replaced by the constructed map)
    ext = D2Net.__new__(D2Net)
    nn.Module.__init__(ext)
    ext.conf = {**D2Net.default_conf}
    ext.net = FixedFeatures(feats)
    kpts, scores, desc = ext.extract(torch.zeros(1, 3, 56, 64))
    # x = 4 j + 1.5, y = 4 i + 1.5 (D2-Net's upscale_positions, kept as hloc does)
    assert torch.allclose(kpts, torch.tensor([[4 * 7.3 + 1.5, 4 * 5.2 + 1.5]]), atol=1e-3)
    assert torch.allclose(scores, feats[2, 5, 7][None])
    assert torch.allclose(desc[:, 0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    ext.conf["positions"] = "centered"  # receptive-field centre: 2 px further
    kpts_c, _, _ = ext.extract(torch.zeros(1, 3, 56, 64))
    assert torch.allclose(kpts_c - kpts, torch.tensor([[2.0, 2.0]]), atol=1e-4)


def test_channel_wise_maximum_wins():
    feats = quadratic_peak(3, 9, 9, channel=0, ci=4, cj=4, height=5.0)
    feats += quadratic_peak(3, 9, 9, channel=1, ci=4, cj=4, height=8.0)
    assert hard_detection(feats).tolist() == [[1, 4, 4]]


def test_edges_are_rejected():
    i, j = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    ridge = (10 - (i - 4) ** 2).clamp(min=0)[None]  # constant along j: det = 0 inside the map
    # only the two ends survive: zero padding beyond the map (D2-Net's conv padding) bends the ridge
    assert hard_detection(ridge).tolist() == [[0, 4, 0], [0, 4, 8]]
    elongated = (10 - (i - 4) ** 2 - 0.1 * (j - 4) ** 2)[None]  # tr^2/det = 12.1 > 7.2
    pos = torch.tensor([[0, 4, 4]])
    assert not edge_test(elongated, pos)[0]
    assert edge_test(elongated, pos, edge_threshold=12.0)[0]  # (13^2)/12 = 14.08 >= 12.1


def test_hard_detection_matches_dense_formulation():
    """Sparse evaluation == D2-Net's dense masks, written independently with conv2d."""
    torch.manual_seed(0)
    feats = F.relu(F.avg_pool2d(torch.randn(1, 8, 26, 30), 3, stride=1))[0]
    c, h, w = feats.shape
    x = feats.view(c, 1, h, w)
    k = lambda rows: torch.tensor(rows, dtype=torch.float32).view(1, 1, 3, 3)  # noqa: E731
    dii = F.conv2d(x, k([[0, 1, 0], [0, -2, 0], [0, 1, 0]]), padding=1).view(c, h, w)
    djj = F.conv2d(x, k([[0, 0, 0], [1, -2, 1], [0, 0, 0]]), padding=1).view(c, h, w)
    dij = F.conv2d(x, 0.25 * k([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]), padding=1).view(c, h, w)
    det, tr = dii * djj - dij * dij, dii + djj
    dense = ((feats == feats.max(0, keepdim=True).values)
             & (feats == F.max_pool2d(feats[None], 3, 1, 1)[0])
             & (tr * tr / det <= 36 / 5) & (det > 0))
    expected = torch.nonzero(dense)
    assert len(expected) > 5
    assert torch.equal(hard_detection(feats), expected)


def test_interpolation_and_upscaling():
    feats = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5)
    pos = torch.tensor([[1.5, 2.25], [0.0, 0.0], [3.0, 4.0], [3.2, 1.0], [-0.1, 2.0]])
    out, ids = interpolate_features(feats, pos)
    assert ids.tolist() == [0, 1, 2]  # the last two leave the map
    assert torch.allclose(out[:, 0], feats[:, 1, 2] + 0.5 * 5 + 0.25 * 1)
    assert torch.equal(out[:, 2], feats[:, 3, 4])
    assert torch.allclose(upscale_positions(torch.tensor([0.0, 1.0, 2.5])), torch.tensor([1.5, 5.5, 11.5]))


def test_soft_detection_scores():
    feats = torch.zeros(3, 11, 12)
    feats[0, 2, 2] = 10.0
    feats[1, 7, 8] = 5.0
    scores = soft_detection_scores(feats)
    # alpha = exp(x / 10) / (sum of exp over the 3x3 window), beta = 1 at both spikes
    a = np.exp(1.0) / (np.exp(1.0) + 8)
    b = np.exp(0.5) / (np.exp(0.5) + 8)
    assert scores.shape == (11, 12) and torch.isclose(scores.sum(), torch.tensor(1.0))
    assert scores[2, 2].item() == pytest.approx(a / (a + b), rel=1e-5)
    assert scores[7, 8].item() == pytest.approx(b / (a + b), rel=1e-5)
    assert torch.isfinite(soft_detection_scores(torch.zeros(2, 4, 4))).all()


# --------------------------------------------------------------------------- extractor


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min())


@pytest.fixture(scope="module")
def d2(random_checkpoint):
    return D2Net({"weights": random_checkpoint})


def test_extractor_single_and_multi_scale(d2):
    image = torch.from_numpy(textured(44, 60)).permute(2, 0, 1)[None]
    ss = run_with_conf(d2, image)
    n = ss["keypoints"].shape[1]
    assert n > 0 and ss["descriptors"].shape == (1, 512, n) and ss["scores"].shape == (1, n)
    assert torch.allclose(ss["descriptors"][0].norm(dim=0), torch.ones(n), atol=1e-5)
    kp = ss["keypoints"][0]
    assert kp.min() >= 0 and kp[:, 0].max() < 60 and kp[:, 1].max() < 44
    ms = run_with_conf(d2, image, multiscale=True)
    assert ms["keypoints"].shape[1] >= n // 2 and ms["descriptors"].shape[1] == 512
    top = run_with_conf(d2, image, max_keypoints=5)
    assert top["keypoints"].shape[1] == min(5, n)
    assert torch.equal(top["scores"][0], ss["scores"][0].sort(descending=True).values[:5])
    gray = run_with_conf(d2, image.mean(1, keepdim=True))
    assert gray["descriptors"].shape[1] == 512


def test_max_edge_maps_back(d2):
    image = torch.from_numpy(textured(60, 96)).permute(2, 0, 1)[None]
    out = run_with_conf(d2, image, max_edge=48)
    kp = out["keypoints"][0]
    assert len(kp) > 0 and kp[:, 0].max() < 96 and kp[:, 1].max() < 60 and kp[:, 0].max() > 48


def test_bad_conf_and_small_image(d2, random_checkpoint):
    with pytest.raises(ConfigError, match="positions"):
        D2Net({"weights": random_checkpoint, "positions": "corner"})
    with pytest.raises(ValueError, match="too small"):
        run_with_conf(d2, torch.rand(1, 3, 6, 40))


def test_missing_weights(tmp_path, random_checkpoint):
    assert get_extractor("d2net") is D2Net
    with pytest.raises(AssetNotFoundError, match="d2_tf"):
        D2Net()
    reason = missing_weights_reason({"name": "d2net"})
    assert reason == (f"d2net skipped: weights not found at {tmp_path / 'cache' / 'd2_tf.pth'} "
                      "(see third_party/d2_tf.toml; get them with: python -m sekd_plugin.weights fetch d2_tf)")
    reason = missing_weights_reason({"name": "d2net", "checkpoint": "d2_ots", "weights": str(tmp_path / "x.pth")})
    assert reason == (f"d2net skipped: weights not found at {tmp_path / 'x.pth'} (see third_party/d2_ots.toml; "
                      "get them with: python -m sekd_plugin.weights fetch d2_ots)")
    assert missing_weights_reason({"name": "d2net", "weights": random_checkpoint}) is None
    assert missing_weights_reason({"name": "orb"}) is None


def test_end_to_end_extract_features(tmp_path, random_checkpoint):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(2):
        cv2.imwrite(str(folder / f"im{k}.png"), np.rint(textured(48, 64, k) * 255).astype(np.uint8))
    conf = get_conf("d2net-ss")
    conf["model"]["weights"] = random_checkpoint
    path = extract_features.main(conf, folder, feature_path=tmp_path / "feats.h5", device="cpu")
    check_features_h5(path, ["im0.png", "im1.png"], 512, [64, 48])
