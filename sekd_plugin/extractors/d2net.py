"""D2-Net as an hloc-style extractor (single- or multi-scale, as hloc's ``d2net`` wrapper).

Input: ``image`` 1 x 3 x H x W RGB in [0, 1] (a gray 1-channel image is repeated to 3
channels, as D2-Net does). Preprocessing ``caffe`` (the published models): BGR, x 255,
minus the mean pixel [103.939, 116.779, 123.68], no std scaling.

Per scale (``multiscale=False``: [1]; ``True``: [0.5, 1, 2], D2-Net's ``process_multiscale``):

1. the image is resized with bilinear ``align_corners=True`` interpolation (output size
   ``floor(scale * H)``), dense features are computed and, from the second scale on, the
   previous scale's features (bilinear, ``align_corners=True``) are added;
2. hard detection (channel-wise max, 3x3 local max, edge test) minus the locations already
   detected at coarser scales ("banned", nearest-neighbour resized);
3. one Newton step of sub-cell refinement, kept if both offsets are below 0.5;
4. descriptors: bilinear samples of the (summed) dense features, L2-normalised (512-d);
   points whose 2 x 2 bilinear support leaves the map are dropped;
5. score: the dense feature value at the detection divided by (scale index + 1)
   (``score_type="soft"``: D2-Net's training-time soft detection score there instead).

Keypoint positions (``positions``):

* ``"d2net"`` (default, identical to D2-Net and hloc): the refined feature-map position p
  is mapped by D2-Net's ``upscale_positions``, ``p -> 2 p + 0.5`` per stride-2 pooling,
  i.e. ``x = 4 p + 1.5`` in the level image, then multiplied by ``W / W_level``
  (``H / H_level``) and swapped from (i, j) to (x, y). ``2 p + 0.5`` is exactly the centre
  of a 2 x 2 pooling cell in hloc's convention (integer = pixel centre), so no further
  offset is applied. It ignores the test-time 2 x 2 / stride-1 average pool, whose output
  cell p is centred on ``4 p + 3.5``: D2-Net's published positions sit 2 px up-left of the
  receptive-field centre. Kept as the default so results compare with published D2-Net /
  hloc numbers.
* ``"centered"``: the receptive-field centre ``4 p + 3.5`` and a pixel-centre aware
  rescale ``(x + 0.5) W / W_level - 0.5``.

Order: D2-Net's (scale, then raster order of channel, row, column) when all keypoints are
kept; with ``max_keypoints`` the strongest ones, by decreasing score.

``max_edge`` / ``max_sum_edges`` (D2-Net's ``extract_features.py`` uses 1600 / 2800; off by
default since hloc's ``resize_max`` preprocessing resizes already) shrink the input inside
the extractor (bilinear with antialiasing) and map the keypoints back with the size ratio.

Differences to the D2-Net code, only in degenerate cases: a scale whose image would be
smaller than 8 px is skipped (D2-Net fails), and a scale without any keypoint still passes
its features on to the next scale (D2-Net raises a NameError there).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.d2net import (
    D2NetModel,
    hard_detection,
    interpolate_features,
    load_d2net_weights,
    localization_offsets,
    preprocess,
    soft_detection_scores,
    upscale_positions,
)
from .base import BaseExtractor, ConfigError, ImageTooSmallError

MULTISCALE_SCALES = (0.5, 1.0, 2.0)
MIN_SIDE = 8  # smaller inputs give an empty feature map




class D2Net(BaseExtractor):
    default_conf = {
        "weights": None,  # explicit checkpoint path; else the asset below is resolved
        "checkpoint": "d2_tf",  # asset name: d2_tf, d2_ots, d2_tf_no_phototourism
        "multiscale": False,
        "max_keypoints": -1,  # -1 = all
        "use_relu": True,
        "edge_threshold": 5.0,
        "preprocessing": "caffe",  # or "torch"
        "positions": "d2net",  # or "centered"
        "score_type": "feature",  # or "soft"
        "max_edge": None,  # D2-Net's own script: 1600
        "max_sum_edges": None,  # D2-Net's own script: 2800
    }
    required_inputs = ["image"]
    detection_noise = 1.0

    def _init(self, conf: dict[str, Any]) -> None:
        for key, allowed in (("preprocessing", ("caffe", "torch")), ("positions", ("d2net", "centered")),
                             ("score_type", ("feature", "soft"))):
            if conf[key] not in allowed:
                raise ConfigError(f"d2net: {key} must be one of {allowed}, got {conf[key]!r}")
        if conf["max_keypoints"] == 0 or conf["max_keypoints"] < -1:
            raise ConfigError(f"d2net: max_keypoints must be -1 (all) or positive, got {conf['max_keypoints']}")
        self.net = D2NetModel(use_relu=conf["use_relu"])
        self.load_checkpoint(self.net, load_d2net_weights)
        self.net.eval()

    @property
    def scales(self) -> tuple[float, ...]:
        return MULTISCALE_SCALES if self.conf["multiscale"] else (1.0,)

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
            raise ValueError(f"d2net expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ImageTooSmallError(f"image of {w} x {h} px is too small for D2-Net (minimum {MIN_SIDE} px per side)")
        with torch.inference_mode():
            x = image.float()
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x, (hr, wr) = self._limit_size(x)
            kpts, scores, desc = self.extract(preprocess(x, self.conf["preprocessing"]))
            if (hr, wr) != (h, w):  # map back from the internally resized image
                ratio = kpts.new_tensor([w / wr, h / hr])
                kpts = (kpts + 0.5) * ratio - 0.5 if self.conf["positions"] == "centered" else kpts * ratio
        return {"keypoints": kpts[None], "scores": scores[None], "descriptors": desc[None]}

    def _limit_size(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """D2-Net's ``max_edge`` then ``max_sum_edges`` shrinking (sizes truncated, as scipy's imresize)."""
        h, w = image.shape[-2:]
        max_edge, max_sum = self.conf["max_edge"], self.conf["max_sum_edges"]
        nh, nw = h, w
        if max_edge and max(nh, nw) > max_edge:
            s = max_edge / max(nh, nw)
            nh, nw = int(nh * s), int(nw * s)
        if max_sum and nh + nw > max_sum:
            s = max_sum / (nh + nw)
            nh, nw = int(nh * s), int(nw * s)
        if (nh, nw) == (h, w):
            return image, (h, w)
        resized = F.interpolate(image, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        return resized, (nh, nw)

    def extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoints ``N x 2`` (x, y), scores ``N`` and unit descriptors ``512 x N`` of a preprocessed ``1 x 3 x H x W``."""
        conf = self.conf
        h_init, w_init = image.shape[-2:]
        previous, banned = None, None
        all_kpts, all_scores, all_desc = [], [], []
        for idx, scale in enumerate(self.scales):
            if scale == 1.0:
                level = image
            else:
                level = F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=True)
            h_level, w_level = level.shape[-2:]
            if min(h_level, w_level) < MIN_SIDE:
                continue
            features = self.net(level)[0]
            _, h, w = features.shape
            if previous is not None:
                features = features + F.interpolate(previous[None], size=(h, w), mode="bilinear", align_corners=True)[0]
            if banned is not None:
                banned = F.interpolate(banned[None, None].float(), size=(h, w))[0, 0].bool()
            pos = hard_detection(features, conf["edge_threshold"], banned, conf["use_relu"])
            detected = torch.zeros((h, w), dtype=torch.bool, device=features.device)
            detected[pos[:, 1], pos[:, 2]] = True
            banned = detected if banned is None else banned | detected

            offsets = localization_offsets(features, pos)
            keep = (offsets.abs() < 0.5).all(dim=1)
            pos, offsets = pos[keep], offsets[keep]
            fmap_pos = pos[:, 1:].to(features.dtype) + offsets  # (i, j)
            raw, ids = interpolate_features(features, fmap_pos)
            pos, fmap_pos = pos[ids], fmap_pos[ids]

            ij = self._to_image(fmap_pos, (h_init / h_level, w_init / w_level))
            if conf["score_type"] == "soft":
                scores = soft_detection_scores(features)[pos[:, 1], pos[:, 2]]
            else:
                scores = features[pos[:, 0], pos[:, 1], pos[:, 2]] / (idx + 1)
            all_kpts.append(ij.flip(-1))  # (i, j) -> (x, y)
            all_scores.append(scores)
            all_desc.append(F.normalize(raw, dim=0))
            previous = features

        if not all_kpts:
            raise ImageTooSmallError(f"image of {w_init} x {h_init} px is too small for D2-Net")
        kpts, scores, desc = torch.cat(all_kpts), torch.cat(all_scores), torch.cat(all_desc, dim=1)
        if conf["max_keypoints"] > 0:
            order = torch.sort(scores, descending=True, stable=True)[1][: conf["max_keypoints"]]
            kpts, scores, desc = kpts[order], scores[order], desc[:, order]
        return kpts.float(), scores.float(), desc.float()

    def _to_image(self, fmap_pos: torch.Tensor, factor: tuple[float, float]) -> torch.Tensor:
        """Feature-map (i, j) of a level -> (i, j) in the extractor's input image (see module doc)."""
        f = fmap_pos.new_tensor(factor)
        if self.conf["positions"] == "centered":
            return (upscale_positions(fmap_pos) + 2.0 + 0.5) * f - 0.5
        return upscale_positions(fmap_pos) * f
