"""Fidelity to the SEKD release on constructed cases: pair warps, colour jitter, BatchNorm mode,
crops inside the image, spatial exclusion of negatives, learning-rate schedules."""

import numpy as np
import torch

from sekd_plugin.models.sekd import SEKDNet
from sekd_plugin.train import config, losses, lr_schedule, steps, warps
from sekd_plugin.train.data import PairDataset, collate_pairs, make_views


def _rotation_stats(conf, n=20000, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, s = (384, 384), (256, 256)
    if conf.warped_views == 1:
        H = warps.random_warp_from_conf(n, c, s, conf, g)
    else:
        H0, H1 = warps.random_warp_from_conf(n, c, s, conf, g), warps.random_warp_from_conf(n, c, s, conf, g)
        H = H1 @ torch.linalg.inv(H0)
    r = warps.relative_rotation(H).abs()
    return float(r.median()), float((r > 30).float().mean())


def test_pair_warp_statistics_release_vs_mild():
    """Relative rotation between the two views (polar decomposition of the affine)."""
    rel = _rotation_stats(config.load_config().pair_warp)
    mild = _rotation_stats(config.load_config(overrides=["pair_warp.preset=mild"]).pair_warp)
    print(f"\nrelease: median |rotation| {rel[0]:.1f} deg, P(>30 deg) {rel[1]:.2f}; mild: {mild[0]:.1f} deg, {mild[1]:.2f}")
    assert 18.0 < rel[0] < 23.0 and 0.25 < rel[1] < 0.36
    assert 11.0 < mild[0] < 15.0 and 0.07 < mild[1] < 0.14


def test_release_affine_matches_its_parametrisation():
    """Zero angles: the destination -> source linear part is diag(sx, sy) with sx, sy independent."""
    g = torch.Generator().manual_seed(1)
    H = warps.release_affines(2000, (64, 64), degrees=0, shear=0, translate=0, scale=(0.7, 1.4), generator=g)
    back = torch.linalg.inv(H.double())
    sx, sy = back[:, 0, 0], back[:, 1, 1]
    assert torch.allclose(back[:, 0, 1], torch.zeros(2000, dtype=torch.float64), atol=1e-6)
    assert sx.min() >= 0.7 - 1e-5 and sx.max() <= 1.4 + 1e-5
    assert abs(float(torch.corrcoef(torch.stack([sx, sy]))[0, 1])) < 0.1  # per-axis, independent
    centre = torch.tensor([[[31.5, 31.5]]]).expand(2000, 1, 2)
    assert torch.allclose(warps.transform_points(H, centre), centre, atol=1e-3)  # about the centre


def test_colour_jitter_applies_hue_and_saturation_to_rgb_before_gray():
    img = torch.zeros(1, 3, 8, 8)
    img[:, 0] = 0.8  # red
    img[:, 1] = 0.2
    none = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    base = warps.jitter_to_gray(img, none)
    assert torch.allclose(base, torch.full_like(base, 0.299 * 0.8 + 0.587 * 0.2), atol=1e-5)  # OpenCV weights
    hue = warps.jitter_to_gray(img, torch.tensor([[1.0, 1.0, 1.0, 0.33]]))  # red -> green-ish: brighter gray
    sat = warps.jitter_to_gray(img, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))  # fully desaturated = its gray
    assert float(hue.mean()) > float(base.mean()) + 0.1
    assert torch.allclose(sat, base, atol=1e-5)
    gray = img.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # hue/saturation are no-ops on gray
    assert torch.allclose(warps.jitter_to_gray(gray, torch.tensor([[1.0, 1.0, 1.4, 0.2]])), gray[:, :1], atol=1e-4)


def test_frozen_copy_bn_mode_matches_the_training_network():
    """At random init the eval-mode copy differs hugely from a train-mode network (BN statistics)."""
    torch.manual_seed(0)
    net = SEKDNet().train()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        live = net.features(x)[0]
        same = steps.frozen_copy(net, "train").features(x)[0]
        release = steps.frozen_copy(net, "eval").features(x)[0]
    mse_same = float(((live - same) ** 2).mean())
    mse_eval = float(((live - release) ** 2).mean())
    print(f"\npreservation MSE at init: train-mode copy {mse_same:.2e}, eval-mode copy {mse_eval:.2e}")
    assert mse_same < 1e-10 and mse_eval > 1e-3
    frozen = steps.frozen_copy(net, "train")
    before = {k: v.clone() for k, v in frozen.state_dict().items() if "running" in k}
    with torch.no_grad():
        frozen.features(x)
    assert all(torch.equal(before[k], frozen.state_dict()[k]) for k in before)  # momentum 0


class _Images:
    keys = ["a"]

    def image(self, i):
        g = torch.Generator().manual_seed(i)
        return (torch.rand(70, 90, 3, generator=g) * 200 + 30).byte().numpy()


