"""A small self-contained validation on synthetic homographies of held-out images.

Every held-out image is resized/cropped to ``val.height x val.width`` and warped by a random
homography (corner perturbation + rotation, seeded per image so that every validation in a
run and across runs sees the same pairs). Keypoints come from the current network with a fixed
budget (NMS, the strongest ``val.max_keypoints``); descriptors are sampled as the extractor
does. Metrics at ``val.pixel_threshold`` (3 px):

* ``mma``: fraction of mutual-nearest-neighbour matches (``sekd_plugin.matchers``) whose reprojection
  error under the true homography is within the threshold (0 when there is no match);
* ``homography_accuracy``: RANSAC homography (OpenCV, 3 px) whose mean corner error is within
  the threshold (a failed estimate counts as wrong);
* ``repeatability``: keypoints with a keypoint of the other image within the threshold after
  projection, over the keypoints that project into the other image (both directions).

The metric functions are those of the HPatches benchmark (:mod:`sekd_plugin.benchmark.homography.metrics`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ..benchmark.homography import metrics
from ..matchers import match_nearest_neighbor
from ..ops import nms_mask, sample_descriptors, select_keypoints
from .data import derive_seed


def fit_image(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize so that the image covers ``height x width`` (aspect kept), then centre-crop."""
    h, w = img.shape
    s = max(height / h, width / w)
    if abs(s - 1.0) > 1e-9:
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (max(width, round(w * s)), max(height, round(h * s))), interpolation=interp)
    h, w = img.shape
    y0, x0 = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(img[y0 : y0 + height, x0 : x0 + width])


def random_homography(height: int, width: int, rng: np.random.Generator, corner_shift: float, degrees: float) -> np.ndarray:
    """Homography moving the image corners (rotated about the centre) by up to ``corner_shift`` x size."""
    src = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    a = math.radians(rng.uniform(-degrees, degrees))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (src - c) @ rot.T + c
    dst += rng.uniform(-corner_shift, corner_shift, size=(4, 2)) * np.array([width, height])
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def make_pairs(images: list[np.ndarray], conf) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(image0, image1, H_0to1)`` uint8 pairs, deterministic for ``val.seed``."""
    pairs = []
    for i, img in enumerate(images):
        rng = np.random.default_rng(derive_seed(conf.seed, 11, i))
        im0 = fit_image(img, conf.height, conf.width)
        H = random_homography(conf.height, conf.width, rng, conf.corner_shift, conf.degrees)
        im1 = cv2.warpPerspective(im0, H, (conf.width, conf.height), flags=cv2.INTER_LINEAR, borderValue=0)
        pairs.append((im0, im1, H))
    return pairs


@torch.no_grad()
def extract(net, images: torch.Tensor, conf) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(keypoints N x 2 (x, y), unit descriptors N x C)`` for every image of ``B x 1 x H x W``."""
    prob, desc = net(images)
    h, w = images.shape[-2:]
    out = []
    for b in range(images.shape[0]):
        mask = nms_mask(prob[b : b + 1], conf.nms_radius)[0, 0]
        yx, _ = select_keypoints(prob[b, 0], mask, conf.threshold, conf.max_keypoints)
        xy = yx.flip(-1).to(prob.dtype)
        d = sample_descriptors(desc[b], xy, (h, w), "official").T
        out.append((xy.cpu().numpy().astype(np.float64), d.cpu().float()))
    return out


def mutual_nn(d0: torch.Tensor, d1: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of ``N x C`` and ``M x C`` unit descriptors (the package's matcher)."""
    m0, _ = match_nearest_neighbor(d0.T, d1.T, mutual_check=True)
    i0 = torch.nonzero(m0 >= 0)[:, 0]
    return i0.cpu().numpy(), m0[i0].cpu().numpy()


def pair_metrics(k0, d0, k1, d1, H: np.ndarray, size: tuple[int, int], px: float = 3.0) -> dict:
    """Metrics of one pair; ``size = (H, W)`` of both images. Uses :mod:`sekd_plugin.benchmark.homography.metrics`."""
    h, w = size
    i0, i1 = mutual_nn(d0, d1)
    matches = np.stack([i0, i1], axis=1) if len(i0) else np.zeros((0, 2), np.int64)
    errors = metrics.reprojection_errors(k0, k1, matches, H)
    mma = float(metrics.matching_accuracy(errors, (px,))[0])
    Hest = metrics.estimate_homography(k0, k1, matches, threshold=px)
    corner_err = metrics.corner_error(Hest, H, (w, h))
    rep = metrics.repeatability(k0, k1, H, (w, h), (w, h), threshold=px)
    return {
        "mma": mma,
        "homography_accuracy": float(corner_err <= px),
        "corner_error": corner_err,
        "repeatability": rep,
        "matches": len(i0),
        "keypoints": 0.5 * (len(k0) + len(k1)),
    }


@torch.no_grad()
def evaluate(net, pairs, conf, device: torch.device) -> dict:
    """Mean metrics over the validation pairs (``net(image) -> (prob, desc)``)."""
    was_training = net.training
    net.eval()
    rows = []
    try:
        for im0, im1, H in pairs:
            x = torch.from_numpy(np.stack([im0, im1])).float().div_(255.0)[:, None].to(device)
            (k0, d0), (k1, d1) = extract(net, x, conf)
            rows.append(pair_metrics(k0, d0, k1, d1, H, im0.shape, conf.pixel_threshold))
    finally:
        net.train(was_training)
    if not rows:
        return {}
    px = f"@{conf.pixel_threshold:g}"
    finite = [r["corner_error"] for r in rows if math.isfinite(r["corner_error"])]
    return {
        f"mma{px}": float(np.mean([r["mma"] for r in rows])),
        f"homography_accuracy{px}": float(np.mean([r["homography_accuracy"] for r in rows])),
        f"repeatability{px}": float(np.mean([r["repeatability"] for r in rows])),
        "median_corner_error": float(np.median(finite)) if finite else None,
        "matches": float(np.mean([r["matches"] for r in rows])),
        "keypoints": float(np.mean([r["keypoints"] for r in rows])),
        "pairs": len(rows),
    }
