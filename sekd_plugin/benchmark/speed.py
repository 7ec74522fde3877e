"""Extraction speed: ms per 640 x 480 image for each extractor (median after warm-up).

    python -m sekd_plugin.benchmark speed [--methods sekd,sift] [--runs 5] [--device cpu]

For SEKD it also times the network alone, so the post-processing cost (NMS, selection,
sampling) is visible.
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import torch

from ..extractors.base import load_extractor
from ..extractors.confs import get_conf
from ..extractors.sekd import SEKD

DEFAULT_METHODS = ("sekd", "sekd-ms", "sift", "superpoint", "d2net-ss", "orb", "akaze", "brisk")
SIZE = (640, 480)  # (W, H)


def test_image(grayscale: bool) -> torch.Tensor:
    """A real photo (scikit-image's astronaut) at 640 x 480, as a 1 x C x H x W tensor in [0, 1]."""
    from skimage import data

    image = cv2.resize(data.astronaut(), SIZE, interpolation=cv2.INTER_AREA)
    if grayscale:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def _time(fn, runs: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in ms over ``runs`` calls after two warm-up calls."""
    times = []
    for i in range(runs + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def run(methods=None, runs: int = 5, device: str | None = None, threads: int | None = None) -> list[dict]:
    from ..extractors.base import missing_weights_reason

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    for method in methods or DEFAULT_METHODS:
        conf = get_conf(method)  # an unknown name is an error listing the known ones
        reason = missing_weights_reason(conf["model"], label=method)
        if reason:
            print(reason)
            continue
        model = load_extractor(conf["model"], dev)
        image = test_image(conf.get("preprocessing", {}).get("grayscale", False)).to(dev)
        with torch.inference_mode():
            total = _time(lambda: model({"image": image}), runs, dev)
            n = model({"image": image})["keypoints"].shape[1]
            net = None
            if isinstance(model, SEKD):  # the network alone, to show the post-processing cost
                gray = image[0].mean(0) if image.shape[1] == 3 else image[0, 0]
                net = _time(lambda: model.network(gray), runs, dev)
        rows.append({"method": method, "ms_end_to_end": total, "ms_network": net, "keypoints": n})
    threads_used = torch.get_num_threads()
    print(f"\nms per {SIZE[0]}x{SIZE[1]} image, median of {runs} runs after 2 warm-up runs; "
          f"device {dev}{'' if dev.type == 'cuda' else f', {threads_used} threads'}, torch {torch.__version__}\n")
    print("| method | ms/img (end to end) | ms/img (network only) | #kp |")
    print("|---|---|---|---|")
    for r in rows:
        net = f"{r['ms_network']:.1f}" if r["ms_network"] is not None else "-"
        print(f"| {r['method']} | {r['ms_end_to_end']:.1f} | {net} | {r['keypoints']} |")
    return rows
