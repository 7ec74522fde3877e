import torch

from sekd_plugin.ops.nms import max_filter
from sekd_plugin.ops import nms_mask, parabola_offsets, sample_descriptors, select_keypoints


def test_nms_and_selection_on_constructed_map():
    s = torch.zeros(20, 20)
    s[5, 5], s[5, 7], s[15, 15], s[0, 19] = 0.9, 0.8, 0.7, 0.6
    mask = nms_mask(s[None, None], 2)[0, 0]
    rc, v = select_keypoints(s, mask, 0.5)
    assert rc.tolist() == [[5, 5], [15, 15], [0, 19]]  # (5, 7) is suppressed by (5, 5)
    assert torch.allclose(v, torch.tensor([0.9, 0.7, 0.6]))
    rc, _ = select_keypoints(s, mask, 0.5, max_keypoints=1)
    assert rc.tolist() == [[5, 5]]
    rc, _ = select_keypoints(s, mask, 0.9)  # strictly greater than the threshold
    assert len(rc) == 0


def test_parabola_offsets_recover_true_peak():
    y, x = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    s = 1 - 0.1 * ((y - 4.3) ** 2 + (x - 3.8) ** 2)
    off = parabola_offsets(s, torch.tensor([[4, 4], [0, 4]]))
    assert torch.allclose(off[0], torch.tensor([0.3, -0.2]), atol=1e-5)
    assert off[1].tolist() == [0.0, 0.0]  # border peaks are not refined


def test_sampling_modes_on_constructed_map():
    # coarse map whose value is the coarse column index: a centred read at full-res x
    # must return (x + 0.5) / 4 - 0.5, the official read x / 4 - 0.5.
    w = 8
    dmap = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(1, 4, w).clone()
    dmap = torch.cat([dmap, torch.full_like(dmap, 100.0)])  # 2 channels, 2nd constant
    kp = torch.tensor([[13.5, 6.0]])  # x = 13.5 (centre of coarse cell 3 is x = 13.5)
    cen = sample_descriptors(dmap, kp, (16, 32), "centered")
    off = sample_descriptors(dmap, kp, (16, 32), "official")
    ratio_c, ratio_o = (cen[0] / cen[1]).item() * 100, (off[0] / off[1]).item() * 100
    assert abs(ratio_c - 3.0) < 1e-4 and abs(ratio_o - 2.875) < 1e-4


def test_max_filter_equals_max_pooling():
    import torch.nn.functional as F

    x = torch.rand(2, 1, 37, 53)
    x[0, 0, 3:6, 3:6] = 1.0  # a plateau
    for r in (1, 3, 4):
        assert torch.equal(max_filter(x, r), F.max_pool2d(x, 2 * r + 1, 1, r))


def test_batched_selection_and_sampling_equal_per_image():
    from sekd_plugin.ops import sample_descriptors_batched, select_keypoints_batched, topk_in_groups

    torch.manual_seed(0)
    s = torch.rand(3, 24, 32)
    s[1, 4:8, 4:8] = 0.95  # a plateau: ties keep raster order
    mask = nms_mask(s[:, None], 2)[:, 0]
    bi, rc, v = select_keypoints_batched(s, mask, 0.3, max_keypoints=7)
    dmap = torch.randn(3, 16, 6, 8)
    desc = sample_descriptors_batched(dmap, bi, rc.flip(-1).float(), (24, 32), "official")
    for i in range(3):
        rc1, v1 = select_keypoints(s[i], mask[i], 0.3, max_keypoints=7)
        assert torch.equal(rc[bi == i], rc1) and torch.equal(v[bi == i], v1)
        assert torch.equal(desc[:, bi == i], sample_descriptors(dmap[i], rc1.flip(-1).float(), (24, 32), "official"))
    empty = select_keypoints_batched(s, torch.zeros_like(mask), 0.3)
    assert [len(t) for t in empty] == [0, 0, 0]
    assert sample_descriptors_batched(dmap, empty[0], empty[1].float(), (24, 32)).shape == (16, 0)
    groups, values = torch.tensor([1, 0, 1, 0, 1]), torch.tensor([0.5, 0.1, 0.9, 0.1, 0.5])
    assert topk_in_groups(groups, values, 2).tolist() == [1, 3, 2, 0]


def test_superglue_nms_equals_its_max_pool_definition():
    import torch.nn.functional as F

    from sekd_plugin.ops import superglue_nms

    def reference(scores, r):
        pool = lambda x: F.max_pool2d(x, 2 * r + 1, 1, r)  # noqa: E731
        keep = scores == pool(scores)
        for _ in range(2):
            covered = pool(keep.float()) > 0
            rest = torch.where(covered, torch.zeros_like(scores), scores)
            keep = keep | ((rest == pool(rest)) & ~covered)
        return keep

    scores = torch.rand(2, 1, 37, 53, generator=torch.Generator().manual_seed(0))
    scores = (scores * 8).round() / 8  # plateaus
    for r in (1, 3, 4):
        assert torch.equal(superglue_nms(scores, r), reference(scores, r))