def test_crops_lie_inside_the_image():
    conf = config.load_config(overrides=["data.crop_size=48"])  # context 72 > the image's 70 rows
    yx = np.array([[10, 20], [35, 45]])
    ds = PairDataset(_Images(), [0], {"a": yx}, conf, seed=0)
    for e in range(5):
        ds.set_epoch_key(0, 2, e)
        b = collate_pairs([ds[0]])
        m, c = ds.margin, ds.ctx
        assert bool(b["valid"][..., m : m + c, m : m + c].all())  # the window itself; the margin may pass the photo
        v = make_views(b, 48, torch.device("cpu"))
        # view 0 (the plain crop of the release) has no padding at all
        assert bool(v.valid[0].all()) and float((v.images[0] == 0).float().mean()) < 0.01
    old = config.load_config(overrides=["data.crop_size=48", "data.crop_mode=pad"])
    ds = PairDataset(_Images(), [0], {"a": yx}, old, seed=0)
    assert not bool(collate_pairs([ds[0]])["valid"].all())


def test_negative_radius_excludes_spatial_neighbours():
    a = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]]), dim=-1)
    pos = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [40.0, 0.0]]])  # points 0 and 1 are 1 px apart
    plain = losses.triplet_loss(a, a.clone(), kind="margin", margin=1.0)
    excl = losses.triplet_loss(a, a.clone(), kind="margin", margin=1.0, positions=(pos, pos), negative_radius=3.0)
    assert float(excl) < float(plain)  # the near-duplicate is no longer the hardest negative


def test_cosine_and_constant_schedules_per_step():
    p = torch.nn.Parameter(torch.zeros(1))
    conf = config.load_config(overrides=["optim.schedule=cosine", "optim.warmup_steps=2", "optim.lr=1.0", "optim.min_lr_factor=0.1"])
    opt = torch.optim.SGD([p], lr=1.0)
    sched, per_step = lr_schedule.make_scheduler(opt, conf, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert per_step and lrs[0] == 0.5 and lrs[1] == 1.0 and abs(lrs[-1] - 0.1) < 0.05 and lrs[5] < lrs[2]
    conf = config.load_config(overrides=["optim.schedule=constant", "optim.warmup_steps=0"])
    _, per_step = lr_schedule.make_scheduler(torch.optim.SGD([p], lr=1.0), conf, 10)
    assert per_step
    _, per_step = lr_schedule.make_scheduler(torch.optim.SGD([p], lr=1.0), config.load_config(), 10)
    assert not per_step


def test_rasterize_without_boolean_indexing():
    pts = torch.tensor([[[1.2, 2.0], [5.0, 5.0], [-3.0, 1.0]]])
    m = torch.tensor([[True, False, True]])
    r = steps.rasterize(pts, m, (8, 8))
    assert int(r.sum()) == 1 and int(r[0, 2, 1]) == 1


def _release(*over):
    return config.load_config("benchmark_configs/train/release.yaml",
                              ["data.crop_size=112", "val.dev_datasets=[]", "val.official_weights=null", *over])


class _Photos:
    keys = [str(i) for i in range(8)]

    def image(self, i):
        g = torch.Generator().manual_seed(100 + i)
        return (torch.rand(120, 160, 3, generator=g) * 200 + 30).byte().numpy()


def _black_fraction(conf) -> float:
    ds = PairDataset(_Photos(), list(range(8)), {}, conf, seed=0)
    out = []
    for e in range(3):
        ds.set_epoch_key(0, 2, e)
        b = collate_pairs([ds[i] for i in range(8)])
        v = make_views(b, ds.crop, torch.device("cpu"))
        out.append(1 - float(v.valid[8:].float().mean()))  # view 1: the warped copy
    return float(np.mean(out))


def test_release_views_take_content_from_around_the_window():
    """context 1.0 (release.yaml): the warped view reads the photo around the window, as the
    release warps the whole image; only what lies beyond the photo stays black."""
    before, after = _black_fraction(_release("data.warp_margin=false")), _black_fraction(_release())
    assert before > 0.1 and after < 0.5 * before, (before, after)


def test_a_label_lands_where_the_view_shows_it():
    """With the margin, a bright dot under a label is the brightest pixel of view 1 at the label's position."""
    class Dot:
        keys = ["a"]

        def image(self, i):
            img = np.full((120, 160, 3), 20, np.uint8)
            img[58:63, 78:83] = 250
            return img

    conf = _release("pair_warp.brightness=[1,1]", "pair_warp.contrast=[1,1]", "pair_warp.saturation=[1,1]", "pair_warp.hue=0")
    ds = PairDataset(Dot(), [0], {"a": np.array([[60, 80]])}, conf, seed=0)
    assert ds.margin > 0
    seen = 0
    for e in range(10):
        ds.set_epoch_key(0, 2, e)
        v = make_views(collate_pairs([ds[0]]), ds.crop, torch.device("cpu"))
        if not bool(v.in1[0, 0]):
            continue
        img = v.images[1, 0]
        w = (img > 0.5 * float(img.max())).float() * img  # the dot, wherever the warp scaled it
        ys, xs = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
        x, y = float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())
        assert abs(x - float(v.kp1[0, 0, 0])) <= 1.0 and abs(y - float(v.kp1[0, 0, 1])) <= 1.0, (x, y, v.kp1[0, 0])
        seen += 1
    assert seen >= 3
