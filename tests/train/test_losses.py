import torch
import torch.nn.functional as F

from sekd_plugin.train import losses


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def test_triplet_zero_for_identical_positives_and_far_negatives():
    a = _unit(2, 16, 128)
    for kind in ("ratio_test", "margin"):
        loss = losses.triplet_loss(a, a.clone(), kind=kind, margin=0.5)
        assert abs(float(loss)) < 1e-6, kind


def test_triplet_positive_and_differentiable_for_confused_pairs():
    a = _unit(1, 8, 32, seed=1).requires_grad_()
    p = _unit(1, 8, 32, seed=2)  # unrelated "positives": the ratio test selects most pairs
    loss = losses.triplet_loss(a, p)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    # pulling positives onto their anchors lowers the loss
    assert float(losses.triplet_loss(a.detach(), F.normalize(p + 3 * a.detach(), dim=-1))) < float(loss.detach())


def test_triplet_mask_ignores_padding():
    a, p = _unit(1, 10, 64, seed=3), _unit(1, 10, 64, seed=4)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, :6] = True
    padded = losses.triplet_loss(a, p, mask)
    plain = losses.triplet_loss(a[:, :6], p[:, :6])
    assert torch.allclose(padded, plain, atol=1e-6)
    # a sample with fewer than two valid pairs contributes nothing
    assert float(losses.triplet_loss(a, p, torch.zeros(1, 10, dtype=torch.bool))) == 0.0


def test_focal_lower_for_correct_labels_and_weighted():
    target = (torch.rand(2, 8, 8) > 0.8).long()
    good = torch.stack([(1 - target) * 4.0, target * 4.0], dim=1).float()
    bad = good.flip(1)
    lg, lb = losses.focal_loss(good, target), losses.focal_loss(bad, target)
    assert float(lg) < float(lb)
    # class weights scale each class's contribution
    assert float(losses.focal_loss(bad, target, (0.0, 1.0))) < float(lb)
    # with gamma = 0 and unit weights it is half the cross entropy (the release's normalisation)
    ce = F.cross_entropy(bad, target)
    assert torch.allclose(losses.focal_loss(bad, target, gamma=0.0), ce / 2, atol=1e-5)


def test_symmetric_kl_zero_for_identical_maps_and_symmetric():
    l0 = torch.randn(2, 2, 6, 6)
    valid = torch.ones(2, 6, 6, dtype=torch.bool)
    assert abs(float(losses.symmetric_kl(l0, l0.clone(), valid))) < 1e-6
    l1 = torch.randn(2, 2, 6, 6)
    k01, k10 = losses.symmetric_kl(l0, l1, valid), losses.symmetric_kl(l1, l0, valid)
    assert float(k01) > 0 and torch.allclose(k01, k10, atol=1e-6)
    # invalid pixels do not count
    assert float(losses.symmetric_kl(l0, l1, torch.zeros_like(valid))) == 0.0


def test_preservation_zero_for_identical_outputs():
    x = torch.randn(4, 2, 5, 5)
    assert float(losses.preservation_mse(x, x.clone())) == 0.0
    assert float(losses.preservation_mse(x, x + 1)) > 0.99
