"""D2-Net (Dusmanu et al., CVPR 2019): dense features, detection and localisation.

Network: VGG16 ``features`` cut after conv4_3 with D2-Net's test-time changes
(``lib/model_test.py`` of mihaidusmanu/d2-net): pool3 is a 2x2 **average** pool with
stride 1 and conv4_1..conv4_3 are dilated by 2 (padding 2), which keeps the features at
1/4 of the input resolution; a final ReLU when ``use_relu`` (the default). The layers live
in one ``nn.Sequential`` at the published indices, so the published checkpoints
(``checkpoint["model"]``, keys ``dense_feature_extraction.model.<i>.weight/bias``,
i in 0 2 5 7 10 12 14 17 19 21) load with ``strict=True``. The detection and localisation
modules of D2-Net hold no parameters. :func:`load_d2net_weights` also accepts the
training-checkpoint extras of D2-Net's ``train.py`` (``args`` namespace, numpy loss values)
under ``weights_only=True``.

Output size: ``h = floor(floor(H/2)/2) - 1`` (two max poolings, then the 2x2 / stride 1
average pool removes one row), same for ``w``.

Detection (test-time "hard" detection): a feature-map location (c, i, j) is a keypoint when
it is the maximum over channels at (i, j), the maximum of its 3x3 neighbourhood in channel
c, and passes the edge test of the 3x3 finite-difference Hessian (``det > 0`` and
``tr^2 / det <= (t + 1)^2 / t``, t = 5). The position is refined by one Newton step on the
same finite differences and kept only if both offsets are below 0.5 cell. All finite
differences use zero padding outside the map, as D2-Net's 3x3 convolutions with padding 1.

Here the Hessian and gradient are only evaluated at the candidates that are already channel
and spatial maxima, instead of densely for all 512 channels: same numbers (up to float
summation order), a fraction of the memory. With ``use_relu`` a candidate with value 0 has an
all-zero neighbourhood (det = 0) and is skipped up front.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_weights

FEATURE_DIM = 512
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)
SCALING_STEPS = 2  # two stride-2 poolings between the image and the feature map

# Caffe preprocessing of the published models: BGR, 0..255, minus the ImageNet mean pixel.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def _vgg16_conv4_3_dilated() -> nn.Sequential:
    def conv(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)

    relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
    return nn.Sequential(
        conv(3, 64), relu(), conv(64, 64), relu(),  # 0-3: conv1_1, conv1_2
        nn.MaxPool2d(2, stride=2),  # 4: pool1
        conv(64, 128), relu(), conv(128, 128), relu(),  # 5-8: conv2_x
        nn.MaxPool2d(2, stride=2),  # 9: pool2
        conv(128, 256), relu(), conv(256, 256), relu(), conv(256, 256), relu(),  # 10-15: conv3_x
        nn.AvgPool2d(2, stride=1),  # 16: pool3 at test time
        conv(256, 512, 2), relu(), conv(512, 512, 2), relu(), conv(512, 512, 2),  # 17-21: conv4_x
    )


class DenseFeatureExtraction(nn.Module):
    """``B x 3 x H x W`` preprocessed image -> ``B x 512 x h x w`` dense features."""

    def __init__(self, use_relu: bool = True) -> None:
        super().__init__()
        self.model = _vgg16_conv4_3_dilated()
        self.use_relu = use_relu
        self.num_channels = FEATURE_DIM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        return F.relu(x) if self.use_relu else x


class D2NetModel(nn.Module):
    """Parameter container with the published key layout; ``forward`` gives dense features."""

    def __init__(self, use_relu: bool = True) -> None:
        super().__init__()
        self.dense_feature_extraction = DenseFeatureExtraction(use_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_feature_extraction(x)


def _training_checkpoint_globals() -> list:
    """Harmless non-tensor objects of D2-Net's ``train.py`` checkpoints.

    Besides ``model`` they hold ``args`` (an ``argparse.Namespace``) and loss histories
    that may be numpy float scalars. These are allowed for ``weights_only=True`` loading;
    everything else is still refused.
    """
    allowed: list = [argparse.Namespace, np.dtype]
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    allowed += [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32) if type(np.dtype(t)) is not np.dtype]
    return allowed


def load_d2net_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Strictly load a D2-Net checkpoint (``{"model": state_dict, ...}`` or a bare state dict)."""
    safe = getattr(torch.serialization, "safe_globals", None)
    with safe(_training_checkpoint_globals()) if safe else contextlib.nullcontext():
        return load_weights(model, path, map_location)


