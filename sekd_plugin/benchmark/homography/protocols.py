"""Evaluation protocols: which images every method sees and how many keypoints it keeps.

* ``sekd`` (the SEKD paper's, as the authors' ``utils/resize_imgs.py``): images larger than
  640 px are resized so their long side is 640 px (``cv2.INTER_LINEAR``, new size
  ``int(scale * side)``), cropped at the bottom/right to multiples of 16; homographies are
  rescaled exactly (pixel-centre convention, per-axis scale; the authors scale the matrix by
  ``diag(s, s, 1)``, which is off by ``0.5 (1 - s)`` px); top 500 keypoints by score; SEKD with
  the thresholds of the authors' HPatches export (confidence 0.4, NMS radius 4).
* ``d2net`` (D2-Net's): full resolution, the 8 high-resolution sequences D2-Net excludes
  are skipped when present, all keypoints up to a cap of 5,000.
* ``gluefactory`` (glue-factory's ``eval/hpatches.py``): every image resized so its short side
  is 480 px (glue-factory's ``ImagePreprocessor``: kornia bilinear resize with antialiasing, long
  side ``int(480 * aspect)``, also upsampling), the same 8 large sequences skipped, one keypoint
  budget (1,024, glue-factory's SuperPoint+LightGlue setting), homographies by the estimator of
  choice with a 1 px inlier threshold (glue-factory's default ``ransac_th``), AUC@1/3/5 px of the
  mean error of the four outer image corners. Differences: prepared images are stored as 8-bit
  PNG (glue-factory feeds the float resize), and homographies are rescaled with the exact
  pixel-centre matrix (glue-factory uses ``diag(sx, sy, 1)``, consistent with its corner-origin
  keypoints; ours are pixel-centre keypoints).

Every method sees the same prepared image files; they are written once per protocol under
``<output>/images/<protocol>/`` (full-resolution images are linked, not copied).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...common import write_atomic
from ...common.files import write_image
from ...datasets.hpatches import D2NET_EXCLUDED, DatasetError, Sequence
from ...io.images import read_image

PROTOCOLS = {
    "sekd": {
        "long_side": 640,
        "interpolation": "linear",  # the authors' resize (no antialiasing)
        "multiple": 16,
        "max_keypoints": 500,
        "exclude": (),
        # per-extractor options the protocol fixes (the authors' export settings)
        "model_overrides": {"sekd": {"confidence_threshold": 0.4, "nms_radius": 4}},
    },
    "d2net": {
        "long_side": None,
        "interpolation": None,
        "multiple": 1,
        "max_keypoints": 5000,
        "exclude": D2NET_EXCLUDED,
        "model_overrides": {},
    },
    "gluefactory": {
        "long_side": None,
        "short_side": 480,  # glue-factory: preprocessing.resize 480, side "short"
        "interpolation": "antialias",  # kornia bilinear + antialias, as glue-factory's ImagePreprocessor
        "multiple": 1,
        "max_keypoints": 1024,  # glue-factory's HPatches budget (a --max-keypoints option overrides it)
        "exclude": D2NET_EXCLUDED,  # glue-factory's ignore_large_images
        "model_overrides": {},
        "ransac_threshold": 1.0,  # px, glue-factory's eval.ransac_th
        "corners": "outer",  # corner error at the outer image corners (0, 0) .. (W, H), as glue-factory
        "note": ("glue-factory's published numbers (e.g. SuperPoint + LightGlue, PoseLib: AUC 37.1 / 67.4 / 77.8) "
                 "average 540 pairs of 108 HPatches sequences; with only part of HPatches (or Oxford "
                 "sequences) the pairs, the illumination/viewpoint mix and hence the AUCs differ, so rows "
                 "compare with each other, not with published numbers"),
    },
}

FULL_HPATCHES_PAIRS = {"gluefactory": 540}  # 108 sequences x 5 pairs after the 8 exclusions


@dataclass
class PreparedSequence:
    key: str  # "<dataset>/<sequence>"
    kind: str  # "i" or "v"
    names: list[str]  # image names relative to the protocol image folder, image 1 first
    sizes: list[tuple[int, int]]  # (W, H) of each prepared image
    homographies: list[np.ndarray]  # H_1_k in prepared-image pixels, k = 2..6


def pixel_scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Map pixel-centre coordinates through a resize by (sx, sy): ``x' = (x + 0.5) s - 0.5``."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def short_side_size(w: int, h: int, side: int) -> tuple[int, int]:
    """glue-factory's ``get_new_image_size`` for ``side="short"``: (W, H) with the short side ``side``."""
    aspect = w / h
    return (int(side * aspect), side) if aspect >= 1.0 else (side, int(side / aspect))


