"""ALIKE (Zhao et al., IEEE TMM 2022) as an hloc-style extractor, sizes t / s / n / l.

Behaviour of the official ``ALike.forward`` with its ``DKD`` detector (Shiaoming/ALIKE),
for a ``1 x 3 x H x W`` RGB image in [0, 1] (gray is repeated to 3 channels):

1. the image is zero-padded at the bottom/right to multiples of 32; the score and
   descriptor maps are cut back to ``H x W`` and the descriptors L2-normalised per pixel;
2. SuperGlue's max-pool NMS with radius 2 on the score map; the first 3 and last 2
   rows/columns are zeroed;
3. selection: ``top_k > 0`` keeps the ``top_k`` highest NMS scores (``torch.topk`` order);
   otherwise every NMS score ``> scores_th`` (all ``> mean score`` when none passes or when
   ``scores_th <= 0``) in raster order, and above ``n_limit`` the ``n_limit`` strongest;
4. ``sub_pixel``: a soft-argmax (temperature 0.1) over the 5x5 score patch around each
   keypoint shifts it; the score is the bilinear sample of the score map at the (shifted)
   position and the descriptor the bilinear sample of the normalised descriptor map
   (``align_corners=True``), L2-normalised; without ``sub_pixel`` the descriptor is read at
   the pixel (the official round trip through [-1, 1] coordinates and truncation is kept, so a
   keypoint whose coordinate comes back as 18.999998 reads column 18, as the official code);
5. ``max_keypoints`` (a benchmark's budget, -1 = off) then keeps the strongest by score,
   in decreasing order; otherwise the official order is kept.

Keypoints are (x, y) in pixels, integer = pixel centre (the official ``(k + 1) / 2 (W - 1)``).
Defaults: the official threshold run (``top_k`` -1, ``scores_th`` 0.2, ``n_limit`` 5000),
sub-pixel on. Weights: the official ``alike-{t,s,n,l}.pth`` (BSD 3-Clause), asset names
``alike-t`` ... ``alike-l``; the ``model`` key picks the size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.alike import ALIKE_CONFIGS, STRIDE, ALNet, load_alike_weights
from ..ops import superglue_nms
from .base import BaseExtractor, ConfigError, ImageTooSmallError

RADIUS = 2  # detection radius of every published size
TEMPERATURE = 0.1  # soft-argmax temperature of the official DKD


def _normalised(xy: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Pixel (x, y) ``N x 2`` -> [-1, 1] as DKD (``align_corners=True`` convention)."""
    return xy / xy.new_tensor([w - 1, h - 1]) * 2 - 1


def select_indices(nms_scores: torch.Tensor, scores: torch.Tensor, top_k: int, scores_th: float,
                   n_limit: int) -> torch.Tensor:
    """DKD's keypoint selection on flattened ``H * W`` maps -> indices ``N`` (long)."""
    if top_k > 0:
        return torch.topk(nms_scores, top_k).indices
    mask = nms_scores > scores_th if scores_th > 0 else None
    if mask is None or not bool(mask.any()):
        mask = nms_scores > scores.mean()
    indices = mask.nonzero(as_tuple=False)[:, 0]
    if len(indices) > n_limit:
        indices = indices[scores[indices].sort(descending=True)[1][:n_limit]]
    return indices


def soft_argmax_offsets(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        radius: int = RADIUS) -> torch.Tensor:
    """DKD's sub-pixel shift ``N x 2`` (dx, dy) from the ``(2r+1)^2`` patches (zero padded) of an
    ``H x W`` score map around the keypoints at ``rows``/``cols``."""
    k = 2 * radius + 1
    padded = F.pad(scores, (radius, radius, radius, radius))
    d = torch.arange(k, device=scores.device)
    patch = padded[(rows[:, None, None] + d[None, :, None]), (cols[:, None, None] + d[None, None, :])]
    patch = patch.reshape(len(rows), k * k)  # row-major, as nn.Unfold
    offs = torch.linspace(-radius, radius, k, dtype=scores.dtype, device=scores.device)
    grid = torch.stack([offs.repeat(k), offs.repeat_interleave(k)], dim=1)  # (dx, dy) per patch cell
    x_exp = ((patch - patch.max(dim=1).values[:, None]) / TEMPERATURE).exp()
    return x_exp @ grid / x_exp.sum(dim=1)[:, None]


