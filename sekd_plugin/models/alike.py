"""ALIKE (Zhao et al., IEEE TMM 2022): the ALNet network, its four published sizes and a
checkpoint check that names the size a file was trained for.

ALNet, for a ``B x 3 x H x W`` RGB image in [0, 1] (H, W multiples of 32):

* encoder: ``block1`` (two 3x3 conv + BN + ReLU, c1, full resolution), 2x2 max pool,
  ``block2`` (a residual block with a 1x1 conv shortcut, c2, 1/2), 4x4 max pool, ``block3``
  (c3, 1/8), 4x4 max pool, ``block4`` (c4, 1/32); the 3x3 and 1x1 convs of the blocks'
  main paths carry no bias (torchvision's ``conv3x3``), the shortcuts do;
* aggregation: a bias-free 1x1 conv + ReLU per scale to ``dim / 4`` channels, bilinear
  upsampling (``align_corners=True``) of scales 2-4 to full resolution, concatenation;
* head: (``alike-l`` only) a bias-free 1x1 conv + ReLU, then a bias-free 1x1 conv to
  ``dim + 1`` channels: ``dim`` descriptor channels and one score logit (sigmoid).

The parameter names are those of the official ``ALNet`` so its ``alike-*.pth`` files (bare
state dicts) load with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import CheckpointError
from .checkpoint import check_finite, load_state_dict

STRIDE = 32  # input sides must be multiples of this (three poolings: 2, 4, 4)

# The official sizes (alike.py ``configs``); the detection radius is 2 for all of them.
ALIKE_CONFIGS: dict[str, dict[str, Any]] = {
    "alike-t": {"c1": 8, "c2": 16, "c3": 32, "c4": 64, "dim": 64, "single_head": True},
    "alike-s": {"c1": 8, "c2": 16, "c3": 48, "c4": 96, "dim": 96, "single_head": True},
    "alike-n": {"c1": 16, "c2": 32, "c3": 64, "c4": 128, "dim": 128, "single_head": True},
    "alike-l": {"c1": 32, "c2": 64, "c3": 128, "c4": 128, "dim": 128, "single_head": False},
}


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


class ConvBlock(nn.Module):
    """Two (3x3 conv, BN, ReLU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class ResBlock(nn.Module):
    """ResNet basic block (stride 1) whose shortcut is a 1x1 conv with bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.downsample = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class ALNet(nn.Module):
    """``B x 3 x H x W`` (H, W multiples of 32) -> scores ``B x 1 x H x W`` in (0, 1) and raw
    descriptors ``B x dim x H x W`` (not normalised)."""

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 128, c4: int = 128, dim: int = 128,
                 single_head: bool = True) -> None:
        super().__init__()
        self.dim, self.single_head = dim, single_head
        self.block1 = ConvBlock(3, c1)
        self.block2 = ResBlock(c1, c2)
        self.block3 = ResBlock(c2, c3)
        self.block4 = ResBlock(c3, c4)
        self.conv1 = _conv1x1(c1, dim // 4)
        self.conv2 = _conv1x1(c2, dim // 4)
        self.conv3 = _conv1x1(c3, dim // 4)
        self.conv4 = _conv1x1(dim, dim // 4)  # the official net feeds block4 (c4 == dim) here
        if not single_head:
            self.convhead1 = _conv1x1(dim, dim)
        self.convhead2 = _conv1x1(dim, dim + 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.block1(image)
        x2 = self.block2(F.max_pool2d(x1, 2, 2))
        x3 = self.block3(F.max_pool2d(x2, 4, 4))
        x4 = self.block4(F.max_pool2d(x3, 4, 4))

        def up(x: torch.Tensor, factor: int) -> torch.Tensor:
            return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)

        feats = torch.cat([F.relu(self.conv1(x1)), up(F.relu(self.conv2(x2)), 2),
                           up(F.relu(self.conv3(x3)), 8), up(F.relu(self.conv4(x4)), 32)], dim=1)
        if not self.single_head:
            feats = F.relu(self.convhead1(feats))
        x = self.convhead2(feats)
        return torch.sigmoid(x[:, -1:]), x[:, :-1]


def alike_size_of(state: Mapping[str, torch.Tensor]) -> str | None:
    """The official size (``alike-t`` ...) whose shapes a state dict has, or None."""
    try:
        shape = {"c1": state["block1.conv1.weight"].shape[0], "c2": state["block2.conv1.weight"].shape[0],
                 "c3": state["block3.conv1.weight"].shape[0], "c4": state["block4.conv1.weight"].shape[0],
                 "dim": state["convhead2.weight"].shape[1], "single_head": "convhead1.weight" not in state}
    except (KeyError, IndexError, AttributeError):
        return None
    return next((name for name, cfg in ALIKE_CONFIGS.items() if cfg == shape), None)


def load_alike_weights(model: ALNet, path: str | Path, size: str, map_location: str | torch.device = "cpu") -> ALNet:
    """Strictly load ``path`` into ``model`` (an ALNet of ``size``); weights of another size
    raise one line naming both."""
    from .checkpoint import check_state_dict

    state = load_state_dict(path, map_location)
    found = alike_size_of(state)
    if found is not None and found != size:
        raise CheckpointError(f"{path}: holds {found} weights, but the conf asks for {size}")
    check_state_dict(model, state, source=str(path))
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)
    return model