def _resize_antialias(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """kornia's bilinear resize with antialiasing (glue-factory's) of a uint8 image to (W, H), back to uint8."""
    import kornia
    import torch

    x = torch.from_numpy(image).float() / 255.0
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    y = kornia.geometry.transform.resize(x, (size[1], size[0]), interpolation="bilinear", antialias=True)
    y = (y[0].clamp(0, 1) * 255.0).round().byte()
    return (y[0] if image.ndim == 2 else y.permute(1, 2, 0)).numpy()


def _prepare_image(src: Path, dst: Path, long_side: int | None, multiple: int,
                   interpolation: str | None = "linear", short_side: int | None = None
                   ) -> tuple[tuple[int, int], np.ndarray]:
    """Write the protocol's version of ``src`` to ``dst``; return its (W, H) and the matrix
    mapping original pixels to prepared pixels."""
    if long_side is None and short_side is None and multiple == 1:
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(src.resolve(), dst)
            except OSError:
                write_atomic(dst, src.read_bytes())
        h, w = read_image(dst).shape[:2]
        return (w, h), np.eye(3)
    image = read_image(src)
    h, w = image.shape[:2]
    if short_side:
        nw, nh = short_side_size(w, h, short_side)
    else:
        scale = min(1.0, long_side / max(w, h)) if long_side else 1.0
        nw, nh = int(w * scale), int(h * scale)
    cw, ch = nw // multiple * multiple, nh // multiple * multiple
    A = pixel_scale_matrix(nw / w, nh / h)
    if cw == 0 or ch == 0:
        raise DatasetError(f"{src}: {w} x {h} px is too small for this protocol "
                           f"(resized to {nw} x {nh}, then cropped to multiples of {multiple})")
    if not dst.exists():
        if (nw, nh) == (w, h):
            resized = image
        elif interpolation == "antialias":
            resized = _resize_antialias(image, (nw, nh))
        else:
            resized = cv2.resize(image, (nw, nh), interpolation=INTERPOLATIONS[interpolation or "linear"])
        cropped = np.ascontiguousarray(resized[:ch, :cw])
        bgr = cv2.cvtColor(cropped, cv2.COLOR_RGB2BGR) if cropped.ndim == 3 else cropped
        write_image(dst, bgr)
    return (cw, ch), A


def prepare(sequences: list[Sequence], protocol: str, image_root: Path) -> list[PreparedSequence]:
    """Prepared images + homographies of every sequence the protocol keeps (cached on disk)."""
    p = PROTOCOLS[protocol]
    # prepared images are cached; other protocol settings (a new version) start afresh
    stamp, settings = image_root / "protocol.json", json.dumps(describe(protocol), sort_keys=True)
    if image_root.exists() and (not stamp.exists() or stamp.read_text() != settings):
        shutil.rmtree(image_root)
    image_root.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, settings)
    out = []
    for seq in sequences:
        if seq.name in p["exclude"]:
            continue
        names, sizes, mats = [], [], []
        for i, src in enumerate(seq.images, start=1):
            as_is = p["long_side"] is None and p.get("short_side") is None and p["multiple"] == 1
            ext = src.suffix.lower() if as_is else ".png"
            name = f"{seq.key}/{i}{ext}"
            size, A = _prepare_image(src, image_root / name, p["long_side"], p["multiple"], p["interpolation"],
                                     p.get("short_side"))
            names.append(name)
            sizes.append(size)
            mats.append(A)
        hs = [mats[k] @ H @ np.linalg.inv(mats[0]) for k, H in zip(range(1, 6), seq.homographies)]
        out.append(PreparedSequence(seq.key, seq.kind, names, sizes, hs))
    return out


def describe(protocol: str) -> dict:
    """The protocol's settings, JSON-serialisable, for results.json."""
    return json.loads(json.dumps(PROTOCOLS[protocol], default=list))
