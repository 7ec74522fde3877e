"""R2D2 (Revaud et al., NeurIPS 2019): the ``Quad_L2Net_ConfCFS`` network and a safe loader
for naver/r2d2's checkpoints.

Network (dilated L2-Net, all layers at full resolution): for a ``B x 3 x H x W`` image
(ImageNet mean/std normalised RGB), nine convolutions whose dilation doubles after each
"stride 2" layer instead of striding (channels 32, 32, 64, 64, 128, 128 with 3x3 kernels,
then three 2x2 convs of 128; padding keeps the size), each but the last followed by a
BatchNorm without affine parameters, the first six also by a ReLU. The 128-d output ``x``
gives the descriptors (L2-normalised), the reliability ``softmax(clf(x^2))[1]`` and the
repeatability ``s / (1 + s)`` with ``s = softplus(sal(x^2))`` (the official code's choice).

The layers sit in ``ops`` at the official indices, so the published state dict (keys
``module.ops.<i>...``, ``module.clf``, ``module.sal``) loads with ``strict=True`` once the
``module.`` prefix is removed. The checkpoint's ``net`` string (``"Quad_L2Net_ConfCFS()"``) is
only compared by name: it is never evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import CheckpointError
from .checkpoint import check_finite, check_state_dict, safe_torch_load

ARCHITECTURE = "Quad_L2Net_ConfCFS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (out channels, kernel, dilation, batch norm, relu) of Quad_L2Net with mchan 4, dim 128
_LAYERS = ((32, 3, 1, True, True), (32, 3, 1, True, True), (64, 3, 1, True, True), (64, 3, 2, True, True),
           (128, 3, 2, True, True), (128, 3, 4, True, True), (128, 2, 4, True, False), (128, 2, 8, True, False),
           (128, 2, 16, False, False))


class QuadL2NetConfCFS(nn.Module):
    """``B x 3 x H x W`` -> unit descriptors ``B x 128 x H x W``, reliability and repeatability ``B x 1 x H x W``."""

    def __init__(self) -> None:
        super().__init__()
        ops: list[nn.Module] = []
        cin = 3
        for cout, k, d, bn, relu in _LAYERS:
            ops.append(nn.Conv2d(cin, cout, k, padding=((k - 1) * d) // 2, dilation=d))
            if bn:
                ops.append(nn.BatchNorm2d(cout, affine=False))
            if relu:
                ops.append(nn.ReLU(inplace=True))
            cin = cout
        self.ops = nn.ModuleList(ops)
        self.clf = nn.Conv2d(128, 2, 1)
        self.sal = nn.Conv2d(128, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for op in self.ops:
            x = op(x)
        sq = x ** 2
        reliability = F.softmax(self.clf(sq), dim=1)[:, 1:2]
        s = F.softplus(self.sal(sq))
        return F.normalize(x, p=2, dim=1), reliability, s / (1 + s)


def normalize_rgb(image: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` RGB in [0, 1] -> ImageNet mean/std normalised (r2d2's ``norm_RGB``)."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def architecture_name(net: object) -> str | None:
    """The class name of a checkpoint's ``net`` string (``"Quad_L2Net_ConfCFS()"`` ->
    ``"Quad_L2Net_ConfCFS"``), read with a regular expression; None if it is not a bare call."""
    if not isinstance(net, str):
        return None
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*\(\s*\)\s*", net)
    return m.group(1) if m else None


def load_r2d2_weights(model: QuadL2NetConfCFS, path: str | Path, map_location: str | torch.device = "cpu"
                      ) -> QuadL2NetConfCFS:
    """Strictly load a naver/r2d2 checkpoint (``{"net": str, "state_dict": ...}``, keys may carry
    ``module.``) or a bare state dict; a ``net`` naming another architecture is refused by name."""
    obj = safe_torch_load(path, map_location)
    if isinstance(obj, dict) and "net" in obj:
        name = architecture_name(obj["net"])
        if name != ARCHITECTURE:
            shown = str(obj["net"])[:80]
            raise CheckpointError(f"{path}: net {shown!r} is not {ARCHITECTURE}() (the only R2D2 architecture "
                                  "supported; the string is not evaluated)")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    check_state_dict(model, state, source=str(path))
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)
    return model
