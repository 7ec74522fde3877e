"""The blocked float matcher gives the full-matrix path's matches, bit for bit, ties included."""

import pytest
import torch
import torch.nn.functional as F

from sekd_plugin.matchers import blocked_nn
from sekd_plugin.matchers.blocked_nn import first_max, nearest_neighbors_blocked
from sekd_plugin.matchers.nearest_neighbor import (
    match_nearest_neighbor,
    match_one_to_many,
    pad_descriptors,
)

OPTIONS = [{}, {"mutual_check": False}, {"ratio_threshold": 0.8}, {"distance_threshold": 0.9},
           {"ratio_threshold": 0.95, "distance_threshold": 1.1}, {"mutual_check": False, "ratio_threshold": 0.9}]


def _unit(g, d, n):
    return F.normalize(torch.randn(d, n, generator=g), dim=0)


def _assert_same(d0, d1, **opts):
    """Blocked (default) and full-matrix matches and scores are identical."""
    m, s = match_nearest_neighbor(d0, d1, **opts)
    mf, sf = match_nearest_neighbor(d0, d1, full_matrix=True, **opts)
    assert torch.equal(m, mf), (opts, int((m != mf).sum()))
    assert torch.equal(s, sf), opts
    return m


@pytest.mark.parametrize("dim", [0, 1])
def test_first_max_is_torch_max_with_ties(dim):
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        r, c = torch.randint(1, 200, (2,), generator=g).tolist()
        # few distinct values: ties everywhere; or continuous values
        x = torch.randint(0, 4, (r, c), generator=g).float() if trial % 2 else torch.randn(r, c, generator=g)
        for chunk in (1, 7, 64):
            best, index, second = first_max(x, dim, chunk, second=True)
            ref = x.max(dim)
            assert torch.equal(best, ref.values) and torch.equal(index, ref.indices), (r, c, chunk)
            if x.shape[dim] > 1:
                assert torch.equal(second, x.topk(2, dim=dim).values.select(dim, 1)), (r, c, chunk)


def test_first_max_prefers_the_first_of_equal_maxima():
    x = torch.zeros(3, 300)
    x[:, [5, 130, 299]] = 1.0  # equal maxima in different chunks
    assert first_max(x, 1)[1].tolist() == [5, 5, 5]
    assert first_max(x.t().contiguous(), 0)[1].tolist() == [5, 5, 5]


def test_blocks_carry_the_bits_of_the_full_product():
    """The premise of identical matches: every blocked product equals the full einsum bitwise."""
    g = torch.Generator().manual_seed(1)
    for n0, n1, d, rows in [(1100, 700, 128, 1024), (700, 333, 128, 256), (900, 64, 32, 300), (300, 90, 256, 1024)]:
        d0, d1 = _unit(g, d, n0), _unit(g, d, n1)
        full = blocked_nn._full_product(d0, d1)
        seen = torch.zeros(n0, dtype=torch.bool)
        for fresh, block in blocked_nn._blocks(d0, d1, min(rows, n0)):
            assert torch.equal(block, full[fresh:fresh + block.shape[0]]), (n0, n1, d, rows, fresh)
            assert not seen[fresh:fresh + block.shape[0]].any()  # an overlapping block yields new rows only
            seen[fresh:fresh + block.shape[0]] = True
        assert seen.all()


def test_random_descriptors_match_as_the_full_matrix():
    g = torch.Generator().manual_seed(2)
    for n0, n1 in [(1300, 900), (500, 1200), (1025, 3), (1, 40), (40, 1), (2100, 2049)]:
        d0 = _unit(g, 128, n0)
        d1 = F.normalize(d0[:, torch.randint(0, n0, (n1,), generator=g)] + 0.7 * torch.randn(128, n1, generator=g), dim=0)
        for opts in OPTIONS:
            _assert_same(d0, d1, **opts)


