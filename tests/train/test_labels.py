import h5py
import numpy as np
import torch

from sekd_plugin.models.sekd import SEKDNet
from sekd_plugin.train import config, labels

from .conftest import TINY, synthetic_image


def test_h5_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    lab = {
        "a.png": (rng.integers(0, 500, (7, 2)).astype(np.int16), rng.random(7).astype(np.float16)),
        "sub/dir/b.jpg": (np.zeros((0, 2), np.int16), np.zeros(0, np.float16)),
        "1:été.png": (np.array([[3, 4]], np.int16), np.array([0.5], np.float16)),
    }
    sizes = {"a.png": (480, 640), "sub/dir/b.jpg": (10, 20), "1:été.png": (5, 6)}
    path = tmp_path / "labels" / "round0_detector.h5"
    labels.write_labels(path, lab, sizes, round=0, step="detector", kind="detect")
    back, sz, attrs = labels.read_labels_with_sizes(path)
    assert attrs["round"] == 0 and attrs["step"] == "detector" and attrs["num_images"] == 3
    assert set(back) == set(lab) and sz == sizes
    for k, (yx, sc) in lab.items():
        assert back[k][0].dtype == np.int16 and back[k][1].dtype == np.float16
        assert np.array_equal(back[k][0], yx) and np.array_equal(back[k][1], sc)
    with h5py.File(path) as f:  # compact per-image layout
        g = f["images/000000"]
        assert g["keypoints"].shape[1] == 2 and g.attrs["height"] > 0
    assert not list(path.parent.glob("*.tmp*"))  # written atomically


def test_label_stats_negative_weight():
    lab = {"a": (np.zeros((10, 2), np.int16), np.zeros(10, np.float16))}
    st = labels.label_stats(lab, {"a": (10, 11)})
    assert st["keypoints_per_image"] == 10 and abs(st["negative_weight"] - 10 / 100) < 1e-9


def test_random_keypoints_distinct_inside_border():
    yx, sc = labels.random_keypoints((40, 50), 300, 3, torch.Generator().manual_seed(0))
    assert len(yx) == 300 and len({tuple(p) for p in yx.tolist()}) == 300
    assert yx[:, 0].min() >= 3 and yx[:, 0].max() <= 36 and yx[:, 1].min() >= 3 and yx[:, 1].max() <= 46
    assert torch.all(sc == 0.5)


def _net():
    torch.manual_seed(0)
    return SEKDNet().eval()


def test_detector_score_is_a_probability_map_and_deterministic():
    conf = config.load_config(overrides=TINY)
    img = torch.from_numpy(synthetic_image(1, 46)).float()[None, None] / 255  # not a multiple of 4
    net = _net()
    s1 = labels.detector_score(net, img, conf, torch.Generator().manual_seed(0))
    s2 = labels.detector_score(net, img, conf, torch.Generator().manual_seed(0))
    assert s1.shape == (48, 48) and torch.equal(s1, s2)
    assert float(s1.min()) >= 0 and float(s1.max()) <= 1
    yx, sc = labels.detect_keypoints(net, img, conf, torch.Generator().manual_seed(0))
    assert (yx[:, 0] < 46).all() and (yx[:, 1] < 46).all() and (sc > conf.detect.threshold).all()


def test_reliability_variants_agree():
    img = torch.from_numpy(synthetic_image(2, 48)).float()[None, None] / 255
    net = _net()
    maps = {}
    for res in ("full", "coarse"):
        for nb in ("reference", "target"):
            conf = config.load_config(
                overrides=TINY + [f"reliability.desc_resolution={res}", f"reliability.neighbours={nb}"]
            )
            m = labels.reliability_score(net, img, conf, torch.Generator().manual_seed(0))
            assert m.shape == (48, 48) and torch.isfinite(m).all() and float(m.max()) > 0
            maps[res, nb] = m
    ref = maps["full", "reference"].flatten()
    for k, m in maps.items():
        c = torch.corrcoef(torch.stack([ref, m.flatten()]))[0, 1]
        assert c > 0.5, (k, float(c))


def test_reliability_of_identical_descriptors_everywhere_is_zero():
    """A constant feature map is perfectly repeatable but not distinctive: ratio ~ 0."""

    class Constant(torch.nn.Module):
        def features(self, x):
            b, _, h, w = x.shape
            return torch.zeros(b, 2, h, w), torch.ones(b, 8, h // 4, w // 4), torch.ones(b, 4, h, w)

    conf = config.load_config(overrides=TINY)
    m = labels.reliability_score(Constant(), torch.rand(1, 1, 32, 32), conf, torch.Generator().manual_seed(0))
    assert float(m.max()) < 0.5
