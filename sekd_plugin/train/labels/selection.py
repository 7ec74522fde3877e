"""What both label steps share: padding to multiples of 4, the per-image label budget, the
selection of the strongest NMS maxima, and the random references of affine adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...ops import nms_mask
from .. import warps


def pad4(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``1 x C x H x W`` to multiples of 4; returns the image and its ``1 x 1`` content mask."""
    h, w = image.shape[-2:]
    ph, pw = -h % 4, -w % 4
    valid = torch.ones_like(image[:, :1])
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        valid = F.pad(valid, (0, pw, 0, ph))
    return image, valid


def budget(size: tuple[int, int], area: float, max_kp: int) -> int:
    """Label budget of an image: one per ``area`` px^2 (0 = unlimited), at most ``max_kp``."""
    h, w = size
    if area <= 0:
        return int(max_kp)
    return int(min(max_kp, max(1, round(h * w / area))))


def select_labels(
    score: torch.Tensor, size: tuple[int, int], radius: int, border: int, threshold: float, area: float, max_kp: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strongest NMS maxima of an ``H' x W'`` score map within the ``size = (H, W)`` image.

    Returns ``(yx N x 2 long, scores N, stats 6)`` with ``stats = [maxima, labels, p10, p50,
    p90 of the maxima, maxima above the threshold]`` (on the score's device; NaN quantiles
    when there is no maximum).
    """
    h, w = size
    region = torch.zeros_like(score, dtype=torch.bool)
    region[border : h - border, border : w - border] = True
    mask = nms_mask(score[None, None], radius)[0, 0] & region
    flat = score.flatten()
    idx = torch.nonzero(mask.flatten(), as_tuple=True)[0]
    vals = flat[idx]
    order = torch.sort(vals, descending=True, stable=True)[1]
    above = vals[order] > threshold
    n_above = above.sum()
    k = budget(size, area, max_kp)
    keep = order[:k][above[:k]]
    idx, sc = idx[keep], vals[keep]
    if vals.numel():
        q = torch.quantile(vals.float(), vals.new_tensor([0.1, 0.5, 0.9], dtype=torch.float32))
    else:
        q = torch.full((3,), float("nan"), device=score.device)
    counts = torch.stack([vals.new_tensor(vals.numel(), dtype=torch.float32),
                          vals.new_tensor(idx.numel(), dtype=torch.float32)])
    stats = torch.cat([counts, q, n_above.float()[None]])
    ww = score.shape[-1]
    return torch.stack([idx // ww, idx % ww], dim=-1), sc, stats


def chunks(n: int, size: int):
    size = max(1, size)
    for s in range(0, n, size):
        yield s, min(n, s + size)


def references(image: torch.Tensor, valid: torch.Tensor, num: int, conf, gen: torch.Generator):
    """``num`` colour-jittered random affine warps of a padded ``1 x C x H x W`` image (same size).

    Returns gray ``refs num x 1 x H x W``, their content masks, ``H`` and ``H^-1``
    (``num x 3 x 3``; inverted on the host in float64, no device sync).
    """
    size = image.shape[-2:]
    H = warps.random_warp_from_conf(num, size, size, conf.ref_warp, gen)
    Hinv = torch.linalg.inv(H.double()).float()
    jit = warps.random_jitter(num, conf.ref_warp, gen)
    H, Hinv = H.to(image.device), Hinv.to(image.device)
    gray = warps.jitter_to_gray(image.expand(num, -1, -1, -1), jit, valid.expand(num, -1, -1, -1))
    refs = warps.warp_images(gray, H, size)
    ref_valid = warps.warp_valid_mask(H, size, size, valid.expand(num, -1, -1, -1))
    return refs, ref_valid, H, Hinv
