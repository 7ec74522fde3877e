"""Sub-pixel keypoint refinement by 1-D parabola fits (as the SEKD release)."""

from __future__ import annotations

import torch


def parabola_offsets(scores: torch.Tensor, rows_cols: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Sub-pixel offsets of score peaks from independent row / column parabola fits.

    For a peak at (y, x), the vertical offset fits a parabola through the scores at
    y-1, y, y+1 (column x), the horizontal one through x-1, x, x+1 (row y). Offsets are
    clamped to [-1, 1]; peaks on the outermost row/column of the map get no offset, and a
    flat neighbourhood (zero curvature) gives 0 instead of the release's NaN.

    Args:
        scores: ``H x W`` float score map, or ``B x H x W`` maps with ``batch``.
        rows_cols: ``N x 2`` long (y, x) peak positions.
        batch: ``N`` long map index of every peak (only with ``B x H x W`` scores).
    Returns:
        ``N x 2`` float offsets (dy, dx), in the dtype of ``scores``.
    """
    if scores.ndim == 2:
        scores = scores[None]
        batch = torch.zeros_like(rows_cols[:, 0])
    elif batch is None:
        raise ValueError("parabola_offsets: B x H x W scores need the batch index of every peak")
    h, w = scores.shape[-2:]
    bi = batch
    y, x = rows_cols[:, 0], rows_cols[:, 1]
    inside = (y >= 1) & (y < h - 1) & (x >= 1) & (x < w - 1)
    yc, xc = y.clamp(1, max(h - 2, 1)), x.clamp(1, max(w - 2, 1))
    centre = scores[bi, yc, xc]

    def fit(prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        # written in the release's operation order so float32 results are bit-identical
        off = -(nxt - prev) / (2.0 * (prev - 2.0 * centre + nxt))
        off = torch.where(torch.isfinite(off), off, torch.zeros_like(off))
        return off.clamp(-1.0, 1.0)

    dy = fit(scores[bi, (yc - 1).clamp(min=0), xc], scores[bi, (yc + 1).clamp(max=h - 1), xc])
    dx = fit(scores[bi, yc, (xc - 1).clamp(min=0)], scores[bi, yc, (xc + 1).clamp(max=w - 1)])
    off = torch.stack([dy, dx], dim=-1)
    return torch.where(inside[:, None], off, torch.zeros_like(off))
