"""Evaluation protocols: which images every method sees and how many keypoints it keeps.

* ``sekd`` (the SEKD paper's, as the authors' ``utils/resize_imgs.py``): images larger than
  640 px are resized so their long side is 640 px (``cv2.INTER_LINEAR``, new size
  ``int(scale * side)``), cropped at the bottom/right to multiples of 16; homographies are
  rescaled exactly (pixel-centre convention, per-axis scale; the authors scale the matrix by
  ``diag(s, s, 1)``, which is off by ``0.5 (1 - s)`` px); top 500 keypoints by score; SEKD with
  the thresholds of the authors' HPatches export (confidence 0.4, NMS radius 4).
* ``d2net`` (D2-Net's): full resolution, the 8 high-resolution sequences D2-Net excludes
  are skipped when present, all keypoints up to a cap of 5,000.

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
}


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


def _prepare_image(src: Path, dst: Path, long_side: int | None, multiple: int,
                   interpolation: str | None = "linear") -> tuple[tuple[int, int], np.ndarray]:
    """Write the protocol's version of ``src`` to ``dst``; return its (W, H) and the matrix
    mapping original pixels to prepared pixels."""
    if long_side is None and multiple == 1:
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
    scale = min(1.0, long_side / max(w, h)) if long_side else 1.0
    nw, nh = int(w * scale), int(h * scale)
    cw, ch = nw // multiple * multiple, nh // multiple * multiple
    A = pixel_scale_matrix(nw / w, nh / h)
    if cw == 0 or ch == 0:
        raise DatasetError(f"{src}: {w} x {h} px is too small for this protocol "
                           f"(resized to {nw} x {nh}, then cropped to multiples of {multiple})")
    if not dst.exists():
        interp = INTERPOLATIONS[interpolation or "linear"]
        resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
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
            ext = src.suffix.lower() if p["long_side"] is None and p["multiple"] == 1 else ".png"
            name = f"{seq.key}/{i}{ext}"
            size, A = _prepare_image(src, image_root / name, p["long_side"], p["multiple"], p["interpolation"])
            names.append(name)
            sizes.append(size)
            mats.append(A)
        hs = [mats[k] @ H @ np.linalg.inv(mats[0]) for k, H in zip(range(1, 6), seq.homographies)]
        out.append(PreparedSequence(seq.key, seq.kind, names, sizes, hs))
    return out


def describe(protocol: str) -> dict:
    """The protocol's settings, JSON-serialisable, for results.json."""
    return json.loads(json.dumps(PROTOCOLS[protocol], default=list))
