"""sekd_plugin.ops.gray: the one RGB -> gray (OpenCV's weights) for tensors and uint8 images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sekd_plugin.extractors.base import gray_batch, gray_batch_of_one
from sekd_plugin.ops.gray import GRAY_WEIGHTS, rgb_to_gray, rgb_to_gray_u8


def test_tensor_gray_uses_opencvs_weights_and_keeps_gray_input():
    rgb = torch.rand(2, 3, 5, 7)
    expected = sum(w * rgb[:, c:c + 1] for c, w in enumerate(GRAY_WEIGHTS))
    assert torch.allclose(rgb_to_gray(rgb), expected, atol=1e-6)
    gray = torch.rand(2, 1, 5, 7)
    assert rgb_to_gray(gray) is gray
    u8 = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    as_tensor = torch.from_numpy(u8).permute(2, 0, 1)[None].float()
    assert np.abs(rgb_to_gray(as_tensor)[0, 0].numpy() - cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)).max() <= 0.51


def test_uint8_gray_is_opencvs_and_the_extractor_checks_stay():
    u8 = (np.random.default_rng(1).random((4, 6, 3)) * 255).astype(np.uint8)
    assert np.array_equal(rgb_to_gray_u8(u8), cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY))
    assert rgb_to_gray_u8(u8[..., 0]) is u8[..., 0] or np.array_equal(rgb_to_gray_u8(u8[..., 0]), u8[..., 0])
    rgb = torch.rand(3, 3, 4, 4)
    assert torch.equal(gray_batch(rgb), rgb_to_gray(rgb)) and torch.equal(gray_batch_of_one(rgb[:1], "x"), rgb_to_gray(rgb[:1]))
    with pytest.raises(ValueError, match="1 x C x H x W"):
        gray_batch_of_one(rgb, "x")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        gray_batch(rgb[:, :2])
