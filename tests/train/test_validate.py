import pytest
import numpy as np
import torch
import torch.nn.functional as F

from sekd_plugin.metrics.homography import warp_points
from sekd_plugin.train import config, validate

from .conftest import synthetic_image


def test_perfect_features_give_perfect_metrics():
    rng = np.random.default_rng(0)
    k0 = rng.uniform(20, 100, (50, 2))
    H = np.array([[1.0, 0.05, 3.0], [0.02, 0.98, -2.0], [1e-4, 0.0, 1.0]])
    d = F.normalize(torch.randn(50, 16), dim=1)
    m = validate.pair_metrics(k0, d, warp_points(k0, H), d, H, (120, 120))
    assert m["mma"] == 1.0 and m["homography_accuracy"] == 1.0 and m["repeatability"] == 1.0 and m["matches"] == 50
    # shuffled descriptors: (almost) no correct match
    bad = validate.pair_metrics(k0, d, warp_points(k0, H), d.roll(1, 0), H, (120, 120))
    assert bad["mma"] < 0.2


def test_validation_pairs_are_deterministic():
    conf = config.load_config(overrides=["val.height=48", "val.width=64"]).val
    imgs = [synthetic_image(i, 80) for i in range(3)]
    a, b = validate.make_pairs(imgs, conf), validate.make_pairs(imgs, conf)
    for (i0, i1, H), (j0, j1, G) in zip(a, b):
        assert i0.shape == (48, 64) and np.array_equal(i1, j1) and np.array_equal(H, G)
    assert not np.allclose(a[0][2], a[1][2])


def test_extract_counts_peaks_and_their_median_height():
    """Three isolated peaks of 0.3, 0.6 and 0.7: two clear 0.55, and the median kept score is
    0.6 over all of them, 0.65 over the two above 0.55 (none in the blank second image)."""
    prob = torch.zeros(2, 1, 64, 64)
    for (y, x), v in zip(((16, 16), (16, 48), (48, 32)), (0.3, 0.6, 0.7)):
        prob[0, 0, y, x] = v

    def net(images):
        return prob, F.normalize(torch.ones(2, 128, 16, 16), dim=1)

    conf = config.load_config().val
    feats, peaks, heights = validate.extract(net, torch.zeros(2, 1, 64, 64), conf, (0.55, 0.0))
    assert peaks[:, 0].tolist() == [2, 3] and len(feats[0][0][0]) == 2 and len(feats[1][0][0]) == 3
    assert heights[0, 0].item() == pytest.approx(0.65) and heights[1, 0].item() == pytest.approx(0.6)
    assert torch.isnan(heights[0, 1]) and peaks[0, 1] == 0
