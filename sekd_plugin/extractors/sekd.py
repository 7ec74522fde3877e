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

Backends (``backend``): ``"torch"`` (default, any device), ``"onnxruntime"`` (CPU,
``pip install -e ".[onnx]"``; the network is exported once per checkpoint fingerprint into the
cache, see :mod:`sekd_plugin.models.onnx_runtime`) or ``"openvino"`` (CPU, ``".[openvino]"``,
the same export). ``precision: "int8"`` runs the statically quantised network on either CPU
runtime (:mod:`sekd_plugin.models.quantize`). Only the network changes; NMS, selection and
sampling are the same batched torch functions for all.

Batches: :meth:`SEKD.extract_batch` takes ``B`` images of one size and runs one network pass
and one pass of every post-processing step over the whole batch (no loop over images); each
image gets exactly the features it gets alone.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import torch
import torch.nn.functional as F

from ..models.sekd import SEKDNet
from ..ops import (
    SAMPLING_MODES,
    nms_mask,
    parabola_offsets,
    sample_descriptors_batched,
    select_keypoints_batched,
    topk_in_groups,
)
from .base import BaseExtractor, ConfigError, ImageTooSmallError, gray_batch, gray_batch_of_one

logger = logging.getLogger(__name__)
MIN_SIDE = 8  # smaller images carry no usable structure at the network's 1/4 resolution
BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")

