"""Steps 2 (descriptor update) and 4 (detector update): one training epoch each.

Both work on pairs of warped views made on the device (:func:`data.make_views`); the two
views of a batch go through the network together (``2B`` images). A frozen copy of the
model from the start of the step anchors the part that is not being trained.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import losses, warps
from .data import Views, make_views


class FeatureNet(nn.Module):
    """``forward = SEKDNet.features`` so that DDP can wrap the training forward pass."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net.features(image)


def frozen_copy(net: nn.Module) -> nn.Module:
    import copy

    f = copy.deepcopy(net).eval()
    for p in f.parameters():
        p.requires_grad_(False)
    return f


def sample_keypoint_descriptors(desc: torch.Tensor, points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Unit descriptors ``B x N x C`` read from ``B x C x h x w`` maps at ``B x N x 2`` (x, y) pixels.

    Bilinear on the coarse map with pixel centres on cell centres, i.e. the map bilinearly
    upsampled to the image size (as the release's training code).
    """
    d = warps.sample_coarse(desc, points[:, None], image_size)  # B x C x 1 x N
    return F.normalize(d[:, :, 0].transpose(1, 2), dim=-1)


def rasterize(points: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x H x W`` long maps with 1 at the rounded keypoints (``mask`` selects them)."""
    b = points.shape[0]
    h, w = size
    r = points.round().long()
    ok = mask & warps.inside(r.float(), size)
    bi = torch.arange(b, device=points.device)[:, None].expand_as(ok)
    out = torch.zeros(b, h, w, dtype=torch.long, device=points.device)
    out[bi[ok], r[..., 1][ok], r[..., 0][ok]] = 1
    return out


def descriptor_losses(logits, desc, f_logits, views: Views, conf, preserve_weight: float) -> dict:
    """Step 2: triplet loss on keypoints visible in both views + detector preservation."""
    b = views.kp0.shape[0]
    size = views.images.shape[-2:]
    a = sample_keypoint_descriptors(desc[:b], views.kp0, size)
    p = sample_keypoint_descriptors(desc[b:], views.kp1, size)
    lc = conf.loss
    trip = losses.triplet_loss(
        a, p, views.in0 & views.in1, kind=lc.triplet, ratio_threshold=lc.ratio_threshold, margin=lc.margin
    )
    pres = preserve_weight * losses.preservation_mse(logits, f_logits)
    return {"loss": trip + pres, "triplet": trip, "detector_preserve": pres}


def detector_losses(logits, desc, f_desc, views: Views, conf, class_weights) -> dict:
    """Step 4: focal loss on the reliability keypoints, symmetric-KL repeatability, descriptor preservation."""
    b = views.kp0.shape[0]
    size = tuple(views.images.shape[-2:])
    lc = conf.loss
    t0 = rasterize(views.kp0, views.in0, size)
    t1 = rasterize(views.kp1, views.in1, size)
    focal = 0.5 * (
        losses.focal_loss(logits[:b], t0, class_weights, lc.focal_gamma)
        + losses.focal_loss(logits[b:], t1, class_weights, lc.focal_gamma)
    )
    # view-0 pixels and their correspondences in view 1
    grid = warps.correspondence_grid(views.H01, size)
    logits1_in0 = warps.sample_full(logits[b:], grid)
    valid1 = warps.sample_full(views.valid[b:].float(), grid)[:, 0] > 0.999
    both = views.valid[:b, 0] & valid1 & warps.inside(grid, size)
    rep = lc.repeatability * losses.symmetric_kl(logits[:b], logits1_in0, both)
    pres = lc.descriptor_preserve * losses.preservation_mse(F.normalize(desc, dim=1), F.normalize(f_desc, dim=1))
    return {"loss": focal + rep + pres, "focal": focal, "repeatability": rep, "descriptor_preserve": pres}


def train_epoch(
    kind: str,
    model: nn.Module,
    frozen: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    conf,
    device: torch.device,
    *,
    preserve_weight: float = 1.0,
    class_weights: tuple[float, float] = (1.0, 1.0),
    max_batches: int | None = None,
    progress: bool = True,
    desc: str = "",
    reduce=None,
) -> dict:
    """One epoch of step 2 (``kind="descriptor"``) or step 4 (``kind="detector"``).

    Returns the epoch means of every loss term (averaged over ranks with ``reduce``), the
    number of batches, keypoints per view used by the loss and the wall time.
    """
    from tqdm import tqdm

    model.train()
    crop = int(conf.data.crop_size)
    sums: dict[str, float] = {}
    n = 0
    t_start = time.time()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    bar = tqdm(total=total, desc=desc or kind, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            views = make_views(batch, crop, device)
            logits, dmap, _ = model(views.images)
            with torch.no_grad():
                f_logits, f_desc, _ = frozen.features(views.images)
            if kind == "descriptor":
                terms = descriptor_losses(logits, dmap, f_logits, views, conf, preserve_weight)
                terms["keypoints_used"] = (views.in0 & views.in1).sum(1).float().mean()
            elif kind == "detector":
                terms = detector_losses(logits, dmap, f_desc, views, conf, class_weights)
                terms["keypoints_used"] = views.in0.sum(1).float().mean()
            else:
                raise ValueError(f"unknown step kind '{kind}'")
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite {kind} loss at batch {i}: {float(loss)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
    finally:
        bar.close()
    out = {k: v / max(n, 1) for k, v in sums.items()}
    if reduce is not None:
        out = reduce(out)
    out["batches"] = n
    out["time_s"] = time.time() - t_start
    out["lr"] = float(optimizer.param_groups[0]["lr"])
    if n == 0:
        out["loss"] = math.nan
    return out
