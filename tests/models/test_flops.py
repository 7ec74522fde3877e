"""FLOP counting from the layers (sekd_plugin.models.flops)."""

import pytest
import torch
from torch import nn

from sekd_plugin.models.alike import ALIKE_CONFIGS, ALNet
from sekd_plugin.models.flops import count_flops, model_gflops
from sekd_plugin.models.superpoint import SuperPointNet


def test_hand_counted_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.zeros(1, 3, 10, 10)) == 2 * 8 * 100 * 27
    lin = nn.Linear(16, 4)
    assert count_flops(lin, torch.zeros(5, 16)) == 2 * 5 * 16 * 4
    twice = lambda x: conv(conv(x[:, :3]).sum(1, keepdim=True).expand(-1, 3, -1, -1))  # noqa: E731
    assert count_flops(twice, torch.zeros(1, 3, 10, 10)) == 2 * 2 * 8 * 100 * 27  # every call counts


def test_published_multiply_adds_at_640x480():
    """ALIKE's README (thop, which counts multiply-adds plus some element-wise work) gives ALIKE-N
    7.909, ALIKE-L 19.685 and SuperPoint 26.11 "GFLOPs" at 640x480; the convolutions alone are a
    little less."""
    x = torch.zeros(1, 3, 480, 640)
    n = model_gflops(ALNet(**ALIKE_CONFIGS["alike-n"]), x)["gmac"]
    big = model_gflops(ALNet(**ALIKE_CONFIGS["alike-l"]), x)["gmac"]
    sp = model_gflops(SuperPointNet(), x[:, :1])
    assert 0.95 * 7.909 <= n <= 7.909 and 0.97 * 19.685 <= big <= 19.685
    assert sp["gmac"] == pytest.approx(26.11, rel=0.005) and sp["gflop"] == pytest.approx(2 * sp["gmac"])


def test_models_without_weights_have_none():
    assert model_gflops(nn.ReLU(), torch.zeros(1)) is None