def test_near_ties_and_duplicates_match_as_the_full_matrix():
    g = torch.Generator().manual_seed(3)
    base = _unit(g, 64, 600)
    # near ties: partners one float step apart; exact ties: duplicated descriptors on both sides,
    # the copies far apart (in different blocks of 1,024 rows and different chunks of 64 columns)
    near = F.normalize(base + 1e-7 * torch.randn(64, 600, generator=g), dim=0)
    d0 = torch.cat([base, near, base[:, :300], base[:, ::7]], 1)  # 1,586 rows, many exact duplicates
    d1 = torch.cat([near[:, ::2], base[:, ::3], near[:, ::2], base[:, :50]], 1)
    for opts in OPTIONS:
        m = _assert_same(d0, d1, **opts)
        _assert_same(d1, d0, **opts)
    # all descriptors equal: every similarity ties; the first row / column wins, as torch.max
    same = F.normalize(torch.ones(16, 1200), dim=0)
    m = _assert_same(same, same)
    assert m.tolist() == [0] + [-1] * 1199


def test_blocked_rows_and_overlap_give_the_same_decisions():
    g = torch.Generator().manual_seed(4)
    d0, d1 = _unit(g, 32, 1000), _unit(g, 32, 800)
    d0[:, 900:] = d0[:, :100]  # duplicates across blocks
    ref = nearest_neighbors_blocked(d0, d1, k=2, block_rows=2048)  # one full block
    for rows in (256, 300, 999):
        out = nearest_neighbors_blocked(d0, d1, k=2, block_rows=rows)
        for a, b in zip(out, ref):
            assert torch.equal(a, b), rows
    with torch.no_grad():  # duplicated rows: only the first of each pair can be mutual
        mutual = ref[3]
        assert not (mutual[900:] & mutual[:100]).any()


def test_thresholds_behave_on_the_blocked_path():
    g = torch.Generator().manual_seed(5)
    d0 = _unit(g, 32, 1100)
    d1 = F.normalize(d0 + 0.06 * torch.randn(32, 1100, generator=g), dim=0)
    m_all, s_all = match_nearest_neighbor(d0, d1, mutual_check=False)
    assert (m_all >= 0).all()
    dist = (2 - 2 * (d0 * d1[:, m_all]).sum(0)).clamp(min=0).sqrt()
    m_dist, _ = match_nearest_neighbor(d0, d1, mutual_check=False, distance_threshold=0.35)
    assert torch.equal(m_dist >= 0, dist < 0.35) and 0 < int((m_dist >= 0).sum()) < 1100
    m_ratio, _ = match_nearest_neighbor(d0, d1, mutual_check=False, ratio_threshold=0.3)
    sim = d0.t() @ d1
    top = sim.topk(2, dim=1).values
    d12 = (2 - 2 * top).clamp(min=0).sqrt()
    assert torch.equal(m_ratio >= 0, d12[:, 0] < 0.3 * d12[:, 1]) and 0 < int((m_ratio >= 0).sum()) < 1100
    assert torch.allclose(s_all, (1 + (d0 * d1[:, m_all]).sum(0)) / 2, atol=1e-6)
    # a ratio above 1 keeps the full path (topk picks among tied maxima there)
    _assert_same(d0, torch.cat([d1, d1], 1), ratio_threshold=1.5)


def test_one_to_many_on_cpu_equals_the_grouped_product():
    g = torch.Generator().manual_seed(6)
    d0 = _unit(g, 64, 1100)
    partners = [F.normalize(d0[:, :n] + 0.5 * torch.randn(64, n, generator=g), dim=0) for n in (1050, 1, 300)]
    padded, counts = pad_descriptors(partners)
    for opts in OPTIONS:
        m, s = match_one_to_many(d0, padded, counts, **opts)
        mf, sf = match_one_to_many(d0, padded, counts, full_matrix=True, **opts)
        assert torch.equal(m, mf) and torch.allclose(s, sf, atol=1e-6), opts