# (batch M, keypoints M x 2 (x, y), scores M, descriptors 128 x M), grouped by image, strongest first
Packed = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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
        "backend": "torch",  # or "onnxruntime" (pip install -e ".[onnx]"), "openvino" (".[openvino]"): CPU paths
        "backend_threads": 0,  # onnxruntime / openvino threads; 0 = torch.get_num_threads()
        # "bf16": the network under torch autocast (torch backend; opt-in); "int8": the statically
        # quantised network (onnxruntime / openvino backends; models/quantize.py)
        "precision": "fp32",
        "int8_table": None,  # calibration table of precision int8; None = the shipped one of the network
    }
    required_inputs = ["image"]
    detection_noise = 1.0
    # how the network runs, not what it computes: a features file may mix them
    runtime_conf_keys = ("backend", "backend_threads", "channels_last")

    def _init(self, conf: dict[str, Any]) -> None:
        if conf["sampling"] not in SAMPLING_MODES:
            raise ConfigError(f"sekd: sampling must be one of {SAMPLING_MODES}, got '{conf['sampling']}'")
        if conf["subpixel_score"] not in ("peak", "reread"):
            raise ConfigError(f"sekd: subpixel_score must be 'peak' or 'reread', got '{conf['subpixel_score']}'")
        if conf["backend"] not in BACKENDS:
            raise ConfigError(f"sekd: backend must be one of {BACKENDS}, got '{conf['backend']}'")
        if conf["precision"] not in PRECISIONS:
            raise ConfigError(f"sekd: precision must be one of {PRECISIONS}, got '{conf['precision']}'")
        if conf["precision"] == "bf16" and conf["backend"] != "torch":
            raise ConfigError("sekd: precision 'bf16' is implemented for backend 'torch' (autocast) only")
        if conf["precision"] == "int8" and conf["backend"] == "torch":
            raise ConfigError("sekd: precision 'int8' needs backend 'openvino' or 'onnxruntime'")
        self.net = SEKDNet()
        self.load_checkpoint(self.net)
        self.net.eval()
        self.runner = self._runner(conf)
        if self.runner is None and conf["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)

    def _runner(self, conf: dict[str, Any]):
        """The network's runner of ``backend`` (None = torch). A backend whose package is missing
        falls back, with one warning line, to the next that is installed: openvino -> onnxruntime
        -> torch (fp32: int8 models need onnxruntime's quantiser)."""
        from ..models.onnx_runtime import OnnxNetwork, onnx_missing
        from ..models.openvino_runtime import OpenVinoNetwork, openvino_missing

        backend, threads = conf["backend"], conf["backend_threads"] or None

        def int8_path():
            if conf["precision"] != "int8":
                return None
            from ..models.quantize import int8_export

            return int8_export(self.net, conf["int8_table"])

        if backend == "openvino":
            if not openvino_missing() and not (conf["precision"] == "int8" and onnx_missing()):
                return OpenVinoNetwork(self.net, threads=threads, model_path=int8_path())
            logger.warning("sekd: %s; falling back to backend onnxruntime", openvino_missing() or onnx_missing())
            backend = "onnxruntime"
        if backend == "onnxruntime":
            if not onnx_missing():
                return OnnxNetwork(self.net, threads=threads, model_path=int8_path())
            logger.warning("sekd: %s; falling back to backend torch, fp32", onnx_missing())
        return None

    # ------------------------------------------------------------------ forward
    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = gray_batch_of_one(data["image"], "sekd")
        self._check_size(image)
        with torch.inference_mode():
            kpts, scores, desc = self.extract(image[0, 0])
        return {"keypoints": kpts[None], "scores": scores[None], "descriptors": desc[None]}

    @staticmethod
    def _check_size(image: torch.Tensor) -> None:
        h, w = image.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ImageTooSmallError(f"image of {w} x {h} px is too small for SEKD (minimum {MIN_SIDE} px per side)")

    def extract_batch(self, images: torch.Tensor,
                      output_device: str | torch.device | None = None) -> list[dict[str, torch.Tensor]]:
        """Features of a batch of equal-size images, one network pass for the whole batch.

        Args:
            images: ``B x C x H x W`` in [0, 1] (C = 1 or 3).
            output_device: where the results go (e.g. ``"cpu"``): the packed results are moved
                in one transfer per array, before they are split per image.
        Returns:
            one dict per image with ``keypoints`` ``N_i x 2``, ``scores`` ``N_i`` and
            ``descriptors`` ``128 x N_i`` (no batch dimension), identical to what
            ``self({"image": images[i:i+1]})`` returns.
        """
        gray = gray_batch(images)
        self._check_size(gray)
        with torch.inference_mode():
            batch, kpts, scores, desc = self.extract_packed(gray[:, 0])
            if output_device is not None:
                batch, kpts, scores, desc = (t.to(output_device) for t in (batch, kpts, scores, desc))
            counts = torch.bincount(batch, minlength=gray.shape[0]).tolist()  # one host sync
        return [{"keypoints": k, "scores": s, "descriptors": d}
                for k, s, d in zip(kpts.split(counts), scores.split(counts), desc.split(counts, dim=1))]

    def extract(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keypoints ``N x 2`` (x, y), scores ``N`` and unit descriptors ``128 x N`` of a gray ``H x W`` image."""
        _, kpts, scores, desc = self.extract_packed(gray[None])
        return kpts, scores, desc

    def extract_packed(self, gray: torch.Tensor) -> Packed:
        """Features of ``B x H x W`` gray images, packed: see :data:`Packed`."""
        conf = self.conf
        packed = self.detect_packed(gray)
        if not conf["multi_scale"]:
            return packed
        parts = [packed]
        h, w = gray.shape[-2:]
        for small in pyramid(gray, conf["multi_scale_min_size"]):
            hs, ws = small.shape[-2:]
            bi, k, s, d = self.detect_packed(small)
            ratio = k.new_tensor([w / ws, h / hs])
            parts.append((bi, (k + 0.5) * ratio - 0.5, s, d))
        batch = torch.cat([p[0] for p in parts])
        kpts = torch.cat([p[1] for p in parts])
        scores = torch.cat([p[2] for p in parts])
        desc = torch.cat([p[3] for p in parts], dim=1)
        order = topk_in_groups(batch, scores, conf["max_keypoints"])
        return batch[order], kpts[order], scores[order], desc[:, order]

    def network(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Run the network on ``H x W`` padded to multiples of 4 by edge replication.

        Returns the probability map ``Hp x Wp``, the raw descriptor map ``128 x Hp/4 x Wp/4``
        and the padded size ``(Hp, Wp)``.
        """
        prob, desc, size = self.network_batch(gray[None])
        return prob[0].contiguous(), desc[0].contiguous(), size

    def network_batch(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """:meth:`network` for ``B x H x W``: prob ``B x Hp x Wp``, desc ``B x 128 x Hp/4 x Wp/4``, ``(Hp, Wp)``."""
        h, w = gray.shape[-2:]
        ph, pw = -h % 4, -w % 4
        x = gray[:, None].float()
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        if self.runner is not None:
            prob, desc = self.runner(x)
        else:
            if self.conf["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.conf["precision"] == "bf16":
                with torch.autocast(x.device.type, dtype=torch.bfloat16):
                    prob, desc = self.net(x)
                prob, desc = prob.float(), desc.float()
            else:
                prob, desc = self.net(x)
        return prob[:, 0], desc.contiguous(), (h + ph, w + pw)

    def detect_packed(self, gray: torch.Tensor) -> Packed:
        """Single-scale detection and description of ``B x H x W`` gray images (see :data:`Packed`):
        the network, then the stages :func:`peaks`, :func:`select` and :func:`describe`."""
        h, w = gray.shape[-2:]
        prob, desc_map, padded_size = self.network_batch(gray)
        batch, pos, scores = select(prob, peaks(prob, (h, w), self.conf), (h, w), self.conf)
        return batch, pos, scores, describe(desc_map, batch, pos, padded_size, self.conf)


def pyramid(gray: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    """The smaller levels of multi-scale detection of ``B x H x W`` gray images: halved, quartered,
    ... while both sides stay above ``min_size`` (the release's rule); cv2 bilinear on the float
    image, one call per image, as the release (bit-exact pyramid). Also the trainer's validation."""
    b, h, w = gray.shape
    levels, factor, img_np = [], 2.0, None
    while int(h / factor) > min_size and int(w / factor) > min_size:
        hs, ws = int(h / factor), int(w / factor)
        if img_np is None:
            img_np = gray.float().cpu().numpy()
        levels.append(torch.stack([torch.from_numpy(cv2.resize(img_np[i], (ws, hs))) for i in range(b)]).to(gray))
        factor *= 2.0
    return levels


# The stages after the network, one definition for the extractor, the trainer's validation and
# the speed benchmark's breakdown. ``conf`` needs the keys the stage reads (the extractor's conf).
def peaks(prob: torch.Tensor, size: tuple[int, int], conf: dict[str, Any]) -> torch.Tensor:
    """``B x Hp x Wp`` bool: NMS maxima (``nms_radius``) inside the ``size = (H, W)`` image, less
    a ``remove_borders`` strip (never the replicated padding)."""
    h, w = size
    valid = nms_mask(prob[:, None], conf["nms_radius"])[:, 0]
    b = conf.get("remove_borders", 0)
    region = torch.zeros_like(valid[0])
    region[b : h - b, b : w - b] = True
    return valid & region


def select(prob: torch.Tensor, mask: torch.Tensor, size: tuple[int, int], conf: dict[str, Any]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(batch N, positions N x 2 (x, y), scores N)``: peaks above ``confidence_threshold``,
    the strongest ``max_keypoints`` per image, optionally refined to sub-pixel (``sub_pixel``)
    without leaving the ``size = (H, W)`` image."""
    h, w = size
    batch, rows_cols, scores = select_keypoints_batched(prob, mask, conf["confidence_threshold"], conf["max_keypoints"])
    pos = rows_cols.flip(-1).to(prob.dtype)  # (x, y)
    if conf.get("sub_pixel") and len(rows_cols):
        offsets = parabola_offsets(prob, rows_cols, batch).flip(-1)  # (dx, dy)
        pos = pos + offsets
        if conf["subpixel_score"] == "reread":
            # the release truncates the float64 refined position to read the score
            idx = (rows_cols.double() + offsets.flip(-1).double()).long()
            scores = prob[batch, idx[:, 0], idx[:, 1]]
            order = topk_in_groups(batch, scores, None)
            batch, pos, scores = batch[order], pos[order], scores[order]
        # a peak on the last image row/column next to the padding may not move past it
        pos = torch.minimum(pos.clamp(min=0), pos.new_tensor([w - 1, h - 1]))
    return batch, pos, scores


def describe(desc_map: torch.Tensor, batch: torch.Tensor, pos: torch.Tensor, padded_size: tuple[int, int],
             conf: dict[str, Any]) -> torch.Tensor:
    """``128 x N`` unit descriptors sampled at ``pos`` (``sampling``: the release's or bilinear)."""
    return sample_descriptors_batched(desc_map, batch, pos, padded_size, conf["sampling"])
