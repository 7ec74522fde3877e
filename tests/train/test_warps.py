import torch
import torch.nn.functional as F

from sekd_plugin.train import config, warps
from sekd_plugin.train.data import PairDataset, collate_pairs, make_views

CONF = config.load_config()


def _H(n=3, seed=0, src=(60, 80), dst=(40, 50), perspective=0.3):
    g = torch.Generator().manual_seed(seed)
    return warps.random_homographies(
        n, src, dst, degrees=40, translate=0.05, scale=(0.7, 1.4), shear=30, perspective=perspective, generator=g
    )


def test_point_forward_and_back():
    H = _H()
    pts = torch.rand(3, 20, 2) * 40
    back = warps.transform_points(torch.linalg.inv(H), warps.transform_points(H, pts))
    assert torch.allclose(back, pts, atol=1e-3)


def test_same_seed_same_warps():
    assert torch.equal(_H(seed=5), _H(seed=5))
    assert not torch.equal(_H(seed=5), _H(seed=6))


def test_image_warp_moves_pixels_where_points_go():
    H = _H(n=1, perspective=0.0)
    img = torch.zeros(1, 1, 60, 80)
    img[0, 0, 30, 35] = 1.0
    out = warps.warp_images(img, H, (40, 50))
    p = warps.transform_points(H, torch.tensor([[[35.0, 30.0]]]))[0, 0]
    idx = int(out[0, 0].flatten().argmax())
    assert abs(idx % 50 - float(p[0])) <= 1 and abs(idx // 50 - float(p[1])) <= 1


def test_correspondence_grid_reads_back_the_source():
    xy = warps.pixel_grid((60, 80))
    src = (0.5 + 0.25 * torch.sin(xy[..., 0] / 6.0) * torch.cos(xy[..., 1] / 5.0))[None, None]
    H = _H(n=1, src=(60, 80), dst=(60, 80), perspective=0.1)
    warped = warps.warp_images(src, H, (60, 80))
    valid = warps.warp_valid_mask(H, (60, 80), (60, 80))
    # every source pixel read at its correspondence in the warped image: equal where visible
    grid = warps.correspondence_grid(H, (60, 80))
    back = warps.sample_full(warped, grid)
    seen = warps.sample_full(valid.float(), grid) > 0.999
    assert seen.sum() > 500
    assert (back - src)[seen].abs().max() < 0.02


def test_sample_coarse_equals_upsampling():
    desc = torch.randn(2, 8, 5, 6)
    up = F.interpolate(desc, size=(20, 24), mode="bilinear", align_corners=False)
    grid = warps.pixel_grid((20, 24))[None].expand(2, -1, -1, -1)
    assert torch.allclose(warps.sample_coarse(desc, grid, (20, 24)), up, atol=1e-5)


def test_training_views_correspond():
    class Images:
        keys = ["a", "b"]

        def image(self, i):
            g = torch.Generator().manual_seed(i)
            return (torch.rand(70, 90, generator=g) * 255).byte().numpy()

    yx = torch.stack([torch.randint(0, 70, (50,)), torch.randint(0, 90, (50,))], -1).numpy()
    conf = config.load_config(overrides=["data.crop_size=32"])
    ds = PairDataset(Images(), [0, 1], {"a": yx, "b": yx[:10]}, conf, seed=0)
    ds.set_epoch_key(0, 2, 0)
    batch = collate_pairs([ds[0], ds[1]])
    again = collate_pairs([ds[0], ds[1]])
    assert torch.equal(batch["H0"], again["H0"]) and torch.equal(batch["keypoints"], again["keypoints"])
    v = make_views(batch, 32, torch.device("cpu"))
    assert v.images.shape == (4, 1, 32, 32)
    both = v.in0 & v.in1
    assert both.any()
    mapped = warps.transform_points(v.H01, v.kp0)
    assert torch.allclose(mapped[both], v.kp1[both], atol=1e-3)
