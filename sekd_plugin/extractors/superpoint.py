"""SuperPoint (MagicLeap) as an hloc-style extractor.

Defaults are hloc's ``superpoint`` wrapper (SuperGlue's SuperPoint): NMS radius 4,
threshold 0.005 (MagicLeap's demo uses 0.015), 4 px border, every keypoint kept.

Pipeline, for a ``1 x C x H x W`` image in [0, 1] (RGB is turned gray with
0.299 / 0.587 / 0.114):

1. **Size.** ``padding="replicate"`` (default) pads the bottom/right to multiples of 8 by
   edge replication, so every pixel of the image can hold a keypoint and the padded rows /
   columns are cut from the heatmap before NMS (they can neither be detected nor suppress
   image pixels). Coordinates need no mapping: padding is only added after the last
   row/column. ``padding="crop"`` reproduces SuperGlue/hloc exactly, which run the network
   on the image as is (the poolings round down): the remainder ``H mod 8`` / ``W mod 8`` at
   the bottom/right gets no keypoints.
2. **Heatmap.** 65-way softmax over the detector logits, dustbin dropped, depth-to-space to
   full resolution (channel ``8 r + c`` of a cell is its pixel (row r, column c)).
3. **NMS.** SuperGlue's vectorised max-pool NMS (window ``2 r + 1``): local maxima are kept,
   then two rounds re-admit maxima that emerge once the neighbourhoods of the kept ones are
   zeroed. This is what hloc gives; MagicLeap's demo instead does a greedy grid NMS on the
   thresholded points, which selects nearly the same points.
4. Strict threshold ``score > keypoint_threshold``, border removal (``remove_borders`` px
   from each side of the image), the strongest ``max_keypoints`` (all with -1), sorted by
   decreasing score.
5. **Descriptors**: the coarse map is L2-normalised, bilinearly sampled at the keypoints,
   L2-normalised again.

   * ``sampling="magicleap"``: SuperGlue's ``sample_descriptors`` (MagicLeap's
     SuperGluePretrainedNetwork, hloc's default): ``g = (x - s/2 + 0.5) / (w s - s/2 - 0.5)
     * 2 - 1`` with ``align_corners=True`` (s = 8, w = coarse width). Not exactly cell
     centred: it reads pixel x at coarse coordinate ``(x - 3.5) (w - 1) / (8 w - 4.5)``.
     (MagicLeap's older demo script normalises ``x / (W/2) - 1``, slightly different again.)
   * ``sampling="centered"``: hloc's ``fix_sampling``: ``g = (x + 0.5) / (w s) * 2 - 1``
     with ``align_corners=False``, i.e. coarse coordinate ``(x + 0.5) / 8 - 0.5``: pixel
     centres land exactly on cell centres.

Output (batch of one): ``keypoints`` 1 x N x 2 float32 (x, y), integer = pixel centre;
``scores`` 1 x N float32; ``descriptors`` 1 x 256 x N float32.

Weights: ``weights`` (an explicit path) or the asset ``checkpoint`` (default
``superpoint_v1``: the published file name ``superpoint_v1.pth``, looked up in
``$SEKD_PLUGIN_WEIGHTS_DIR`` then the cache). Both MagicLeap's original bare state dict and
the recovered copy load unchanged (strict). See :data:`WEIGHTS_NOTE`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.superpoint import CELL, SuperPointNet, logits_to_heatmap, normalize_descriptors
from ..ops import sample_descriptors, select_keypoints, superglue_nms
from .base import BaseExtractor, ConfigError, ImageTooSmallError, gray_batch_of_one

WEIGHTS_NOTE = (
    "SuperPoint: public MagicLeap model (superpoint_v1); with superpoint_v1_recovered.pth the "
    "detector head (convPa/convPb weights) is fp16-rounded (recovered weights, not the original "
    "file). MagicLeap licence: non-commercial research use only, redistribution restricted."
)

SAMPLING = ("magicleap", "centered")
PADDING = ("replicate", "crop")




def sample_descriptors_magicleap(desc_map: torch.Tensor, keypoints: torch.Tensor, s: int = CELL) -> torch.Tensor:
    """SuperGlue's descriptor sampling of a ``D x h x w`` map at ``N x 2`` (x, y) -> ``D x N`` unit vectors."""
    d, h, w = desc_map.shape
    pts = keypoints.to(desc_map.dtype) - s / 2 + 0.5
    pts = pts / pts.new_tensor([w * s - s / 2 - 0.5, h * s - s / 2 - 0.5])
    grid = (pts * 2 - 1).view(1, 1, -1, 2)
    out = F.grid_sample(desc_map[None], grid, mode="bilinear", align_corners=True)
    return F.normalize(out.reshape(d, -1), p=2, dim=0)


