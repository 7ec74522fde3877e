"""SEKD as an hloc-style extractor.

Defaults follow the official ``SEKD`` wrapper (confidence 0.55, NMS radius 4, 500 keypoints,
single scale, no sub-pixel). Where the release has quirks we offer both behaviours:

* ``sampling``: ``"official"`` reads the 1/4 map half a coarse cell off, exactly as the
  release; ``"centered"`` maps pixel centres onto cell centres (see ``ops.descriptors``).
* ``subpixel_score``: with ``sub_pixel``, the release re-reads the score at the refined
  position truncated to integers (``"reread"``); ``"peak"`` keeps the NMS peak's score.
* Sizes that are not multiples of 4: the release crops the bottom/right remainder (and
  loses keypoints there); we pad by edge replication and keep every pixel of the image.
* Multi-scale: coordinates are mapped back with the exact per-axis size ratio (the
  release uses the nominal factor 2^k, identical whenever the sizes divide evenly).
"""

from __future__ import annotations

from typing import Any

import cv2
import torch
import torch.nn.functional as F

from ..models.sekd import SEKDNet
from ..ops import SAMPLING_MODES, nms_mask, parabola_offsets, sample_descriptors, select_keypoints
from .base import BaseExtractor, ConfigError, ImageTooSmallError, gray_batch_of_one

MIN_SIDE = 8  # smaller images carry no usable structure at the network's 1/4 resolution




class SEKD(BaseExtractor):
    default_conf = {
        "weights": None,  # explicit checkpoint path; else the asset below is resolved
        "checkpoint": "sekd",  # asset name (third_party/<name>.toml): sekd, sekd_wo_affine, ...
        "confidence_threshold": 0.55,
        "nms_radius": 4,
        "max_keypoints": 500,  # -1 = all
        "remove_borders": 0,  # drop keypoints closer than this many pixels to the image edge
        "multi_scale": False,
        "multi_scale_min_size": 128,  # the release stops halving when a side would be <= this
        "sub_pixel": False,
        "subpixel_score": "peak",  # or "reread" (the release's quirk)
        "sampling": "official",  # or "centered"
        "channels_last": True,  # ~1.6x faster on CPU; prob differs from NCHW by ~2e-7
    }
    required_inputs = ["image"]
    detection_noise = 1.0

    def _init(self, conf: dict[str, Any]) -> None:
        if conf["sampling"] not in SAMPLING_MODES:
            raise ConfigError(f"sekd: sampling must be one of {SAMPLING_MODES}, got '{conf['sampling']}'")
        if conf["subpixel_score"] not in ("peak", "reread"):
            raise ConfigError(f"sekd: subpixel_score must be 'peak' or 'reread', got '{conf['subpixel_score']}'")
        self.net = SEKDNet()
        self.load_checkpoint(self.net)
        self.net.eval()
        if conf["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ forward
    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = gray_batch_of_one(data["image"], "sekd")
        h, w = image.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ImageTooSmallError(f"image of {w} x {h} px is too small for SEKD (minimum {MIN_SIDE} px per side)")
        with torch.inference_mode():
            kpts, scores, desc = self.extract(image[0, 0])
        return {"keypoints": kpts[None], "scores": scores[None], "descriptors": desc[None]}

    def extract(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoints ``N x 2`` (x, y), scores ``N`` and unit descriptors ``128 x N`` of a gray ``H x W`` image."""
        conf = self.conf
        kpts, scores, desc = self.detect_single_scale(gray)
        if conf["multi_scale"]:
            parts = [(kpts, scores, desc)]
            h, w = gray.shape
            factor = 2.0
            img_np = None
            while int(h / factor) > conf["multi_scale_min_size"] and int(w / factor) > conf["multi_scale_min_size"]:
                hs, ws = int(h / factor), int(w / factor)
                if img_np is None:
                    img_np = gray.float().cpu().numpy()
                # cv2 bilinear on the float image, as the release (bit-exact pyramid)
                small = torch.from_numpy(cv2.resize(img_np, (ws, hs))).to(gray)
                k, s, d = self.detect_single_scale(small)
                ratio = k.new_tensor([w / ws, h / hs])
                parts.append(((k + 0.5) * ratio - 0.5, s, d))
                factor *= 2.0
            kpts = torch.cat([p[0] for p in parts])
            scores = torch.cat([p[1] for p in parts])
            desc = torch.cat([p[2] for p in parts], dim=1)
            order = torch.sort(scores, descending=True, stable=True)[1]
            if conf["max_keypoints"] >= 0:
                order = order[: conf["max_keypoints"]]
            kpts, scores, desc = kpts[order], scores[order], desc[:, order]
        return kpts, scores, desc

    def network(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Run the network on ``H x W`` padded to multiples of 4 by edge replication.

        Returns the probability map ``Hp x Wp``, the raw descriptor map ``128 x Hp/4 x Wp/4``
        and the padded size ``(Hp, Wp)``.
        """
        h, w = gray.shape
        ph, pw = -h % 4, -w % 4
        x = gray[None, None].float()
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if self.conf["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        prob, desc = self.net(x)
        return prob[0, 0].contiguous(), desc[0].contiguous(), (h + ph, w + pw)

    def detect_single_scale(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conf = self.conf
        h, w = gray.shape
        prob, desc_map, padded_size = self.network(gray)
        valid = nms_mask(prob[None, None], conf["nms_radius"])[0, 0]
        b = conf["remove_borders"]
        # never keep the replicated padding; optionally drop a border strip of the image
        region = torch.zeros_like(valid)
        region[b : h - b, b : w - b] = True
        rows_cols, scores = select_keypoints(prob, valid & region, conf["confidence_threshold"], conf["max_keypoints"])
        pos = rows_cols.flip(-1).to(prob.dtype)  # (x, y)
        if conf["sub_pixel"] and len(rows_cols):
            offsets = parabola_offsets(prob, rows_cols).flip(-1)  # (dx, dy)
            pos = pos + offsets
            if conf["subpixel_score"] == "reread":
                # the release truncates the float64 refined position to read the score
                idx = (rows_cols.double() + offsets.flip(-1).double()).long()
                scores = prob[idx[:, 0], idx[:, 1]]
                order = torch.sort(scores, descending=True, stable=True)[1]
                rows_cols, pos, scores = rows_cols[order], pos[order], scores[order]
            # a peak on the last image row/column next to the padding may not move past it
            pos = torch.minimum(pos.clamp(min=0), pos.new_tensor([w - 1, h - 1]))
        desc = sample_descriptors(desc_map, pos, padded_size, conf["sampling"])
        return pos, scores, desc
