"""Step 1: keypoints from the detector with affine adaptation (the detector's probability
averaged over random warps of the image, then the strongest NMS maxima)."""

from __future__ import annotations

import torch

from ...ops.gray import rgb_to_gray
from .. import warps
from .network import detector_logits
from .selection import chunks, pad4, references, select_labels


@torch.no_grad()
def detector_score(net, image: torch.Tensor, conf, gen: torch.Generator) -> torch.Tensor:
    """Keypoint probability of a ``1 x C x H x W`` image (C = 3 RGB or 1 gray) averaged with its references.

    The image and its ``detect.num_refs`` references go through the network together
    (chunks of ``detect.ref_chunk``). Every reference's probability is warped back and
    averaged only where it is valid (inside the warped image, outside ``detect.ref_border``).
    Returns the ``H' x W'`` map of the padded size.
    """
    image, valid = pad4(image)
    size = image.shape[-2:]
    num = int(conf.detect.num_refs)
    gray = rgb_to_gray(image)
    if num == 0:
        return torch.softmax(detector_logits(net, gray), dim=1)[0, 1]
    refs, ref_valid, _, Hinv = references(image, valid, num, conf, gen)
    b = int(conf.detect.ref_border)
    if b > 0:
        ref_valid[..., :b, :] = False
        ref_valid[..., -b:, :] = False
        ref_valid[..., :, :b] = False
        ref_valid[..., :, -b:] = False
    batch = torch.cat([gray, refs])  # the image and its references: one forward
    total = torch.zeros(1, 1, *size, device=image.device)
    count = torch.zeros_like(total)
    for s, e in chunks(num + 1, conf.detect.ref_chunk):
        p = torch.softmax(detector_logits(net, batch[s:e]).float(), dim=1)[:, 1:]
        if s == 0:  # the image itself: weight 1 everywhere
            total += p[:1]
            count += 1.0
            p, lo = p[1:], 0
        else:
            lo = s - 1
        hi = lo + p.shape[0]
        if p.shape[0]:
            m = ref_valid[lo:hi].float()
            total += warps.warp_images(p * m, Hinv[lo:hi], size).sum(0, keepdim=True)
            count += warps.warp_images(m, Hinv[lo:hi], size).sum(0, keepdim=True)
    return (total / count)[0, 0]


def detect_keypoints(net, image: torch.Tensor, conf, gen: torch.Generator):
    """Step-1 labels of a ``1 x C x H x W`` image: ``(yx N x 2, scores N, stats 6)``."""
    h, w = image.shape[-2:]
    score = detector_score(net, image, conf, gen)
    d = conf.detect
    return select_labels(score, (h, w), d.nms_radius, d.border, d.threshold, d.budget_area, d.max_keypoints)


def random_keypoints(size: tuple[int, int], num: int, border: int, gen: torch.Generator):
    """``num`` distinct random pixels (fewer if the image is tiny), score 0.5."""
    h, w = size
    hh, ww = max(h - 2 * border, 1), max(w - 2 * border, 1)
    num = min(num, hh * ww)
    idx = torch.randperm(hh * ww, generator=gen)[:num]
    yx = torch.stack([idx // ww + border, idx % ww + border], dim=-1)
    yx[:, 0].clamp_(0, h - 1)
    yx[:, 1].clamp_(0, w - 1)
    return yx, torch.full((num,), 0.5)
