"""Fixtures of the trainer tests: tiny synthetic image folders and tiny settings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

# every run in these tests: 2 rounds of 1 + 1 epochs on 6 training images of 64 x 64
TINY = [
    "schedule.rounds=2",
    "schedule.epochs_descriptor=1",
    "schedule.epochs_detector=1",
    "data.crop_size=32",
    "data.val_images=2",
    "data.sub_set=1",
    "detect.num_refs=2",
    "detect.ref_border=4",
    "detect.threshold=0.3",
    "reliability.num_refs=2",
    "reliability.border=4",
    "reliability.threshold=0.5",
    "reliability.neighbours=target",
    "optim.batch_size=3",
    "val.height=48",
    "val.width=64",
    "val.pairs_per_group=2",
    "val.min_keypoints=0",  # tiny 48 x 64 validation images: every checkpoint is eligible
    "device=cpu",
]


def synthetic_image(seed: int, size: int = 64) -> np.ndarray:
    """Gray image with random rectangles, circles and lines (corners and blobs to detect)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), int(rng.integers(40, 200)), np.uint8)
    for _ in range(8):
        c = int(rng.integers(0, 256))
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        kind = rng.integers(0, 3)
        if kind == 0:
            x1, y1 = (int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(img, (x0, y0), (x1, y1), c, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), int(rng.integers(3, size // 4)), c, -1)
        else:
            x1, y1 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(img, (x0, y0), (x1, y1), c, 2)
    return img


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    (d / "sub").mkdir()
    for i in range(8):
        folder = d / "sub" if i % 3 == 0 else d
        cv2.imwrite(str(folder / f"img{i:02d}.png"), synthetic_image(i))
    (d / "broken.jpg").write_bytes(b"this is not an image")
    return d
