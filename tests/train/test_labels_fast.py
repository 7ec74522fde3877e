"""The fast label path: the network laid out for CPU inference and the reliability
neighbourhood evaluated in the references' frames, against the exact computation."""

from pathlib import Path

import pytest
import torch

from sekd_plugin.models.checkpoint import load_weights
from sekd_plugin.models.sekd import SEKDNet
from sekd_plugin.train import config, labels
from sekd_plugin.train.data import read_rgb, to_tensor

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
OFFICIAL = SHARED / "weights" / "sekd.pth"
PHOTO = SHARED / "data" / "train_images" / "bsds_101087.jpg"


def _official() -> SEKDNet:
    if not OFFICIAL.is_file():
        pytest.skip(f"official checkpoint not found at {OFFICIAL}")
    net = SEKDNet()
    load_weights(net, OFFICIAL, map_location="cpu")
    return net.eval()


def test_label_net_computes_the_same_maps():
    torch.manual_seed(0)
    net = SEKDNet().eval()
    fast = labels.label_network(net, True)
    assert isinstance(fast, labels.LabelNet) and labels.label_network(net, False) is net
    x = torch.rand(2, 1, 36, 44)
    with torch.no_grad():
        for a, b in zip(net.features(x), fast.features(x)):
            assert b.is_contiguous()
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fast.logits(x), net.features(x)[0], atol=1e-4, rtol=1e-4)
    # the training network is untouched (the label net is a copy)
    assert net.deconv1[2].groups == 8 and next(net.parameters()).requires_grad


def _agreement(p: torch.Tensor, q: torch.Tensor, px: float = 1.0) -> float:
    """Symmetric share of labels with a label of the other set within ``px``."""
    d = torch.cdist(p.float(), q.float())
    return 0.5 * float((d.min(1).values <= px).float().mean() + (d.min(0).values <= px).float().mean())


@pytest.mark.integration
def test_fast_labels_agree_with_the_exact_ones_on_a_real_photo():
    """Same references, fast vs exact, agree at least as well as two exact draws with other
    references agree with each other (README: 0.50 vs 0.31 at 8 references)."""
    net = _official()
    if not PHOTO.is_file():
        pytest.skip(f"photo not found at {PHOTO}")
    img = to_tensor(read_rgb(PHOTO))
    base = ["detect.num_refs=4", "reliability.num_refs=4"]
    exact = config.load_config(overrides=base + ["reliability.fast=false", "detect.fast=false"])
    fast = config.load_config(overrides=base)
    fast_net = labels.label_network(net, True)
    with torch.no_grad():
        for fn in (labels.detect_keypoints, labels.reliability_keypoints):
            a = fn(net, img, exact, torch.Generator().manual_seed(1))[0]
            b = fn(net, img, exact, torch.Generator().manual_seed(2))[0]
            f = fn(fast_net, img, fast, torch.Generator().manual_seed(1))[0]
            same, other = _agreement(f, a), _agreement(b, a)
            assert same >= other, (fn.__name__, same, other)
            assert 0.7 * len(a) <= len(f) <= 1.3 * len(a), (fn.__name__, len(f), len(a))
            if fn is labels.detect_keypoints:  # only the layout differs: the same labels
                assert same > 0.99


def test_fast_reliability_is_close_to_exact_on_a_smooth_warp():
    """With identity references both paths read every neighbour at an integer position: the maps
    agree to float rounding (amplified by the ratio: repeatability ~0.01 sits in a denominator,
    so 1e-6 in a cosine is ~1e-3 of the ratio)."""
    torch.manual_seed(0)
    net = SEKDNet().eval()
    img = torch.rand(1, 1, 48, 64)
    ident = ["ref_warp.degrees=0", "ref_warp.scale=[1,1]", "ref_warp.shear=0", "ref_warp.translate=0",
             "ref_warp.brightness=[1,1]", "ref_warp.contrast=[1,1]", "ref_warp.saturation=[1,1]", "ref_warp.hue=0",
             "reliability.num_refs=2", "reliability.border=4"]
    a = labels.reliability_score(net, img, config.load_config(overrides=ident + ["reliability.fast=false"]),
                                 torch.Generator().manual_seed(0))
    b = labels.reliability_score(net, img, config.load_config(overrides=ident), torch.Generator().manual_seed(0))
    assert float(a.abs().max()) > 1.0
    torch.testing.assert_close(b, a, atol=2e-3 * float(a.abs().max()), rtol=0)
