"""R2D2 (Revaud et al., NeurIPS 2019) as an hloc-style extractor, multi- or single-scale.

Behaviour of naver/r2d2's ``extract.py`` (``extract_multiscale`` + ``NonMaxSuppression``) for a
``1 x 3 x H x W`` RGB image in [0, 1] (gray is repeated to 3 channels), ImageNet-normalised:

1. scales ``s = 1, 1/f, 1/f^2, ...`` (``f = scale_f`` = 2^0.25) while
   ``s + 0.001 >= max(min_scale, min_size / max(H, W))``; a scale is used when also
   ``s - 0.001 <= min(max_scale, max_size / max(H, W))`` (the README's 256..1024 px, never
   upsampled). Each level is resized from the previous one (a chain of bilinear,
   ``align_corners=False`` resizes to ``round(H s) x round(W s)``), as the official loop;
2. per level: keypoints are 3x3 local maxima of the repeatability with repeatability and
   reliability both ``>= 0.7``; score = reliability x repeatability; descriptor = the unit
   128-d vector at the pixel; position ``(x W / w_level, y H / h_level)`` (the official
   mapping, integer = pixel centre at scale 1);
3. the ``top_k`` (5,000) highest scores over all levels, by decreasing score (the official
   script keeps the same set, in increasing order).

``multiscale=False`` (conf ``r2d2-ss``) runs scale 1 only. ``max_keypoints`` (a benchmark's
budget, -1 = off) caps the result further. Weights: ``r2d2_WASF_N16.pt``, licence **CC BY-NC-SA
3.0, non-commercial use only** (:data:`LICENSE_NOTE`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.r2d2 import QuadL2NetConfCFS, load_r2d2_weights, normalize_rgb
from .base import BaseExtractor, ConfigError, ImageTooSmallError

LICENSE_NOTE = "R2D2 weights (naver/r2d2): CC BY-NC-SA 3.0, non-commercial use only"
MIN_SIDE = 16  # the 2x2 convs dilated by 16 need some context; smaller images are refused


def local_maxima(reliability: torch.Tensor, repeatability: torch.Tensor, rel_thr: float, rep_thr: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """r2d2's ``NonMaxSuppression`` on ``h x w`` maps: rows and columns ``N`` (raster order)."""
    peak = repeatability == F.max_pool2d(repeatability[None, None], 3, stride=1, padding=1)[0, 0]
    keep = peak & (repeatability >= rep_thr) & (reliability >= rel_thr)
    rows, cols = keep.nonzero(as_tuple=True)
    return rows, cols


class R2D2(BaseExtractor):
    default_conf = {
        "weights": None,  # explicit checkpoint path; else the asset below is resolved
        "checkpoint": "r2d2_WASF_N16",
        "multiscale": True,
        "scale_f": 2 ** 0.25,
        "min_size": 256,
        "max_size": 1024,
        "min_scale": 0.0,
        "max_scale": 1.0,
        "reliability_thr": 0.7,
        "repeatability_thr": 0.7,
        "top_k": 5000,  # the official script's --top-k (-1 = all)
        "max_keypoints": -1,  # a benchmark's budget: the strongest, -1 = all
    }
    required_inputs = ["image"]
    detection_noise = 1.0
    licence_note = LICENSE_NOTE

    def _init(self, conf: dict[str, Any]) -> None:
        for key in ("max_keypoints", "top_k"):
            if conf[key] == 0 or conf[key] < -1:
                raise ConfigError(f"r2d2: {key} must be -1 (all) or positive, got {conf[key]}")
        if not conf["scale_f"] > 1:
            raise ConfigError(f"r2d2: scale_f must be > 1, got {conf['scale_f']}")
        if conf["max_scale"] > 1:
            raise ConfigError(f"r2d2: max_scale must be <= 1 (R2D2 never upsamples), got {conf['max_scale']}")
        self.net = QuadL2NetConfCFS()
        self.load_checkpoint(self.net, load_r2d2_weights)
        self.net.eval()

    def levels(self, h: int, w: int) -> list[tuple[float, bool]]:
        """``(s, used)`` of every level of the official loop for an ``h x w`` image."""
        c = self.conf
        if not c["multiscale"]:
            return [(1.0, True)]
        out, s = [], 1.0
        while s + 0.001 >= max(c["min_scale"], c["min_size"] / max(h, w)):
            out.append((s, s - 0.001 <= min(c["max_scale"], c["max_size"] / max(h, w))))
            s /= c["scale_f"]
        return out

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
            raise ValueError(f"r2d2 expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ImageTooSmallError(f"image of {w} x {h} px is too small for R2D2 (minimum {MIN_SIDE} px per side)")
        with torch.inference_mode():
            x = image.float().expand(-1, 3, -1, -1) if image.shape[1] == 1 else image.float()
            kpts, scores, desc = self.extract(normalize_rgb(x))
        return {"keypoints": kpts[None], "scores": scores[None], "descriptors": desc[None]}

    def extract(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoints ``N x 2`` (x, y), scores ``N`` and unit descriptors ``128 x N`` of a normalised image."""
        c = self.conf
        h, w = img.shape[-2:]
        xs, ys, qs, ds = [], [], [], []
        levels = self.levels(h, w)
        for i, (s, used) in enumerate(levels):
            if used and min(img.shape[-2:]) >= MIN_SIDE:
                nh, nw = img.shape[-2:]
                desc, rel, rep = self.net(img)
                rows, cols = local_maxima(rel[0, 0], rep[0, 0], c["reliability_thr"], c["repeatability_thr"])
                xs.append(cols.float() * w / nw)
                ys.append(rows.float() * h / nh)
                qs.append(rel[0, 0, rows, cols] * rep[0, 0, rows, cols])
                ds.append(desc[0][:, rows, cols])
            if i + 1 < len(levels):  # the next level is resized from this one, as the official loop
                s_next = levels[i + 1][0]
                img = F.interpolate(img, (round(h * s_next), round(w * s_next)), mode="bilinear", align_corners=False)
        if not xs:
            raise ImageTooSmallError(f"image of {w} x {h} px: no R2D2 scale between min_size and max_size")
        kpts = torch.stack([torch.cat(xs), torch.cat(ys)], dim=1)
        scores, desc = torch.cat(qs), torch.cat(ds, dim=1)
        caps = [k for k in (c["top_k"], c["max_keypoints"]) if k > 0]
        order = torch.sort(scores, descending=True, stable=True)[1]
        if caps:
            order = order[: min(caps)]
        return kpts[order], scores[order], desc[:, order]
