"""Nearest-neighbour descriptor matching (mutual check, ratio test, distance threshold).

Float descriptors are compared by L2 distance of unit vectors (``sqrt(2 - 2 cos)``, as
hloc's ``nearest_neighbor`` matcher); binary descriptors (uint8, packed bits) by Hamming
distance. Everything is batched tensor code; no Python loop over keypoints.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import BaseMatcher


def _unpack_bits(desc: torch.Tensor) -> torch.Tensor:
    """``B x D x N`` uint8 -> ``B x 8D x N`` float {0, 1}."""
    bits = torch.arange(8, device=desc.device, dtype=torch.uint8)
    unpacked = (desc[:, :, None, :] >> bits[None, None, :, None]) & 1
    return unpacked.flatten(1, 2).float()


def pairwise_distance(desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
    """Distances ``B x N0 x N1`` between ``B x D x N0`` and ``B x D x N1`` descriptors.

    Float: L2 distance of (assumed unit) vectors. uint8: Hamming distance in bits.
    """
    if desc0.dtype == torch.uint8:
        b0, b1 = _unpack_bits(desc0), _unpack_bits(desc1)
        dot = torch.einsum("bdn,bdm->bnm", b0, b1)
        return b0.sum(1)[:, :, None] + b1.sum(1)[:, None, :] - 2 * dot
    sim = torch.einsum("bdn,bdm->bnm", desc0.float(), desc1.float())
    return (2 - 2 * sim).clamp(min=0).sqrt()


def match_nearest_neighbor(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    mutual_check: bool = True,
    ratio_threshold: float | None = None,
    distance_threshold: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every descriptor of image 0 to its nearest neighbour in image 1.

    Args:
        desc0: ``D x N0`` or ``B x D x N0`` (float unit vectors, or uint8 packed bits).
        desc1: ``D x N1`` or ``B x D x N1``.
        mutual_check: keep only mutual nearest neighbours.
        ratio_threshold: keep a match when ``d1 < ratio * d2`` (Lowe's ratio test).
        distance_threshold: keep a match when its distance is below this value
            (L2 for float, bits for binary).
    Returns:
        ``matches0`` (``[B x] N0`` long, index into image 1 or -1) and ``scores0``
        (``[B x] N0`` float in [0, 1]: ``(cos + 1) / 2 = 1 - d^2 / 4`` for float, as hloc's
        matcher, so ``min_match_score`` means the same; ``1 - d / bits`` for binary; 0 where
        unmatched).
    """
    batched = desc0.ndim == 3
    if not batched:
        desc0, desc1 = desc0[None], desc1[None]
    b, n0, n1 = desc0.shape[0], desc0.shape[-1], desc1.shape[-1]
    matches = torch.full((b, n0), -1, dtype=torch.long, device=desc0.device)
    scores = torch.zeros((b, n0), device=desc0.device)
    if n0 == 0 or n1 == 0:
        return (matches, scores) if batched else (matches[0], scores[0])
    dist = pairwise_distance(desc0, desc1)
    k = 2 if ratio_threshold is not None and n1 > 1 else 1
    top = dist.topk(k, dim=-1, largest=False)
    d1, nn01 = top.values[..., 0], top.indices[..., 0]
    valid = torch.ones_like(nn01, dtype=torch.bool)
    if k == 2:
        valid &= d1 < ratio_threshold * top.values[..., 1]
    if distance_threshold is not None:
        valid &= d1 < distance_threshold
    if mutual_check:
        nn10 = dist.argmin(dim=1)  # B x N1
        valid &= torch.gather(nn10, 1, nn01) == torch.arange(n0, device=desc0.device)[None]
    if desc0.dtype == torch.uint8:
        score = 1 - d1 / (8 * desc0.shape[1])
    else:
        score = 1 - d1.square() / 4
    matches = torch.where(valid, nn01, matches)
    scores = torch.where(valid, score, scores)
    return (matches, scores) if batched else (matches[0], scores[0])


class NearestNeighbor(BaseMatcher):
    """hloc's ``nearest_neighbor`` matcher: mutual check, ratio test, distance threshold."""

    default_conf: dict[str, Any] = {
        "do_mutual_check": True,
        "ratio_threshold": None,
        "distance_threshold": None,
    }

    def _init(self, conf: dict[str, Any]) -> None:
        pass

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        matches0, scores0 = match_nearest_neighbor(
            data["descriptors0"], data["descriptors1"],
            mutual_check=self.conf["do_mutual_check"],
            ratio_threshold=self.conf["ratio_threshold"],
            distance_threshold=self.conf["distance_threshold"],
        )
        return {"matches0": matches0, "matching_scores0": scores0}
