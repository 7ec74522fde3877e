"""SIFT (DoG detector + SIFT or RootSIFT descriptor) from COLMAP, through pycolmap (CPU).

Input: ``image`` 1 x 1 x H x W float32 in [0, 1] (grayscale preprocessing).
Output (batch of one), in hloc's convention (centre of the top-left pixel = (0, 0)):

* ``keypoints``   1 x N x 2 float32 (x, y); pycolmap's corner-origin positions minus 0.5;
* ``scores``      1 x N float32, the keypoint scale (COLMAP reports no detection score;
  like hloc, the scale ranks keypoints for ``max_keypoints``);
* ``descriptors`` 1 x 128 x N float32, L2-normalised; with ``rootsift`` the SIFT vector is
  L1-normalised, square-rooted and L2-normalised again (RootSIFT);
* ``scales``      1 x N float32, the DoG scale in pixels;
* ``oris``        1 x N float32, the orientation in degrees.

COLMAP may return a location twice with two orientations (``max_num_orientations``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..common.cli import quiet_colmap
from .base import BaseExtractor, ConfigError

EPS = 1e-6


def sift_to_rootsift(descriptors: np.ndarray) -> np.ndarray:
    """N x 128 SIFT -> RootSIFT: L1-normalise, square root, L2-normalise."""
    x = descriptors / (np.abs(descriptors).sum(-1, keepdims=True) + EPS)
    x = np.sqrt(np.clip(x, EPS, None))
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + EPS)


def _make_sift(conf: dict, max_features: int):
    """A ``pycolmap.Sift`` for the installed pycolmap (options layout changed in 3.13)."""
    import pycolmap

    if hasattr(pycolmap, "FeatureExtractionOptions"):  # pycolmap >= 3.13
        options = pycolmap.FeatureExtractionOptions()
        sift_options = options.sift
    else:
        options = sift_options = pycolmap.SiftExtractionOptions()
    for key in ("first_octave", "num_octaves", "octave_resolution", "peak_threshold",
                "edge_threshold", "upright", "max_num_orientations"):
        setattr(sift_options, key, conf[key])
    sift_options.max_num_features = max_features
    # COLMAP's own L1_ROOT quantises to uint8 first; normalise here instead.
    sift_options.normalization = pycolmap.Normalization.L2
    if hasattr(options, "num_threads"):
        options.num_threads = conf["num_threads"]
    if hasattr(options, "use_gpu"):
        options.use_gpu = False
    with warnings.catch_warnings(), quiet_colmap():  # no "Creating SIFT CPU feature extractor" line
        warnings.simplefilter("ignore", DeprecationWarning)  # pycolmap >= 3.13 prefers FeatureExtractor
        return pycolmap.Sift(options=options, device=pycolmap.Device.cpu)


class SIFT(BaseExtractor):
    default_conf = {
        "rootsift": True,
        "max_keypoints": -1,  # -1: all
        "backend": "pycolmap",  # CPU
        "first_octave": 0,  # 0 as in hloc; COLMAP's default -1 also upsamples the image
        "num_octaves": 4,
        "octave_resolution": 3,
        "peak_threshold": 0.01,
        "edge_threshold": 10.0,
        "upright": False,
        "max_num_orientations": 2,
        "num_threads": -1,
    }
    required_inputs = ["image"]
    detection_noise = 1.0

    def _init(self, conf):
        if conf["backend"] != "pycolmap":
            raise ConfigError(f"SIFT: unknown backend {conf['backend']!r}; only 'pycolmap' is available")
        if conf["max_keypoints"] == 0 or conf["max_keypoints"] < -1:
            raise ConfigError(f"SIFT: max_keypoints must be -1 (all) or positive, got {conf['max_keypoints']}")
        try:
            import pycolmap  # noqa: F401
        except ImportError as error:
            raise ConfigError(f"SIFT needs pycolmap ({error})") from None
        self.sift = _make_sift(conf, np.iinfo(np.int32).max)

    def _forward(self, data):
        image = data["image"]
        if image.dim() != 4 or image.shape[:2] != (1, 1):
            raise ConfigError(
                f"SIFT expects a 1 x 1 x H x W grayscale image, got {tuple(image.shape)}; "
                "use preprocessing grayscale=True"
            )
        image_np = np.ascontiguousarray(image[0, 0].detach().cpu().numpy(), dtype=np.float32)
        keypoints, descriptors = self.sift.extract(np.clip(image_np, 0.0, 1.0))
        keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, 4)
        descriptors = np.asarray(descriptors, dtype=np.float32).reshape(-1, 128)

        xy = keypoints[:, :2] - 0.5  # COLMAP: corner origin -> hloc: pixel-centre origin
        scales = keypoints[:, 2]
        oris = np.rad2deg(keypoints[:, 3])
        scores = np.abs(scales)
        if self.conf["rootsift"]:
            descriptors = sift_to_rootsift(descriptors)
        else:
            descriptors = descriptors / (np.linalg.norm(descriptors, axis=-1, keepdims=True) + EPS)

        if self.conf["max_keypoints"] != -1 and len(scores) > self.conf["max_keypoints"]:
            keep = np.argsort(-scores, kind="stable")[: self.conf["max_keypoints"]]
            xy, scores, scales, oris, descriptors = (
                xy[keep], scores[keep], scales[keep], oris[keep], descriptors[keep])

        def tensor(x):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(image.device)

        return {
            "keypoints": tensor(xy),
            "scores": tensor(scores),
            "descriptors": tensor(descriptors.T),
            "scales": tensor(scales),
            "oris": tensor(oris),
        }
