"""The SEKD network (Song et al., arXiv 2006.05077), layer for layer as the official release.

State-dict keys and shapes are those of the authors' ``sekd.pth`` (see
``../shared/weights/README.md``), so the official checkpoints load with ``strict=True``.

Input: gray image ``B x 1 x H x W`` in [0, 1], H and W multiples of 4.
Output: keypoint probability ``B x 1 x H x W`` (softmax channel 1) and the raw (not
normalised) descriptor map ``B x 128 x H/4 x W/4``.
"""

from __future__ import annotations

import torch
from torch import nn


class PreActBlock(nn.Module):
    """ResNet-v2 block: BN -> ReLU -> 3x3 conv, plus an identity or 1x1 projection shortcut.

    Attribute names (``convb``, ``conv_residual``) follow the official checkpoint.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        # in-place ReLU / addition: same numbers, fewer large allocations (the full-resolution
        # maps are memory-bound on CPU); neither overwrites a tensor autograd still needs
        self.convb = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=True),
        )
        self.conv_residual = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.conv_residual is None else self.conv_residual(x)
        out = self.convb(x)
        out += shortcut  # conv branch + shortcut, as the official code
        return out


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    """BN -> ReLU -> grouped 3x3 transposed conv that exactly doubles H and W."""
    return nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, groups=8),
    )


class SEKDNet(nn.Module):
    """SEKD detector + descriptor network (663,566 parameters incl. BN statistics)."""

    descriptor_dim = 128
    stride = 4  # descriptor map resolution relative to the input

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 32, 5, padding=2)
        self.resblock0 = nn.Sequential(PreActBlock(32, 32), PreActBlock(32, 32), PreActBlock(32, 32))
        self.resblock1 = nn.Sequential(PreActBlock(32, 64, 2), PreActBlock(64, 64), PreActBlock(64, 64))
        self.resblock2 = nn.Sequential(PreActBlock(64, 128, 2), PreActBlock(128, 128), PreActBlock(128, 128))
        self.deconv0 = _up_block(128, 64)
        self.deconv1 = _up_block(64, 32)
        self.detector = nn.Conv2d(32, 2, 3, padding=1)
        self.descriptor = PreActBlock(128, 128)

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared trunk.

        Args:
            image: ``B x 1 x H x W`` in [0, 1], H and W multiples of 4.
        Returns:
            logits ``B x 2 x H x W`` (detector, before softmax), raw descriptor map
            ``B x 128 x H/4 x W/4`` and the full-resolution detector feature ``u0``
            ``B x 32 x H x W`` (the trainer's "low-level descriptor").
        """
        f2, u0 = self.trunk(image)
        return self.detector(u0), self.descriptor(f2), u0

    def trunk(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder-decoder before the two heads: ``(f2 B x 128 x H/4 x W/4, u0 B x 32 x H x W)``."""
        f0 = self.resblock0(self.conv0(image))
        f1 = self.resblock1(f0)
        f2 = self.resblock2(f1)
        u1 = self.deconv0(f2)
        u1 += f1
        u0 = self.deconv1(u1)
        u0 += f0
        return f2, u0

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(prob B x 1 x H x W, raw descriptor map B x 128 x H/4 x W/4)``."""
        _check_input(image)
        logits, desc, _ = self.features(image)
        prob = torch.softmax(logits, dim=1)[:, 1:]
        return prob, desc


def _check_input(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 1:
        raise ValueError(f"SEKDNet expects a B x 1 x H x W gray image, got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"SEKDNet needs H and W multiples of 4 and >= 4, got {h} x {w}")
