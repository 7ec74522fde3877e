import torch
import torch.nn.functional as F

from sekd_plugin.matchers import match_nearest_neighbor


def test_permuted_descriptors_match_back():
    g = torch.Generator().manual_seed(0)
    d0 = F.normalize(torch.randn(64, 50, generator=g), dim=0)
    perm = torch.randperm(50, generator=g)
    m, s = match_nearest_neighbor(d0, d0[:, perm])
    assert torch.equal(perm[m], torch.arange(50))
    assert torch.allclose(s, torch.ones(50), atol=1e-5)


def test_mutual_ratio_and_distance():
    d0 = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]).T, dim=0)  # 3 points
    d1 = F.normalize(torch.tensor([[1.0, 0.05], [0.0, 1.0]]).T, dim=0)  # 2 points
    m, _ = match_nearest_neighbor(d0, d1)
    assert m.tolist()[2] == 1 and sorted(m.tolist()[:2]) == [-1, 0]  # only one of 0/1 is mutual
    m, _ = match_nearest_neighbor(d0, d1, mutual_check=False)
    assert m.tolist() == [0, 0, 1]
    m, _ = match_nearest_neighbor(d0, d1, mutual_check=False, distance_threshold=0.01)
    assert m.tolist() == [-1, -1, 1]
    far = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.436]]).T, dim=0)
    m, _ = match_nearest_neighbor(far[:, :1], far, mutual_check=False, ratio_threshold=0.8)
    assert m.tolist() == [0]
    close = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01]]).T, dim=0)
    m, _ = match_nearest_neighbor(close[:, :1], close[:, 1:], mutual_check=False, ratio_threshold=0.8)
    assert m.tolist() == [-1]  # ambiguous: fails the ratio test


def test_binary_hamming():
    d0 = torch.tensor([[0b00001111, 0b11110000]], dtype=torch.uint8)  # D=1 byte, N=2
    d1 = torch.tensor([[0b11110001, 0b00001110]], dtype=torch.uint8)
    m, s = match_nearest_neighbor(d0, d1)
    assert m.tolist() == [1, 0]
    assert torch.allclose(s, torch.tensor([1 - 1 / 8, 1 - 1 / 8]))


def test_batched_and_empty():
    d0 = F.normalize(torch.randn(2, 8, 5), dim=1)
    m, s = match_nearest_neighbor(d0, d0)
    assert torch.equal(m, torch.arange(5).expand(2, 5))
    m, s = match_nearest_neighbor(torch.zeros(8, 0), d0[0])
    assert m.shape == (0,)
    m, s = match_nearest_neighbor(d0[0], torch.zeros(8, 0))
    assert (m == -1).all()


def _reference(d0, d1, mutual_check=True, ratio_threshold=None, distance_threshold=None):
    """The distance-matrix formulation (hloc's), one pair at a time."""
    from sekd_plugin.matchers.nearest_neighbor import pairwise_distance

    dist = pairwise_distance(d0[None], d1[None])[0]
    k = 2 if ratio_threshold is not None and d1.shape[1] > 1 else 1
    top = dist.topk(k, dim=-1, largest=False)
    d, nn = top.values[:, 0], top.indices[:, 0]
    ok = torch.ones_like(nn, dtype=torch.bool)
    if k == 2:
        ok &= d < ratio_threshold * top.values[:, 1]
    if distance_threshold is not None:
        ok &= d < distance_threshold
    if mutual_check:
        ok &= dist.argmin(0)[nn] == torch.arange(len(nn))
    return torch.where(ok, nn, -1)


OPTIONS = [{}, {"mutual_check": False}, {"ratio_threshold": 0.9}, {"distance_threshold": 0.9},
           {"mutual_check": False, "ratio_threshold": 0.95, "distance_threshold": 1.2}]


def test_similarity_space_equals_distance_formulation():
    g = torch.Generator().manual_seed(1)
    for opts in OPTIONS:
        d0 = F.normalize(torch.randn(32, 300, generator=g), dim=0)
        d1 = F.normalize(d0[:, :250] + 0.6 * torch.randn(32, 250, generator=g), dim=0)
        m, s = match_nearest_neighbor(d0, d1, **opts)
        assert torch.equal(m, _reference(d0, d1, **opts)), opts
        valid = m >= 0
        assert torch.allclose(s[valid], (1 + (d0[:, valid] * d1[:, m[valid]]).sum(0)) / 2, atol=1e-5)


def test_one_image_against_all_partners_equals_pairwise():
    from sekd_plugin.matchers.nearest_neighbor import match_one_to_many, pad_descriptors

    g = torch.Generator().manual_seed(2)
    d0 = F.normalize(torch.randn(16, 120, generator=g), dim=0)
    partners = [F.normalize(d0[:, :n] + 0.5 * torch.randn(16, n, generator=g), dim=0) for n in (90, 1, 120, 40)]
    padded, counts = pad_descriptors(partners)
    for opts in OPTIONS:
        m, s = match_one_to_many(d0, padded, counts, **opts)
        for p, d1 in enumerate(partners):
            mp, sp = match_nearest_neighbor(d0, d1, **opts)
            assert torch.equal(m[p], mp), (opts, p)
            assert torch.allclose(s[p], sp, atol=1e-6)
    binary = [torch.randint(0, 256, (4, n), dtype=torch.uint8, generator=g) for n in (30, 7)]
    b0 = torch.randint(0, 256, (4, 25), dtype=torch.uint8, generator=g)
    padded, counts = pad_descriptors(binary)
    m, s = match_one_to_many(b0, padded, counts, mutual_check=True)
    for p, d1 in enumerate(binary):
        mp, sp = match_nearest_neighbor(b0, d1)
        assert torch.equal(m[p], mp) and torch.allclose(s[p], sp)
    m, _ = match_one_to_many(b0, padded[:, :, :0])
    assert m.shape == (2, 25) and (m == -1).all()
