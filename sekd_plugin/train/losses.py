"""Losses of the self-evolving steps, batched with masks (no per-keypoint loops).

* :func:`triplet_loss`: HardNet-style triplet loss with the hardest negative in both
  directions, "ratio-test" form of the SEKD release (only triplets whose positive/negative
  distance ratio exceeds a threshold contribute ``pos - neg``) or the usual margin form.
* :func:`focal_loss`: 2-class focal loss on detector logits with class weights.
* :func:`symmetric_kl`: detector repeatability between corresponding pixels of two views.
* :func:`preservation_mse`: keep outputs close to a frozen copy's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BIG = 10.0  # added to excluded distances (unit descriptors are at most 2 apart)


def descriptor_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``B x N x M`` Euclidean distances between unit descriptors ``B x N x C`` and ``B x M x C``."""
    sim = a @ b.transpose(-1, -2)
    return torch.sqrt((2.0 - 2.0 * sim).clamp(min=0.0) + 1e-8)


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "ratio_test",
    ratio_threshold: float = 0.85,
    margin: float = 1.0,
    min_negative: float = 0.008,
    positions: tuple[torch.Tensor, torch.Tensor] | None = None,
    negative_radius: float = 0.0,
) -> torch.Tensor:
    """Mean over the batch of the per-sample triplet loss.

    Args:
        anchor, positive: ``B x N x C`` unit descriptors; ``anchor[b, i]`` and
            ``positive[b, i]`` describe the same point in the two views.
        mask: ``B x N`` bool, the valid pairs (padding is excluded); samples with fewer than
            two valid pairs contribute 0 (they still count in the batch mean, as the release).
        kind: ``"ratio_test"``: triplets with ``pos / neg > ratio_threshold`` (gradient-free
            selection) contribute ``pos - neg``, averaged over the selected ones;
            ``"margin"``: ``max(0, margin + pos - neg)`` averaged over the active ones.
        min_negative: negatives closer than this are treated as duplicates of the anchor and
            never mined.
        positions, negative_radius: ``(B x N x 2, B x N x 2)`` pixel positions of the
            anchors (view 0) and positives (view 1); with ``negative_radius > 0`` a negative
            lying within that radius of the true match (in the view it is taken from) is not
            mined (spatial exclusion: neighbours of a keypoint are not distinct points).
    """
    b, n, _ = anchor.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=anchor.device)
    dist = descriptor_distances(anchor, positive)
    pos = torch.diagonal(dist, dim1=-2, dim2=-1)
    pair_ok = mask[:, :, None] & mask[:, None, :]
    eye = torch.eye(n, dtype=torch.bool, device=anchor.device)[None]
    excluded = ~pair_ok | eye | (dist < min_negative)
    if positions is not None and negative_radius > 0:
        p0, p1 = positions
        # row i, column j: positive j as negative of anchor i (compare in view 1) and anchor
        # i as negative of positive j (compare in view 0)
        near1 = torch.cdist(p1.float(), p1.float()) < negative_radius
        near0 = torch.cdist(p0.float(), p0.float()) < negative_radius
        excluded_rows = excluded | near1
        excluded_cols = excluded | near0
    else:
        excluded_rows = excluded_cols = excluded
    # hardest negative for anchor i among the positives, and for positive i among the anchors
    neg_rows = (dist + BIG * excluded_rows.to(dist.dtype)).min(dim=2).values
    neg_cols = (dist + BIG * excluded_cols.to(dist.dtype)).min(dim=1).values
    neg = torch.minimum(neg_rows, neg_cols)
    valid = mask & (neg < BIG)  # at least one negative exists
    if kind == "ratio_test":
        sel = valid & ((pos.detach() / neg.detach()) > ratio_threshold)
        per = ((pos - neg) * sel).sum(1) / (sel.sum(1) + 1e-8)
    elif kind == "margin":
        hinge = F.relu(margin + pos - neg) * valid
        per = hinge.sum(1) / ((hinge.detach() > 0).sum(1) + 1e-8)
    else:
        raise ValueError(f"unknown triplet loss kind '{kind}'")
    return per.sum() / b


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: tuple[float, float] | torch.Tensor = (1.0, 1.0),
    gamma: float = 1.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Focal loss of ``B x 2 x H x W`` logits against ``B x H x W`` {0, 1} targets.

    ``-w_y (1 - p_y)^gamma log p_y`` per pixel, normalised as the release (mean over pixels
    and the two classes, i.e. half the per-pixel mean).
    """
    prob = torch.softmax(logits, dim=1).clamp(eps, 1.0 - eps)
    t = target.long().unsqueeze(1)
    p_t = prob.gather(1, t).squeeze(1)
    w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)[target.long()]
    loss = -w * (1.0 - p_t) ** gamma * torch.log(p_t)
    return loss.mean() / 2.0


def symmetric_kl(
    logits0: torch.Tensor,
    logits1: torch.Tensor,
    valid: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Detector repeatability: symmetric KL between two views' keypoint distributions.

    Args:
        logits0, logits1: ``B x 2 x H x W`` logits at corresponding pixels (``logits1``
            already resampled into view 0).
        valid: ``B x H x W`` bool, pixels whose correspondence lies in both views.
    Returns:
        the batch mean of ``0.5 * mean(w * (KL(p1||p0) + KL(p0||p1)))`` over valid pixels and
        the two classes, ``w`` = mean keypoint probability of the two views (no gradient).
    """
    p0, p1 = torch.softmax(logits0, dim=1), torch.softmax(logits1, dim=1)
    lp0, lp1 = torch.log(p0 + eps), torch.log(p1 + eps)
    kl = p1 * (torch.log(p1 + eps) - lp0) + p0 * (torch.log(p0 + eps) - lp1)  # B x 2 x H x W
    weight = 0.5 * (p0[:, 1:] + p1[:, 1:]).detach()
    per_pixel = (weight * kl).sum(1)  # B x H x W
    v = valid.to(per_pixel.dtype)
    per = 0.5 * (per_pixel * v).sum((-2, -1)) / (2.0 * v.sum((-2, -1))).clamp(min=1.0)
    return per.mean()


def preservation_mse(current: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
    """``0.5 * (MSE(view 0) + MSE(view 1))`` for ``2B x ...`` outputs stacked as [views 0; views 1]."""
    b = current.shape[0] // 2
    return 0.5 * (F.mse_loss(current[:b], frozen[:b]) + F.mse_loss(current[b:], frozen[b:]))
