import pytest
import torch
import torch.nn.functional as F

from sekd_plugin.ops.correlation import shifted_max_dot


def _naive(a, b, offsets):
    r, c, h, w = a.shape
    best = torch.full((r, h, w), -float("inf"))
    for ox, oy in offsets:
        for y in range(h):
            for x in range(w):
                yy, xx = y + oy, x + ox
                v = (a[:, :, y, x] * b[:, :, yy, xx]).sum(1) if 0 <= yy < h and 0 <= xx < w else torch.zeros(r)
                best[:, y, x] = torch.maximum(best[:, y, x], v)
    return best


@pytest.mark.parametrize("tile_rows", [None, 1, 3, 100])
def test_shifted_max_dot_is_the_max_over_shifted_dot_products(tile_rows):
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(2, 5, 9, 11, generator=g), dim=1)
    b = F.normalize(torch.randn(2, 5, 9, 11, generator=g), dim=1)
    offsets = [(-2, -2), (0, -2), (2, 0), (-4, 2), (1, 1)]
    out = shifted_max_dot(a, b, offsets, tile_rows=tile_rows)
    assert out.shape == (2, 9, 11)
    torch.testing.assert_close(out, _naive(a, b, offsets), atol=1e-6, rtol=0)


def test_shifted_max_dot_finds_the_copy_at_its_offset():
    """b = a shifted by (3, -2): at every pixel whose partner is inside, the max is |a|^2 = 1."""
    a = F.normalize(torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(1)), dim=1)
    b = torch.zeros_like(a)
    b[:, :, 0:10, 3:12] = a[:, :, 2:12, 0:9]  # b[y + oy, x + ox] = a[y, x] with (ox, oy) = (3, -2)
    out = shifted_max_dot(a, b, torch.tensor([[3, -2], [0, 0]]))
    torch.testing.assert_close(out[0, 2:, :9], torch.ones(10, 9), atol=1e-6, rtol=0)


def test_shifted_max_dot_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="one shape"):
        shifted_max_dot(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5), [(0, 0)])
    with pytest.raises(ValueError, match="at least one offset"):
        shifted_max_dot(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4), [])