def detect(scores_map: torch.Tensor, desc_map: torch.Tensor, conf: dict[str, Any]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DKD on an ``H x W`` score map and unit ``D x H x W`` descriptors -> keypoints ``N x 2``
    (x, y px), scores ``N`` and unit descriptors ``D x N``."""
    h, w = scores_map.shape
    nms = torch.where(superglue_nms(scores_map[None, None], RADIUS)[0, 0], scores_map, torch.zeros_like(scores_map))
    nms[: RADIUS + 1] = 0
    nms[:, : RADIUS + 1] = 0
    nms[h - RADIUS:] = 0
    nms[:, w - RADIUS:] = 0
    idx = select_indices(nms.reshape(-1), scores_map.reshape(-1), conf["top_k"], conf["scores_th"], conf["n_limit"])
    rows, cols = idx // w, idx % w
    xy = torch.stack([cols, rows], dim=1)
    if conf["sub_pixel"]:
        xy = xy + soft_argmax_offsets(scores_map, rows, cols)
    norm = _normalised(xy, w, h)  # long / tensor -> float, as DKD
    grid = norm.view(1, 1, -1, 2)
    scores = F.grid_sample(scores_map[None, None], grid, mode="bilinear", align_corners=True)[0, 0, 0]
    if conf["sub_pixel"]:
        desc = F.grid_sample(desc_map[None], grid, mode="bilinear", align_corners=True)[0, :, 0]
    else:
        pix = ((norm + 1) / 2 * norm.new_tensor([w - 1, h - 1])).long()  # the official truncation
        desc = desc_map[:, pix[:, 1], pix[:, 0]]
    kpts = (norm + 1) / 2 * norm.new_tensor([w - 1, h - 1])
    return kpts, scores, F.normalize(desc, p=2, dim=0)


class ALIKE(BaseExtractor):
    default_conf = {
        "model": "alike-n",  # alike-t | alike-s | alike-n | alike-l
        "weights": None,  # explicit checkpoint path; else the asset named by "checkpoint"
        "checkpoint": None,  # asset name; None = the "model" name (alike-n -> alike-n.pth)
        "top_k": -1,  # > 0: the official top-k mode (ignores scores_th)
        "scores_th": 0.2,
        "n_limit": 5000,
        "sub_pixel": True,
        "max_keypoints": -1,  # a benchmark's budget: the strongest after detection, -1 = all
    }
    required_inputs = ["image"]
    detection_noise = 1.0

    @classmethod
    def checkpoint_name(cls, conf: dict[str, Any]) -> str:
        return conf.get("checkpoint") or conf["model"]  # the asset is named after the size

    def _init(self, conf: dict[str, Any]) -> None:
        if conf["model"] not in ALIKE_CONFIGS:
            raise ConfigError(f"alike: model must be one of {sorted(ALIKE_CONFIGS)}, got {conf['model']!r}")
        if conf["max_keypoints"] == 0 or conf["max_keypoints"] < -1:
            raise ConfigError(f"alike: max_keypoints must be -1 (all) or positive, got {conf['max_keypoints']}")
        if conf["n_limit"] < 1:
            raise ConfigError(f"alike: n_limit must be positive, got {conf['n_limit']}")
        self.net = ALNet(**ALIKE_CONFIGS[conf["model"]])
        self.load_checkpoint(self.net, lambda net, path, map_location: load_alike_weights(
            net, path, conf["model"], map_location))
        self.net.eval()

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score map ``H x W`` and unit descriptor map ``D x H x W`` of a ``1 x 3 x H x W`` image."""
        h, w = image.shape[-2:]
        ph, pw = -h % STRIDE, -w % STRIDE
        x = F.pad(image, (0, pw, 0, ph)) if (ph or pw) else image  # zeros, as the official code
        scores, desc = self.net(x)
        return scores[0, 0, :h, :w], F.normalize(desc[0, :, :h, :w], p=2, dim=0)

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
            raise ValueError(f"alike expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) <= 2 * (RADIUS + 1):
            raise ImageTooSmallError(f"image of {w} x {h} px is too small for ALIKE (more than {2 * RADIUS + 2} "
                                     "px per side needed)")
        with torch.inference_mode():
            x = image.float().expand(-1, 3, -1, -1) if image.shape[1] == 1 else image.float()
            kpts, scores, desc = detect(*self.dense(x), self.conf)
            if self.conf["max_keypoints"] > 0:
                order = torch.sort(scores, descending=True, stable=True)[1][: self.conf["max_keypoints"]]
                kpts, scores, desc = kpts[order], scores[order], desc[:, order]
        return {"keypoints": kpts[None].float(), "scores": scores[None].float(), "descriptors": desc[None].float()}
