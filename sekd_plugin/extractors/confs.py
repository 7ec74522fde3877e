"""Named extraction configurations, in hloc's shape.

Each entry is ``{"output": <h5 file stem>, "model": {"name": <extractor>, ...options},
"preprocessing": {"grayscale", "resize_max", "resize_force", ...}}``; see
``sekd_plugin.io.images.DEFAULT_PREPROCESSING`` for the preprocessing keys. Unset model
options take the extractor's ``default_conf``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from .base import ConfigError

confs: dict[str, dict[str, Any]] = {
    # The recommended SEKD (chosen on DEV, docs/results.md "Recommended settings"): the shipped
    # evolved weights, multi-scale detection, sub-pixel keypoints. Its budget is hloc's SfM one
    # (4,096 at threshold 0.1); the HPatches protocols impose their own budget and threshold.
    "sekd-best": {
        "output": "feats-sekd-best-n4096-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_evolved", "multi_scale": True, "sub_pixel": True,
                  "max_keypoints": 4096, "confidence_threshold": 0.1},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # SEKD with the extractor's defaults, single scale, images up to 1600 px: the release's
    # (and the paper's) setting, kept for parity.
    "sekd": {
        "output": "feats-sekd-n500-r1600",
        "model": {"name": "sekd"},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The fastest CPU settings (docs/results.md, "int8"): the same features computed by the
    # statically quantised network (int8 where it keeps the keypoints, models/quantize.py) in
    # OpenVINO (pip install -e ".[openvino]"; without it: onnxruntime, then torch fp32, one line).
    "sekd-fast": {
        "output": "feats-sekd-fast-n500-r1600",
        "model": {"name": "sekd", "backend": "openvino", "precision": "int8"},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    "sekd-best-fast": {
        "output": "feats-sekd-best-fast-n4096-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_evolved", "multi_scale": True, "sub_pixel": True,
                  "max_keypoints": 4096, "confidence_threshold": 0.1, "backend": "openvino", "precision": "int8"},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # SEKD weights trained by sekd_plugin.train on 997 unlabeled photos (shipped, MIT).
    "sekd-selftrained": {
        "output": "feats-sekd-selftrained-n500-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_selftrained"},  # shipped: sekd_plugin/trained/
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The official SEKD weights evolved by sekd_plugin.train (shipped, MIT; README "Evolve SEKD
    # on your photos on a CPU"): descriptors evolved on 200 photos, the detector kept.
    "sekd-evolved": {
        "output": "feats-sekd-evolved-n500-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_evolved"},  # shipped: sekd_plugin/trained/
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # SEKD for reconstruction (chosen on the DEV scenes fountain-P11 / Herz-Jesu-P8, README
    # "Reconstruction"): a keypoint budget like hloc's SuperPoint setting, a low confidence
    # threshold so that the budget is reached, sub-pixel refinement, full resolution.
    "sekd-sfm": {
        "output": "feats-sekd-sfm-n4096-r1600",
        "model": {"name": "sekd", "max_keypoints": 4096, "confidence_threshold": 0.1, "sub_pixel": True},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The same SfM setting with the shipped self-trained weights.
    "sekd-selftrained-sfm": {
        "output": "feats-sekd-selftrained-sfm-n4096-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_selftrained", "max_keypoints": 4096,
                  "confidence_threshold": 0.1, "sub_pixel": True},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The same SfM setting with the shipped evolved weights.
    "sekd-evolved-sfm": {
        "output": "feats-sekd-evolved-sfm-n4096-r1600",
        "model": {"name": "sekd", "checkpoint": "sekd_evolved", "max_keypoints": 4096,
                  "confidence_threshold": 0.1, "sub_pixel": True},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # Same, with multi-scale detection.
    "sekd-ms": {
        "output": "feats-sekd-ms-n500-r1600",
        "model": {"name": "sekd", "multi_scale": True},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # SEKD with the network in bfloat16 (torch autocast; opt-in, see README for its accuracy).
    "sekd-bf16": {
        "output": "feats-sekd-bf16-n500-r1600",
        "model": {"name": "sekd", "precision": "bf16"},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The SEKD paper's evaluation setting (HPatches-sized images).
    "sekd-paper": {
        "output": "feats-sekd-paper-n500-r640",
        "model": {
            "name": "sekd",
            "confidence_threshold": 0.4,
            "nms_radius": 4,
            "max_keypoints": 500,
        },
        "preprocessing": {"grayscale": True, "resize_max": 640, "resize_force": False},
    },
    # COLMAP DoG + RootSIFT, every keypoint (hloc's "sift" setting).
    "sift": {
        "output": "feats-rootsift-r1600",
        "model": {"name": "sift", "rootsift": True},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # RootSIFT with COLMAP's own extraction defaults (first octave -1, i.e. the image upsampled
    # once, peak threshold 0.02 / 3, at most 8192 features): what `colmap feature_extractor` gives.
    "sift-colmap": {
        "output": "feats-rootsift-colmap-n8192-r1600",
        "model": {"name": "sift", "rootsift": True, "first_octave": -1, "peak_threshold": 0.02 / 3,
                  "max_keypoints": 8192},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # The recommended SIFT for the homography benchmark (chosen on DEV, docs/results.md): RootSIFT
    # on the image upsampled once (first octave -1, as COLMAP), hloc's peak threshold.
    "sift-best": {
        "output": "feats-rootsift-o-1-r1600",
        "model": {"name": "sift", "rootsift": True, "first_octave": -1},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # RootSIFT with a keypoint budget comparable to the learned detectors.
    "sift-n4096": {
        "output": "feats-rootsift-n4096-r1600",
        "model": {"name": "sift", "rootsift": True, "max_keypoints": 4096},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # SuperPoint baselines (MagicLeap weights, see sekd_plugin.extractors.superpoint.WEIGHTS_NOTE).
    # hloc's superpoint_aachen: NMS 3, 4096 keypoints, images up to 1024 px.
    "superpoint": {
        "output": "feats-superpoint-n4096-r1024",
        "model": {"name": "superpoint", "nms_radius": 3, "max_keypoints": 4096},
        "preprocessing": {"grayscale": True, "resize_max": 1024, "resize_force": False},
    },
    # hloc's superpoint_max: every image resized to 1600 px (also upsampled).
    "superpoint_max": {
        "output": "feats-superpoint-n4096-rmax1600",
        "model": {"name": "superpoint", "nms_radius": 3, "max_keypoints": 4096},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": True},
    },
    # MagicLeap demo_superpoint.py settings: NMS 4, threshold 0.015, 4 px border, no cap.
    "superpoint-demo": {
        "output": "feats-superpoint-demo-r1024",
        "model": {"name": "superpoint", "nms_radius": 4, "keypoint_threshold": 0.015,
                  "remove_borders": 4, "max_keypoints": -1},
        "preprocessing": {"grayscale": True, "resize_max": 1024, "resize_force": False},
    },
    # D2-Net (d2_tf weights), single scale, as hloc's d2net-ss.
    "d2net-ss": {
        "output": "feats-d2net-ss",
        "model": {"name": "d2net", "multiscale": False},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    # "d2net" is the single-scale setting, as hloc's d2net-ss.
    "d2net": {
        "output": "feats-d2net-ss",
        "model": {"name": "d2net", "multiscale": False},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    # D2-Net multi-scale (0.5, 1, 2).
    "d2net-ms": {
        "output": "feats-d2net-ms",
        "model": {"name": "d2net", "multiscale": True},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    # OpenCV binary features (uint8 descriptors, Hamming distance), 2000 strongest.
    "orb": {
        "output": "feats-orb-n2000-r1600",
        "model": {"name": "orb", "max_keypoints": 2000},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    "akaze": {
        "output": "feats-akaze-n2000-r1600",
        "model": {"name": "akaze", "max_keypoints": 2000},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    "brisk": {
        "output": "feats-brisk-n2000-r1600",
        "model": {"name": "brisk", "max_keypoints": 2000},
        "preprocessing": {"grayscale": True, "resize_max": 1600, "resize_force": False},
    },
    # ---- peers at parity with their official code (issue 35) ----
    # ALIKE (BSD 3-Clause weights alike-{t,s,n,l}.pth): the official threshold run (scores > 0.2,
    # at most 5,000, sub-pixel), RGB, images up to 1600 px.
    "alike-t": {
        "output": "feats-alike-t-th02-r1600",
        "model": {"name": "alike", "model": "alike-t"},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    "alike-s": {
        "output": "feats-alike-s-th02-r1600",
        "model": {"name": "alike", "model": "alike-s"},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    "alike-n": {
        "output": "feats-alike-n-th02-r1600",
        "model": {"name": "alike", "model": "alike-n"},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    "alike-l": {
        "output": "feats-alike-l-th02-r1600",
        "model": {"name": "alike", "model": "alike-l"},
        "preprocessing": {"grayscale": False, "resize_max": 1600, "resize_force": False},
    },
    # R2D2 (naver/r2d2 README settings: scales 2^0.25 apart from 1024 to 256 px, thresholds 0.7,
    # top 5,000), as hloc's r2d2 conf (images up to 1024 px). Weights CC BY-NC-SA 3.0: NON-COMMERCIAL.
    "r2d2": {
        "output": "feats-r2d2-n5000-r1024",
        "model": {"name": "r2d2", "multiscale": True},
        "preprocessing": {"grayscale": False, "resize_max": 1024, "resize_force": False},
    },
    # R2D2 at a single scale (scale 1 only).
    "r2d2-ss": {
        "output": "feats-r2d2-ss-n5000-r1024",
        "model": {"name": "r2d2", "multiscale": False},
        "preprocessing": {"grayscale": False, "resize_max": 1024, "resize_force": False},
    },
}
# The recommended conf of each method on the homography benchmark, chosen on DEV by the mean of
# MMA@3, H@3, AUC@3 and rep@3 (docs/results.md, "Recommended settings"); the main job runs these.
# For reconstruction, benchmark.methods.METHODS holds the SfM choice (e.g. SIFT with COLMAP's settings).
RECOMMENDED: dict[str, str] = {
    "sekd": "sekd-best", "sift": "sift-best", "superpoint": "superpoint-demo", "d2net": "d2net",
    "alike": "alike-s", "r2d2": "r2d2", "orb": "orb", "akaze": "akaze", "brisk": "brisk",
}


def get_conf(name: str) -> dict[str, Any]:
    """A deep copy of ``confs[name]``; an unknown name raises ConfigError listing the valid ones."""
    if name not in confs:
        raise ConfigError(f"unknown extraction conf '{name}'; available: {sorted(confs)}")
    return deepcopy(confs[name])