class SuperPoint(BaseExtractor):
    default_conf = {
        "weights": None,  # explicit checkpoint path; else the asset below is resolved
        "checkpoint": "superpoint_v1",  # asset name -> superpoint_v1.pth
        "nms_radius": 4,
        "keypoint_threshold": 0.005,  # hloc / SuperGlue; MagicLeap's demo uses 0.015
        "remove_borders": 4,
        "max_keypoints": -1,  # -1 = all
        "sampling": "magicleap",  # or "centered" (hloc's fix_sampling)
        "padding": "replicate",  # or "crop" (SuperGlue/hloc: no keypoints in H mod 8, W mod 8)
    }
    required_inputs = ["image"]
    detection_noise = 2.0

    def _init(self, conf: dict[str, Any]) -> None:
        if conf["sampling"] not in SAMPLING:
            raise ConfigError(f"superpoint: sampling must be one of {SAMPLING}, got {conf['sampling']!r}")
        if conf["padding"] not in PADDING:
            raise ConfigError(f"superpoint: padding must be one of {PADDING}, got {conf['padding']!r}")
        if conf["max_keypoints"] == 0 or conf["max_keypoints"] < -1:
            raise ConfigError(f"superpoint: max_keypoints must be -1 (all) or positive, got {conf['max_keypoints']}")
        if conf["nms_radius"] < 0 or conf["remove_borders"] < 0:
            raise ConfigError("superpoint: nms_radius and remove_borders must be >= 0")
        self.net = SuperPointNet()
        self.load_checkpoint(self.net)
        self.net.eval()

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = gray_batch_of_one(data["image"], "superpoint")
        with torch.inference_mode():
            kpts, scores, desc = self.extract(image.float())
        return {"keypoints": kpts[None], "scores": scores[None], "descriptors": desc[None]}

    def network(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap ``H' x W'`` covering the usable image and unit coarse descriptors ``256 x h x w``.

        ``image`` is ``1 x 1 x H x W``. With replicate padding ``(H', W') = (H, W)``; with
        cropping it is ``(8 floor(H/8), 8 floor(W/8))``.
        """
        h, w = image.shape[-2:]
        if self.conf["padding"] == "crop":
            if h < CELL or w < CELL:
                raise ImageTooSmallError(f"image of {w} x {h} px is too small for SuperPoint (minimum {CELL} px per side)")
            h, w = h - h % CELL, w - w % CELL
            x = image  # as SuperGlue: the net sees every pixel, the pooled maps round down
        else:
            ph, pw = -h % CELL, -w % CELL
            x = F.pad(image, (0, pw, 0, ph), mode="replicate") if (ph or pw) else image
        semi, desc = self.net(x)
        heat = logits_to_heatmap(semi)[0, 0, :h, :w]
        return heat, normalize_descriptors(desc)[0]

    def extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoints ``N x 2`` (x, y), scores ``N`` and descriptors ``256 x N`` of a ``1 x 1 x H x W`` image."""
        conf = self.conf
        heat, desc_map = self.network(image)
        h, w = heat.shape
        keep = superglue_nms(heat[None, None], conf["nms_radius"])[0, 0]
        b = conf["remove_borders"]
        inside = torch.zeros_like(keep)
        inside[b : h - b, b : w - b] = True
        rows_cols, scores = select_keypoints(heat, keep & inside, conf["keypoint_threshold"], conf["max_keypoints"])
        kpts = rows_cols.flip(-1).to(heat.dtype)
        if conf["sampling"] == "magicleap":
            desc = sample_descriptors_magicleap(desc_map, kpts)
        else:
            hc, wc = desc_map.shape[-2:]
            desc = sample_descriptors(desc_map, kpts, (hc * CELL, wc * CELL), "centered")
        return kpts, scores, desc
