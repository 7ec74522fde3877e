"""Steps 2 (descriptor update) and 4 (detector update): one training epoch each.

Both work on pairs of warped views made on the device (:func:`data.make_views`); the two
views of a batch go through the network together (``2B`` images). A frozen copy of the
model from the start of the step anchors the part that is not being trained.
"""

from __future__ import annotations

import contextlib
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


def frozen_copy(net: nn.Module, bn_mode: str = "train") -> nn.Module:
    """A copy of ``net`` without gradients for the keep-unchanged terms.

    ``bn_mode="train"``: its BatchNorm layers normalise with the batch statistics, as the
    network being trained does, so both sides of the preservation MSE see the same
    normalisation (momentum 0 keeps the copy's running statistics unchanged). ``"eval"``:
    running statistics (the release; at random initialisation the two sides then differ by
    orders of magnitude, the "400x artefact").
    """
    import copy

    f = copy.deepcopy(net)
    for p in f.parameters():
        p.requires_grad_(False)
    f.train(bn_mode == "train")
    for m in f.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    f.bn_mode = bn_mode
    return f


def sample_keypoint_descriptors(desc: torch.Tensor, points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Unit descriptors ``B x N x C`` read from ``B x C x h x w`` maps at ``B x N x 2`` (x, y) pixels.

    Bilinear on the coarse map with pixel centres on cell centres, i.e. the map bilinearly
    upsampled to the image size (as the release's training code).
    """
    d = warps.sample_coarse(desc, points[:, None], image_size)  # B x C x 1 x N
    return F.normalize(d[:, :, 0].transpose(1, 2), dim=-1)


def rasterize(points: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x H x W`` long maps with 1 at the rounded ``B x N x 2`` keypoints (``mask`` selects them).

    A scatter into one spare slot for the unselected points: no boolean indexing, no host sync.
    """
    b = points.shape[0]
    h, w = size
    r = points.round().long()
    ok = mask & warps.inside(r.float(), size)
    bi = torch.arange(b, device=points.device)[:, None]
    flat = bi * (h * w) + r[..., 1].clamp(0, h - 1) * w + r[..., 0].clamp(0, w - 1)
    flat = torch.where(ok, flat, torch.full_like(flat, b * h * w))
    out = torch.zeros(b * h * w + 1, dtype=torch.long, device=points.device)
    out.scatter_(0, flat.flatten(), 1)
    return out[:-1].view(b, h, w)


def descriptor_losses(logits, desc, f_logits, views: Views, conf, preserve_weight: float) -> dict:
    """Step 2: triplet loss on keypoints visible in both views + detector preservation."""
    b = views.kp0.shape[0]
    size = views.images.shape[-2:]
    a = sample_keypoint_descriptors(desc[:b], views.kp0, size)
    p = sample_keypoint_descriptors(desc[b:], views.kp1, size)
    lc = conf.loss
    trip = losses.triplet_loss(
        a,
        p,
        views.in0 & views.in1,
        kind=lc.triplet,
        ratio_threshold=lc.ratio_threshold,
        margin=lc.margin,
        positions=(views.kp0, views.kp1) if lc.negative_radius > 0 else None,
        negative_radius=float(lc.negative_radius),
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


def _autocast(device: torch.device, amp: str):
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    scheduler=None,
    check_every: int = 50,
) -> dict:
    """One epoch of step 2 (``kind="descriptor"``) or step 4 (``kind="detector"``).

    Loss terms are accumulated on the device and read once at the end of the epoch (and a
    finiteness flag every ``check_every`` batches), so the loop does not wait on the device.
    ``scheduler`` (optional) is stepped after every batch (per-step schedules). Returns the
    epoch means of every loss term (averaged over ranks with ``reduce``), the number of
    batches, keypoints per view used by the loss and the wall time. A non-finite loss raises
    :class:`NonFiniteLoss` (on every rank, after the reduction).
    """
    from tqdm import tqdm

    model.train()
    crop = int(conf.data.crop_size)
    amp = str(conf.optim.amp)
    channels_last = bool(conf.optim.channels_last) and device.type == "cuda"
    sums: dict[str, torch.Tensor] = {}
    bad = torch.zeros((), device=device)
    n = 0
    t_start = time.time()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    bar = tqdm(total=total, desc=desc or kind, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            views = make_views(batch, crop, device)
            x = views.images.contiguous(memory_format=torch.channels_last) if channels_last else views.images
            with _autocast(device, amp):
                logits, dmap, _ = model(x)
                with torch.no_grad():
                    f_logits, f_desc, _ = frozen.features(x)
            # the losses in fp32
            logits, dmap, f_logits, f_desc = logits.float(), dmap.float(), f_logits.float(), f_desc.float()
            if kind == "descriptor":
                terms = descriptor_losses(logits, dmap, f_logits, views, conf, preserve_weight)
                terms["keypoints_used"] = (views.in0 & views.in1).sum(1).float().mean()
            elif kind == "detector":
                terms = detector_losses(logits, dmap, f_desc, views, conf, class_weights)
                terms["keypoints_used"] = views.in0.sum(1).float().mean()
            else:
                raise ValueError(f"unknown step kind '{kind}'")
            loss = terms["loss"]
            bad = bad + (~torch.isfinite(loss.detach())).float()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            for k, v in terms.items():
                v = v.detach().float()
                sums[k] = sums[k] + v if k in sums else v
            n += 1
            bar.update(1)
            if check_every and n % check_every == 0:  # one sync every check_every batches
                if float(bad) > 0:
                    raise NonFiniteLoss(f"non-finite {kind} loss within batches {n - check_every}-{n - 1}")
                bar.set_postfix(loss=f"{float(sums['loss']) / n:.4f}")
    finally:
        bar.close()
    out = {k: float(v) / max(n, 1) for k, v in sums.items()}  # the one read of the epoch
    out["non_finite"] = float(bad)
    if reduce is not None:
        out = reduce(out)
    if out.pop("non_finite", 0.0) > 0:
        raise NonFiniteLoss(f"non-finite {kind} loss in this epoch (on at least one process)")
    out["batches"] = n
    out["time_s"] = time.time() - t_start
    out["lr"] = float(optimizer.param_groups[0]["lr"])
    if n == 0:
        out["loss"] = math.nan
    return out


class NonFiniteLoss(FloatingPointError):
    """A training loss became NaN / inf (raised on every process)."""
