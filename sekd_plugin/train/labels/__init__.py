"""Keypoint labels of a round: step 1 "detect" (detector + affine adaptation) and step 3
"reliability" (descriptor reliability).

Both work on whole training images (padded to multiples of 4), one image at a time with all
of its random references in one batch. Labels are the strongest NMS maxima of the score map
up to a per-image budget (one per ``budget_area`` px^2, at most ``max_keypoints``), above an
optional absolute ``threshold`` floor. Labels are stored per round in an HDF5 file named by
the step that wrote them (``round{r}_detect.h5``, ``round{r}_reliability.h5``)::

    /                    attrs: round, step, kind, num_images, version
    /images/000000       attrs: name (image key), height, width
        keypoints        int16 N x 2, (y, x) pixel indices, strongest first
        scores           float16 N

The modules: :mod:`.files` (storage), :mod:`.selection` (budget, NMS selection, references),
:mod:`.network` (the label network), :mod:`.detect` (step 1), :mod:`.reliability` (step 3);
:func:`compute_labels` runs a whole step.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..data import ImageSet, generator, to_tensor
from .detect import detect_keypoints, detector_score, random_keypoints
from .files import (LABEL_FORMAT, STEP_IDS, LabelFileError, Labels, label_stats, maxima_stats, read_labels,
                    read_labels_with_sizes, write_labels)
from .network import LabelNet, label_network
from .partial import PartialLabels, network_fingerprint
from .reliability import reliability_keypoints, reliability_score
from .selection import budget, select_labels

__all__ = ["LABEL_FORMAT", "STEP_IDS", "LabelFileError", "LabelNet", "Labels", "PartialLabels", "budget",
           "network_fingerprint", "compute_labels",
           "detect_keypoints", "detector_score", "label_network", "label_stats", "maxima_stats", "random_keypoints",
           "read_labels", "read_labels_with_sizes", "reliability_keypoints", "reliability_score", "select_labels",
           "write_labels"]


def compute_labels(
    kind: str,
    net,
    images: ImageSet,
    indices: list[int],
    conf,
    seed: int,
    round_idx: int,
    device: torch.device,
    progress: bool = True,
    desc: str | None = None,
    on_image: Callable[[str, tuple[np.ndarray, np.ndarray], tuple[int, int], np.ndarray | None], None] | None = None,
    done: int = 0,
) -> tuple[Labels, dict[str, tuple[int, int]], list[np.ndarray]]:
    """Labels of ``indices`` for ``kind`` in {"random", "detect", "reliability"}.

    Returns ``(labels, sizes (H, W), per-image NMS statistics)`` (see :func:`select_labels`).
    ``on_image(key, (yx, scores), size, nms statistics or None)`` sees every finished image (the
    caller keeps them across interruptions); ``done`` images of the step were finished before
    (the progress bar starts there). Each image's labels depend only on the network and a
    generator seeded by ``(seed, round, step, image index)``: any subset gives the same labels.
    """
    from tqdm import tqdm

    was_training = net.training
    net.eval()
    fast = bool(conf.reliability.fast if kind == "reliability" else conf.detect.fast)
    label_net = label_network(net, fast) if kind != "random" else net
    out: Labels = {}
    sizes: dict[str, tuple[int, int]] = {}
    stats: list[np.ndarray] = []
    step = STEP_IDS["reliability" if kind == "reliability" else "detect"]
    try:
        bar = tqdm(indices, desc=desc or kind, disable=not progress, leave=False, dynamic_ncols=True,
                   initial=done, total=done + len(indices))
        for idx in bar:
            img = images.image(idx)
            key = images.keys[idx]
            sizes[key] = tuple(img.shape[:2])
            gen = generator(seed, round_idx, step, idx)
            if kind == "random":
                yx, sc = random_keypoints(img.shape[:2], conf.detect.random_keypoints, conf.detect.border, gen)
            else:
                x = to_tensor(img).to(device, non_blocking=True)
                fn = detect_keypoints if kind == "detect" else reliability_keypoints
                yx, sc, st = fn(label_net, x, conf, gen)
                stats.append(st.cpu().numpy())
            out[key] = (yx.cpu().numpy().astype(np.int16), sc.float().cpu().numpy().astype(np.float16))
            if on_image is not None:
                on_image(key, out[key], sizes[key], stats[-1] if kind != "random" else None)
    finally:
        net.train(was_training)
    return out, sizes, stats
