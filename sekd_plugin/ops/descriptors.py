"""Sampling descriptors from a coarse dense map at full-resolution keypoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SAMPLING_MODES = ("official", "centered")


def _grid_coordinates(pts: torch.Tensor, image_size: tuple[int, int], mode: str) -> torch.Tensor:
    """``N x 2`` (x, y) pixels -> ``N x 2`` grid_sample coordinates of the sampling ``mode``."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got '{mode}'")
    h, w = image_size
    if mode == "centered":
        pts = pts + 0.5
    # same operation order as the release, so 'official' is bit-identical
    gx = 2.0 * pts[:, 0] / float(w) - 1.0
    gy = 2.0 * pts[:, 1] / float(h) - 1.0
    return torch.stack([gx, gy], dim=-1)


def sample_descriptors(
    desc_map: torch.Tensor,
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    mode: str = "centered",
) -> torch.Tensor:
    """Bilinearly sample and L2-normalise descriptors at keypoint positions.

    Args:
        desc_map: ``C x h x w`` raw descriptor map covering an image of ``image_size``.
        keypoints: ``N x 2`` (x, y) full-resolution pixel coordinates, the centre of the
            top-left pixel is (0, 0).
        image_size: ``(H, W)`` of the full-resolution image the map was computed on.
        mode: ``"official"`` reproduces the SEKD release: grid ``2x/W - 1`` with
            ``align_corners=False``, which reads the coarse map at ``x/s - 0.5`` (half a
            coarse cell off); ``"centered"`` maps pixel centres onto cell centres, reading at
            ``(x + 0.5)/s - 0.5``.
    Returns:
        ``C x N`` float32 unit descriptors (``eps = 1e-12``; zero padding outside the map).
    """
    grid = _grid_coordinates(keypoints.to(desc_map.dtype), image_size, mode).view(1, 1, -1, 2)
    desc = F.grid_sample(desc_map[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.normalize(desc.reshape(desc_map.shape[0], -1), p=2, dim=0)


def sample_descriptors_batched(
    desc_map: torch.Tensor,
    batch: torch.Tensor,
    keypoints: torch.Tensor,
    image_size: tuple[int, int],
    mode: str = "centered",
) -> torch.Tensor:
    """:func:`sample_descriptors` for keypoints of several images in one ``grid_sample`` call.

    Args:
        desc_map: ``B x C x h x w`` raw descriptor maps (all images of ``image_size``).
        batch: ``M`` long image index of every keypoint, non-decreasing (grouped by image).
        keypoints: ``M x 2`` (x, y) full-resolution pixel coordinates.
        image_size: ``(H, W)`` of the full-resolution images.
        mode: as :func:`sample_descriptors`.
    Returns:
        ``C x M`` unit descriptors, for each keypoint exactly what :func:`sample_descriptors`
        gives on its own image (every point is sampled independently; the grid is padded per
        image to the largest keypoint count).
    """
    b, c = desc_map.shape[:2]
    m = len(batch)
    xy = _grid_coordinates(keypoints.to(desc_map.dtype), image_size, mode)
    if m == 0:
        return desc_map.new_zeros(c, 0)
    counts = torch.bincount(batch, minlength=b)
    offsets = torch.cumsum(counts, 0) - counts
    slot = torch.arange(m, device=batch.device) - offsets[batch]  # batch is grouped (sorted)
    width = int(counts.max())  # one host sync per batch
    grid = desc_map.new_zeros(b, 1, width, 2)
    grid[batch, 0, slot] = xy
    desc = F.grid_sample(desc_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    desc = desc[:, :, 0].permute(0, 2, 1)[batch, slot]  # M x C
    return F.normalize(desc.t().contiguous(), p=2, dim=0)
