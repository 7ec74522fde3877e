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
