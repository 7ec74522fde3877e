"""Local correlation: the best dot product of a feature with its integer-shifted neighbours.

This is the inner loop of SEKD's descriptor reliability (distinctiveness = the most similar
neighbour). A plain loop over the offsets reads both full maps once per offset (memory-bound
on a CPU); here the rows are processed in tiles so that the tile of both maps stays in cache
while every offset is taken from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TILE_ELEMENTS = 1 << 20  # elements of one tile of ``a`` (~4 MB of float32: L2/L3-resident)


def shifted_max_dot(a: torch.Tensor, b: torch.Tensor, offsets: list[tuple[int, int]] | torch.Tensor,
                    tile_rows: int | None = None) -> torch.Tensor:
    """``max_o <a[..., y, x], b[..., y + oy, x + ox]>`` over the channel dimension.

    Args:
        a: ``R x C x h x w`` features.
        b: ``R x C x h x w`` features of the same grid; read as zero outside the map.
        offsets: ``K x 2`` integer (x, y) offsets (a tensor or a list of pairs).
        tile_rows: rows per tile (default: ``TILE_ELEMENTS`` elements of ``a`` per tile).
    Returns:
        ``R x h x w`` maximum over the ``K`` offsets (a zero vector outside gives 0).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"shifted_max_dot expects two R x C x h x w maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    offs = [(int(x), int(y)) for x, y in (offsets.tolist() if torch.is_tensor(offsets) else offsets)]
    if not offs:
        raise ValueError("shifted_max_dot needs at least one offset")
    r, c, h, w = a.shape
    m = max(max(abs(x), abs(y)) for x, y in offs)
    a = a.contiguous()
    bp = F.pad(b, (m, m, m, m)).contiguous()
    t = tile_rows or max(1, min(h, TILE_ELEMENTS // max(r * c * w, 1)))
    out = torch.empty(r, h, w, dtype=torch.result_type(a, b), device=a.device)
    for y0 in range(0, h, t):
        y1 = min(h, y0 + t)
        at = a[:, :, y0:y1]
        best = None
        for ox, oy in offs:
            d = (at * bp[:, :, m + oy + y0 : m + oy + y1, m + ox : m + ox + w]).sum(1)
            best = d if best is None else torch.maximum(best, d, out=best)
        out[:, y0:y1] = best
    return out