def preprocess(image: torch.Tensor, mode: str = "caffe") -> torch.Tensor:
    """hloc input (``B x 3 x H x W`` RGB in [0, 1]; gray is repeated) -> network input.

    ``caffe``: BGR, times 255, minus :data:`CAFFE_MEAN_BGR` (no std scaling), as D2-Net's
    ``preprocess_image`` on a 0..255 image. ``torch``: ImageNet mean/std on RGB in [0, 1].
    """
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    if mode == "caffe":
        mean = image.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
        return image.flip(1) * 255.0 - mean
    if mode == "torch":
        mean = image.new_tensor(TORCH_MEAN_RGB).view(1, 3, 1, 1)
        std = image.new_tensor(TORCH_STD_RGB).view(1, 3, 1, 1)
        return (image - mean) / std
    raise ValueError(f"preprocessing must be 'caffe' or 'torch', got {mode!r}")


def _neighbourhoods(features: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """3x3 neighbourhoods ``N x 3 x 3`` of ``C x h x w`` features at ``N x 3`` (c, i, j), zero padded."""
    padded = F.pad(features, (1, 1, 1, 1))
    c, i, j = pos[:, 0], pos[:, 1], pos[:, 2]
    di = torch.arange(3, device=features.device)
    rows = (i[:, None] + di[None])[:, :, None]  # N x 3 x 1
    cols = (j[:, None] + di[None])[:, None, :]  # N x 1 x 3
    return padded[c[:, None, None], rows, cols]


def _derivatives(nb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Central finite differences at the centre of ``N x 3 x 3`` patches: di, dj, dii, dij, djj."""
    di = 0.5 * (nb[:, 2, 1] - nb[:, 0, 1])
    dj = 0.5 * (nb[:, 1, 2] - nb[:, 1, 0])
    dii = nb[:, 0, 1] - 2.0 * nb[:, 1, 1] + nb[:, 2, 1]
    djj = nb[:, 1, 0] - 2.0 * nb[:, 1, 1] + nb[:, 1, 2]
    dij = 0.25 * (nb[:, 0, 0] - nb[:, 0, 2] - nb[:, 2, 0] + nb[:, 2, 2])
    return di, dj, dii, dij, djj


def detection_candidates(features: torch.Tensor, banned: torch.Tensor | None = None,
                         use_relu: bool = True) -> torch.Tensor:
    """Channel-wise and 3x3 spatial maxima of ``C x h x w`` features: ``N x 3`` long (c, i, j).

    ``banned`` (``h x w`` bool) removes locations, as D2-Net's multi-scale pyramid.
    Positions are in raster order of (c, i, j), as ``torch.nonzero`` on D2-Net's mask.
    """
    is_channel_max = features == features.max(dim=0, keepdim=True).values
    is_local_max = features == F.max_pool2d(features[None], 3, stride=1, padding=1)[0]
    mask = is_channel_max & is_local_max
    if use_relu:
        mask &= features > 0  # a zero-valued maximum of a ReLU map has det = 0 (never kept)
    if banned is not None:
        mask &= ~banned[None]
    return torch.nonzero(mask)


def edge_test(features: torch.Tensor, pos: torch.Tensor, edge_threshold: float = 5.0) -> torch.Tensor:
    """D2-Net's edge test at ``N x 3`` positions: ``det > 0`` and ``tr^2/det <= (t+1)^2/t``."""
    _, _, dii, dij, djj = _derivatives(_neighbourhoods(features, pos))
    det = dii * djj - dij * dij
    tr = dii + djj
    return (tr * tr / det <= (edge_threshold + 1) ** 2 / edge_threshold) & (det > 0)


def hard_detection(features: torch.Tensor, edge_threshold: float = 5.0, banned: torch.Tensor | None = None,
                   use_relu: bool = True) -> torch.Tensor:
    """D2-Net's ``HardDetectionModule`` on ``C x h x w`` features: detections ``N x 3`` (c, i, j)."""
    pos = detection_candidates(features, banned, use_relu)
    if len(pos):
        pos = pos[edge_test(features, pos, edge_threshold)]
    return pos


def localization_offsets(features: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """D2-Net's ``HandcraftedLocalizationModule`` at ``N x 3`` positions: Newton steps ``N x 2`` (di, dj)."""
    di, dj, dii, dij, djj = _derivatives(_neighbourhoods(features, pos))
    det = dii * djj - dij * dij
    inv00, inv01, inv11 = djj / det, -dij / det, dii / det
    step_i = -(inv00 * di + inv01 * dj)
    step_j = -(inv01 * di + inv11 * dj)
    return torch.stack([step_i, step_j], dim=-1)


def interpolate_features(features: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of ``C x h x w`` at ``N x 2`` float (i, j), as D2-Net.

    Points whose four neighbours (floor/ceil) are not all inside the map are dropped.
    Returns ``(C x M raw samples, indices M of the kept points)``.
    """
    h, w = features.shape[-2:]
    i, j = pos[:, 0], pos[:, 1]
    i0, j0 = torch.floor(i).long(), torch.floor(j).long()
    i1, j1 = torch.ceil(i).long(), torch.ceil(j).long()
    valid = (i0 >= 0) & (j0 >= 0) & (i1 < h) & (j1 < w)
    ids = torch.nonzero(valid)[:, 0]
    i, j, i0, j0, i1, j1 = (t[ids] for t in (i, j, i0, j0, i1, j1))
    a, b = i - i0.to(i.dtype), j - j0.to(j.dtype)
    out = ((1 - a) * (1 - b) * features[:, i0, j0] + (1 - a) * b * features[:, i0, j1]
           + a * (1 - b) * features[:, i1, j0] + a * b * features[:, i1, j1])
    return out, ids


def upscale_positions(pos: torch.Tensor, scaling_steps: int = SCALING_STEPS) -> torch.Tensor:
    """D2-Net's feature-map -> image mapping: ``p -> 2 p + 0.5`` per pooling (``4 p + 1.5`` for 2)."""
    for _ in range(scaling_steps):
        pos = pos * 2 + 0.5
    return pos


def soft_detection_scores(features: torch.Tensor) -> torch.Tensor:
    """D2-Net's training-time soft detection score map ``h x w`` of ``C x h x w`` features.

    ``alpha`` = soft local max (``exp(x / max) / sum of exp over the 3x3 window``, the
    window padded with exp = 1), ``beta`` = ratio to the channel-wise max; the score is the
    channel-wise max of ``alpha * beta``, normalised to sum 1 over the image.
    """
    x = F.relu(features)[None]
    tiny = torch.finfo(x.dtype).tiny  # all-zero maps/pixels give 0 instead of D2-Net's NaN
    exp = torch.exp(x / x.max().clamp_min(tiny))
    sum_exp = F.avg_pool2d(F.pad(exp, [1, 1, 1, 1], mode="constant", value=1.0), 3, stride=1) * 9
    local_max_score = exp / sum_exp
    depth_wise_max_score = x / x.max(dim=1, keepdim=True).values.clamp_min(tiny)
    score = (local_max_score * depth_wise_max_score).max(dim=1).values[0]
    return score / score.sum().clamp_min(tiny)
