"""Nearest-neighbour descriptor matching (mutual check, ratio test, distance threshold).

Float descriptors are compared by L2 distance of unit vectors (``sqrt(2 - 2 cos)``, as
hloc's ``nearest_neighbor`` matcher); binary descriptors (uint8, packed bits) by Hamming
distance. Everything is batched tensor code; no Python loop over keypoints.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import BaseMatcher
from .blocked_nn import nearest_neighbors_blocked


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


def _similarity(desc0: torch.Tensor, desc1: torch.Tensor, equation: str) -> torch.Tensor:
    """Similarity (larger = closer) for ``einsum(equation)``: the dot product for float
    descriptors, minus the Hamming distance in bits for uint8 ones."""
    if desc0.dtype == torch.uint8:
        b0, b1 = _unpack_bits_any(desc0), _unpack_bits_any(desc1)
        dot = torch.einsum(equation, b0, b1)
        ones0 = b0.sum(-2)  # ... x N0
        ones1 = b1.sum(-2)  # ... x N1
        return 2 * dot - ones0[..., :, None] - ones1[..., None, :]
    return torch.einsum(equation, desc0.float(), desc1.float())


def _unpack_bits_any(desc: torch.Tensor) -> torch.Tensor:
    """``... x D x N`` uint8 -> ``... x 8D x N`` float {0, 1}."""
    bits = torch.arange(8, device=desc.device, dtype=torch.uint8)
    unpacked = (desc[..., :, None, :] >> bits[:, None]) & 1
    return unpacked.flatten(-3, -2).float()


def _decide(
    s1: torch.Tensor,
    nn01: torch.Tensor,
    s2: torch.Tensor | None,
    mutual: torch.Tensor | None,
    binary: bool,
    bits: int,
    ratio_threshold: float | None,
    distance_threshold: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches and scores ``[B x] N0`` from the best similarity ``s1`` (``-inf`` = no column), its
    column ``nn01``, the second best ``s2`` (ratio test) and the mutual flags.

    Distances are only computed for the selected values: ``sqrt(2 - 2 s)`` for float, ``-s``
    bits for binary.
    """

    def distance(s: torch.Tensor) -> torch.Tensor:
        return -s if binary else (2 - 2 * s).clamp(min=0).sqrt()

    d1 = distance(s1)
    valid = torch.isfinite(s1)
    if s2 is not None:
        valid &= d1 < ratio_threshold * distance(s2)
    if distance_threshold is not None:
        valid &= d1 < distance_threshold
    if mutual is not None:
        valid &= mutual
    score = 1 - d1 / bits if binary else 1 - d1.square() / 4
    matches = torch.where(valid, nn01, torch.full_like(nn01, -1))
    return matches, torch.where(valid, score, torch.zeros_like(score))


