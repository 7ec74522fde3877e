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
