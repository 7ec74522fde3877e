"""ORB, AKAZE and BRISK (OpenCV) as one hloc-style extractor with binary descriptors.

The registry names ``orb``, ``akaze`` and ``brisk`` all load :class:`OpenCVFeatures`; the
name becomes ``conf["algorithm"]`` when the conf does not set it (``name_is_algorithm``).

Input: ``image`` 1 x C x H x W in [0, 1] (C = 1, or 3 RGB turned gray by OpenCV), quantised
back to uint8 (``round(255 x)``). Output (batch of one):

* ``keypoints``   1 x N x 2 float32 (x, y). OpenCV's keypoint coordinates already have the
  pixel centre at integer values (a FAST corner at pixel (r, c) is reported at (c, r)), the
  hloc convention, so no offset is applied. Keypoints found on coarser pyramid levels are
  scaled by OpenCV with a plain ``x * s`` (no half-pixel correction); that is OpenCV's own
  output and is kept as is.
* ``scores``      1 x N float32, the detector response (``KeyPoint.response``);
* ``descriptors`` 1 x D x N **uint8**, the packed binary descriptor bytes (ORB 32, AKAZE 61
  with its default full-size MLDB descriptor, BRISK 64); compare with the Hamming distance.
  :attr:`OpenCVFeatures.binary_descriptors` is True;
* ``scales``      1 x N float32, ``KeyPoint.size`` (diameter in pixels);
* ``oris``        1 x N float32, ``KeyPoint.angle`` in degrees.

``max_keypoints`` (default 2000) is ORB's ``nfeatures``; for every algorithm the strongest
``max_keypoints`` by response are kept afterwards (stable order), -1 keeps all. ``options``
are passed to the OpenCV factory as keyword arguments (e.g. ``{"threshold": 0.0005}`` for
AKAZE, ``{"thresh": 20}`` for BRISK).

OpenCV 5 moved AKAZE and BRISK to the contrib modules (``cv2.xfeatures2d``): with the plain
``opencv-python-headless`` 5.x only ORB is available and building the others raises
:class:`OpenCVFeatureUnavailableError` (install ``opencv-contrib-python-headless`` instead).
OpenCV 4 has all three in the main module.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from ..common.errors import UserError
from ..ops.gray import rgb_to_gray_u8
from .base import BaseExtractor, ConfigError

ALGORITHMS = {"orb": "ORB_create", "akaze": "AKAZE_create", "brisk": "BRISK_create"}
ORB_ALL = 1_000_000  # ORB needs a positive nfeatures; "all" (-1) uses this


class OpenCVFeatureUnavailableError(UserError, ImportError):
    """The installed OpenCV build does not provide this algorithm."""


def opencv_factory(algorithm: str):
    """The OpenCV constructor of ``algorithm`` (main module, else ``cv2.xfeatures2d``)."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"opencv: algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    name = ALGORITHMS[algorithm]
    for namespace in (cv2, getattr(cv2, "xfeatures2d", None)):
        if namespace is not None and hasattr(namespace, name):
            return getattr(namespace, name)
    raise OpenCVFeatureUnavailableError(
        f"{algorithm.upper()} is not available in this OpenCV build ({cv2.__version__}): OpenCV 5 moved it "
        "to the contrib modules; install opencv-contrib-python-headless (replacing opencv-python-headless)"
    )


def is_available(algorithm: str) -> bool:
    """Whether the installed OpenCV provides ``algorithm``."""
    try:
        opencv_factory(algorithm)
    except OpenCVFeatureUnavailableError:
        return False
    return True


def to_uint8_gray(image: torch.Tensor) -> np.ndarray:
    """``1 x C x H x W`` float in [0, 1] -> ``H x W`` uint8 (RGB -> gray with OpenCV)."""
    arr = image[0].detach().float().cpu().numpy()
    arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[0] == 3:
        return rgb_to_gray_u8(arr.transpose(1, 2, 0))
    return np.ascontiguousarray(arr[0])


class OpenCVFeatures(BaseExtractor):
    default_conf = {
        "algorithm": "orb",  # orb | akaze | brisk (set from the registry name when absent)
        "max_keypoints": 2000,  # ORB nfeatures; all: strongest k by response; -1 = all
        "options": {},  # keyword arguments for the OpenCV factory
    }
    required_inputs = ["image"]
    detection_noise = 1.0
    name_is_algorithm = True
    binary_descriptors = True

    def _init(self, conf: dict[str, Any]) -> None:
        algorithm = conf["algorithm"]
        if conf["max_keypoints"] == 0 or conf["max_keypoints"] < -1:
            raise ConfigError(f"opencv: max_keypoints must be -1 (all) or positive, got {conf['max_keypoints']}")
        factory = opencv_factory(algorithm)
        kwargs = dict(conf["options"] or {})
        if algorithm == "orb":
            kwargs.setdefault("nfeatures", conf["max_keypoints"] if conf["max_keypoints"] > 0 else ORB_ALL)
        try:
            self.detector = factory(**kwargs)
        except (cv2.error, TypeError) as e:
            raise ConfigError(f"opencv: invalid options {kwargs} for {algorithm}: {e}") from None
        self.descriptor_size = int(self.detector.descriptorSize())

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
            raise ValueError(f"opencv expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
        try:
            kps, desc = self.detector.detectAndCompute(to_uint8_gray(image), None)
        except cv2.error as e:  # e.g. BRISK's pyramid on a tiny image: fail this image only
            h, w = image.shape[-2:]
            raise ValueError(f"{self.conf['algorithm']} cannot process this {w} x {h} image: "
                             f"{str(e).strip().splitlines()[-1]}") from None
        n = len(kps)
        if desc is None or n == 0:
            desc = np.zeros((0, self.descriptor_size), np.uint8)
        pts = np.array([k.pt for k in kps], np.float32).reshape(n, 2)
        response = np.array([k.response for k in kps], np.float32)
        size = np.array([k.size for k in kps], np.float32)
        angle = np.array([k.angle for k in kps], np.float32)
        order = np.argsort(-response, kind="stable")
        if self.conf["max_keypoints"] > 0:
            order = order[: self.conf["max_keypoints"]]
        device = image.device
        out = {
            "keypoints": torch.from_numpy(pts[order]),
            "scores": torch.from_numpy(response[order]),
            "descriptors": torch.from_numpy(np.ascontiguousarray(desc[order].T)),
            "scales": torch.from_numpy(size[order]),
            "oris": torch.from_numpy(angle[order]),
        }
        return {k: v[None].to(device) for k, v in out.items()}