def _match_similarity(
    sim: torch.Tensor,
    binary: bool,
    bits: int,
    mutual_check: bool,
    ratio_threshold: float | None,
    distance_threshold: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-neighbour decisions from a full similarity ``B x N0 x N1`` (``-inf`` = no column).

    The full-matrix path (binary descriptors, and the reference of the blocked float path):
    one top-k or max over the rows, one max over the columns; ties go to the lowest index.
    Returns ``matches0`` ``B x N0`` (long, -1 unmatched) and ``scores0`` ``B x N0``.
    """
    n0, n1 = sim.shape[-2:]
    k = 2 if ratio_threshold is not None and n1 > 1 else 1
    s2 = None
    if k == 2:
        top = sim.topk(2, dim=-1, largest=True)
        s1, nn01, s2 = top.values[..., 0], top.indices[..., 0], top.values[..., 1]
    else:  # a plain maximum is cheaper than top-1
        s1, nn01 = sim.max(dim=-1)
    mutual = None
    if mutual_check:
        # B x N1; a reduction over the last axis of a transposed copy is ~2x faster on CPU
        # than one over the middle axis (measured on 7,000 x 7,000)
        nn10 = sim.transpose(-1, -2).contiguous().max(dim=-1).indices
        mutual = torch.gather(nn10, -1, nn01) == torch.arange(n0, device=sim.device)
    return _decide(s1, nn01, s2, mutual, binary, bits, ratio_threshold, distance_threshold)


def _blocked(desc0: torch.Tensor, ratio_threshold: float | None) -> bool:
    """Whether the blocked path serves these descriptors: float ones on a CPU (on a GPU the full
    matrix is cheap, and a product's bits may depend on its shape there). A ratio above 1 keeps
    the full path: it can accept a row whose best similarity is tied, and ``topk``, not the
    first index, then picks the column."""
    return desc0.dtype != torch.uint8 and desc0.device.type == "cpu" and (ratio_threshold or 0) <= 1


def _match_float_pair(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    mutual_check: bool,
    ratio_threshold: float | None,
    distance_threshold: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``N0`` matches and scores of ``D x N0`` against ``D x N1`` float descriptors (both non-empty)
    by blocks of rows (:mod:`.blocked_nn`): the decisions of the full-matrix path, faster."""
    k = 2 if ratio_threshold is not None and desc1.shape[-1] > 1 else 1
    s1, nn01, s2, mutual = nearest_neighbors_blocked(desc0, desc1, k, mutual_check)
    return _decide(s1, nn01, s2, mutual, False, 0, ratio_threshold, distance_threshold)


def pad_descriptors(descs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``D x N_i`` descriptors into ``P x D x max(N_i)`` (zero padded) and counts ``P``."""
    if not descs:
        raise ValueError("pad_descriptors needs at least one descriptor array")
    counts = torch.tensor([d.shape[-1] for d in descs], device=descs[0].device)
    padded = torch.nn.utils.rnn.pad_sequence([d.t() for d in descs], batch_first=True)  # P x M x D
    return padded.transpose(1, 2), counts


def match_one_to_many(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    counts1: torch.Tensor | None = None,
    mutual_check: bool = True,
    ratio_threshold: float | None = None,
    distance_threshold: float | None = None,
    full_matrix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match one image against all its partners.

    Same decisions and scores as :func:`match_nearest_neighbor` on each pair ``(desc0,
    desc1[p, :, :counts1[p]])`` (ties in distance are broken on the similarity). Float
    descriptors on a CPU go partner by partner through the blocked path (faster there than one
    ``P x N0 x M`` product, see :mod:`.blocked_nn`); otherwise one product serves all partners.

    Args:
        desc0: ``D x N0`` descriptors of the image (float unit vectors, or uint8 packed bits).
        desc1: ``P x D x M`` descriptors of its ``P`` partners, zero padded to ``M`` columns
            (see :func:`pad_descriptors`).
        counts1: ``P`` number of valid columns of every partner; None = all ``M``.
        mutual_check, ratio_threshold, distance_threshold, full_matrix: as
            :func:`match_nearest_neighbor` (``full_matrix``: one ``P x N0 x M`` product).
    Returns:
        ``matches0`` ``P x N0`` (long, index into partner p or -1) and ``scores0`` ``P x N0``.
    """
    p, n0, m = desc1.shape[0], desc0.shape[-1], desc1.shape[-1]
    if n0 == 0 or m == 0:
        return (torch.full((p, n0), -1, dtype=torch.long, device=desc0.device),
                torch.zeros((p, n0), device=desc0.device))
    if not full_matrix and _blocked(desc0, ratio_threshold):  # partner by partner: the same code as one pair
        counts = [m] * p if counts1 is None else counts1.tolist()
        out = [match_nearest_neighbor(desc0, desc1[i, :, :c].contiguous(), mutual_check, ratio_threshold,
                                      distance_threshold) for i, c in enumerate(counts)]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
    return _match_one_to_many_full(desc0, desc1, counts1, mutual_check, ratio_threshold, distance_threshold)


def _match_one_to_many_full(desc0, desc1, counts1=None, mutual_check=True, ratio_threshold=None,
                            distance_threshold=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`match_one_to_many` through one full similarity ``P x N0 x M`` (binary descriptors;
    the grouped float path before the blocked one, kept as the speed benchmark's reference)."""
    m = desc1.shape[-1]
    sim = _similarity(desc0, desc1, "dn,pdm->pnm")
    if counts1 is not None:
        pad = torch.arange(m, device=desc1.device)[None] >= counts1.to(desc1.device)[:, None]  # P x M
        sim = sim.masked_fill(pad[:, None, :], float("-inf"))
    return _match_similarity(sim, desc0.dtype == torch.uint8, 8 * desc0.shape[0],
                             mutual_check, ratio_threshold, distance_threshold)


def match_nearest_neighbor(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    mutual_check: bool = True,
    ratio_threshold: float | None = None,
    distance_threshold: float | None = None,
    full_matrix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every descriptor of image 0 to its nearest neighbour in image 1.

    Args:
        desc0: ``D x N0`` or ``B x D x N0`` (float unit vectors, or uint8 packed bits).
        desc1: ``D x N1`` or ``B x D x N1``.
        mutual_check: keep only mutual nearest neighbours.
        ratio_threshold: keep a match when ``d1 < ratio * d2`` (Lowe's ratio test).
        distance_threshold: keep a match when its distance is below this value
            (L2 for float, bits for binary).
        full_matrix: float descriptors through one full ``N0 x N1`` similarity matrix, as
            binary ones and every input off the CPU (the path before the blocked one, kept as
            its reference: the same matches, slower on a CPU; see :mod:`.blocked_nn`).
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
    if full_matrix or not _blocked(desc0, ratio_threshold):
        sim = _similarity(desc0, desc1, "bdn,bdm->bnm")
        nn01, score = _match_similarity(sim, desc0.dtype == torch.uint8, 8 * desc0.shape[1],
                                        mutual_check, ratio_threshold, distance_threshold)
    else:
        out = [_match_float_pair(d0, d1, mutual_check, ratio_threshold, distance_threshold)
               for d0, d1 in zip(desc0, desc1)]
        nn01, score = torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
    valid = nn01 >= 0
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

    def match_one_to_many(self, desc0: torch.Tensor, desc1: torch.Tensor,
                          counts1: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One image (``D x N0``) against its ``P`` partners (``P x D x M`` padded, ``counts1`` P)
        in one matrix product: ``matches0`` / ``matching_scores0`` ``P x N0``, equal per pair to
        :meth:`forward` (see :func:`match_one_to_many`)."""
        matches0, scores0 = match_one_to_many(
            desc0, desc1, counts1,
            mutual_check=self.conf["do_mutual_check"],
            ratio_threshold=self.conf["ratio_threshold"],
            distance_threshold=self.conf["distance_threshold"],
        )
        return {"matches0": matches0, "matching_scores0": scores0}
