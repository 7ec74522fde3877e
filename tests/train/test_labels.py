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
    path = tmp_path / "labels" / "round0_detect.h5"
    labels.write_labels(path, lab, sizes, round=0, step="detect", kind="detect")
    back, sz, attrs = labels.read_labels_with_sizes(path)
    assert attrs["round"] == 0 and attrs["step"] == "detect" and attrs["num_images"] == 3
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
    yx, sc, st = labels.detect_keypoints(net, img, conf, torch.Generator().manual_seed(0))
    assert (yx[:, 0] < 46).all() and (yx[:, 1] < 46).all() and (sc > conf.detect.threshold).all()
    assert len(yx) == int(st[1]) <= labels.budget((46, 46), conf.detect.budget_area, conf.detect.max_keypoints)


def test_reliability_variants_agree():
    img = torch.from_numpy(synthetic_image(2, 48)).float()[None, None] / 255
    net = _net()
    maps = {}
    for mode in ("native", "upsampled"):
        for nb in ("reference", "target"):
            conf = config.load_config(overrides=TINY + [f"reliability.desc_mode={mode}", f"reliability.neighbours={nb}"])
            m = labels.reliability_score(net, img, conf, torch.Generator().manual_seed(0))
            assert m.shape == (48, 48) and torch.isfinite(m).all() and float(m.max()) > 0
            maps[mode, nb] = m
    ref = maps["native", "reference"].flatten()
    for k, m in maps.items():
        c = torch.corrcoef(torch.stack([ref, m.flatten()]))[0, 1]
        assert c > 0.5, (k, float(c))


class _Periodic(torch.nn.Module):
    """Descriptor cells: 4 orthogonal unit vectors by the parity of (x, y) (period 2 cells = 8 px)."""

    def features(self, x):
        b, _, h, w = x.shape
        d = torch.zeros(b, 4, h // 4, w // 4)
        for py in (0, 1):
            for px in (0, 1):
                d[:, 2 * py + px, py::2, px::2] = 1.0
        return torch.zeros(b, 2, h, w), d, torch.ones(b, 4, h, w)


IDENTITY = ["ref_warp.degrees=0", "ref_warp.shear=0", "ref_warp.translate=0", "ref_warp.scale=[1,1]", "reliability.use_low_level=false"]


def test_native_descriptor_term_has_neighbours_two_cells_apart():
    """Release semantics: on the 1/4 map the neighbours are 2 cells (8 px) apart, so a pattern of
    period 2 cells is not distinctive there (ratio = its floor 0.01 / 0.04 = 0.25); 2-px offsets on the upsampled map (the
    former mode) see blended vectors and call it distinctive."""
    img = torch.rand(1, 1, 64, 64)
    gen = torch.Generator().manual_seed(0)
    native = labels.reliability_score(_Periodic(), img, config.load_config(overrides=TINY + IDENTITY), gen)
    up = labels.reliability_score(
        _Periodic(), img, config.load_config(overrides=TINY + IDENTITY + ["reliability.desc_mode=upsampled"]),
        torch.Generator().manual_seed(0)
    )
    interior = (slice(24, 40), slice(24, 40))
    print("native max", float(native[interior].max()), "upsampled mean", float(up[interior].mean()))
    assert float(native[interior].max()) < 0.26
    assert float(up[interior].mean()) > 2.0


def test_reference_neighbours_chunked_equals_one_offset_at_a_time():
    torch.manual_seed(0)
    tgt = torch.nn.functional.normalize(torch.randn(8, 10, 12), dim=0)
    ref = torch.randn(3, 8, 10, 12)
    grid = warps_grid = torch.rand(3, 10, 12, 2) * torch.tensor([11.0, 9.0])
    off = labels.reliability._offsets(3, 2, "cpu")
    a = labels.reliability._ratio_reference(tgt, ref, grid, off, 0.03, chunk=1)
    b = labels.reliability._ratio_reference(tgt, ref, warps_grid, off, 0.03, chunk=48)
    assert torch.allclose(a, b, atol=1e-5)
    # against a direct per-neighbour evaluation (normalise every bilinear sample)
    best = None
    for o in off:
        s = torch.nn.functional.normalize(labels.reliability._sample(ref, grid + o), dim=1)
        c = (s * tgt).sum(1)
        best = c if best is None else torch.maximum(best, c)
    rep = (torch.nn.functional.normalize(labels.reliability._sample(ref, grid), dim=1) * tgt).sum(1)
    direct = labels.reliability._cos_dist(best) / (labels.reliability._cos_dist(rep) + 0.03)
    assert torch.allclose(a, direct, atol=1e-4)


def test_budget_selects_the_strongest_maxima_with_a_floor():
    score = torch.zeros(40, 40)
    ys, xs = torch.meshgrid(torch.arange(5, 36, 6), torch.arange(5, 36, 6), indexing="ij")
    vals = torch.linspace(0.1, 0.9, ys.numel())
    score[ys.flatten(), xs.flatten()] = vals  # 36 isolated maxima
    yx, sc, st = labels.select_labels(score, (40, 40), 2, 0, 0.0, 1600 / 10, 2000)  # budget 10
    assert len(yx) == 10 and torch.allclose(sc, vals.flip(0)[:10])
    assert int(st[0]) >= 36 and int(st[1]) == 10  # (zero plateaus survive NMS too)
    yx, sc, _ = labels.select_labels(score, (40, 40), 2, 0, 0.85, 1600 / 10, 2000)  # the floor binds
    assert len(yx) == int((vals > 0.85).sum()) < 10
    assert labels.budget((240, 320), 85, 2000) == round(240 * 320 / 85)
    assert labels.budget((240, 320), 0, 2000) == 2000


def test_reliability_of_identical_descriptors_everywhere_is_zero():
    """A constant feature map is perfectly repeatable but not distinctive: ratio ~ 0."""

    class Constant(torch.nn.Module):
        def features(self, x):
            b, _, h, w = x.shape
            return torch.zeros(b, 2, h, w), torch.ones(b, 8, h // 4, w // 4), torch.ones(b, 4, h, w)

    # a budget alone would still pick maxima of the ~0 map: the floor removes them

    conf = config.load_config(overrides=TINY)
    m = labels.reliability_score(Constant(), torch.rand(1, 1, 32, 32), conf, torch.Generator().manual_seed(0))
    assert float(m.max()) < 0.5
