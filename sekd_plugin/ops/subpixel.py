"""Sub-pixel keypoint refinement by 1-D parabola fits (as the SEKD release)."""

from __future__ import annotations

import torch


def parabola_offsets(scores: torch.Tensor, rows_cols: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offsets of score peaks from independent row / column parabola fits.

    For a peak at (y, x), the vertical offset fits a parabola through the scores at
    y-1, y, y+1 (column x), the horizontal one through x-1, x, x+1 (row y). Offsets are
    clamped to [-1, 1]; peaks on the outermost row/column of the map get no offset, and a
    flat neighbourhood (zero curvature) gives 0 instead of the release's NaN.

    Args:
        scores: ``H x W`` float score map.
        rows_cols: ``N x 2`` long (y, x) peak positions.
    Returns:
        ``N x 2`` float offsets (dy, dx), in the dtype of ``scores``.
    """
    h, w = scores.shape
    y, x = rows_cols[:, 0], rows_cols[:, 1]
    inside = (y >= 1) & (y < h - 1) & (x >= 1) & (x < w - 1)
    yc, xc = y.clamp(1, max(h - 2, 1)), x.clamp(1, max(w - 2, 1))
    centre = scores[yc, xc]

    def fit(prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        # written in the release's operation order so float32 results are bit-identical
        off = -(nxt - prev) / (2.0 * (prev - 2.0 * centre + nxt))
        off = torch.where(torch.isfinite(off), off, torch.zeros_like(off))
        return off.clamp(-1.0, 1.0)

    dy = fit(scores[(yc - 1).clamp(min=0), xc], scores[(yc + 1).clamp(max=h - 1), xc])
    dx = fit(scores[yc, (xc - 1).clamp(min=0)], scores[yc, (xc + 1).clamp(max=w - 1)])
    off = torch.stack([dy, dx], dim=-1)
    return torch.where(inside[:, None], off, torch.zeros_like(off))
