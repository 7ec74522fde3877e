"""RGB -> gray, one definition: ITU-R 601 weights, as OpenCV's ``COLOR_RGB2GRAY`` and
torchvision's ``rgb_to_grayscale``, so that the network sees the same gray at training,
extraction and in the benchmarks."""

from __future__ import annotations

import cv2
import numpy as np
import torch

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` RGB -> ``B x 1 x H x W`` gray (float); ``B x 1 x H x W`` is returned as is."""
    if images.shape[-3] == 1:
        return images
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(-3, keepdim=True)


def rgb_to_gray_u8(image: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 RGB -> ``H x W`` uint8 with OpenCV (its rounding); ``H x W`` as is."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
