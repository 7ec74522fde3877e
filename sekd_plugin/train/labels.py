"""Keypoint labels of a round: step 1 "detect" (detector + affine adaptation) and step 3
"reliability" (descriptor reliability).

Both work on whole training images (padded to multiples of 4), one image at a time with all
of its random references in one batch. Labels are the strongest NMS maxima of the score map
up to a per-image budget (one per ``budget_area`` px^2, at most ``max_keypoints``), above an
optional absolute ``threshold`` floor. Labels are stored per round in an HDF5 file named by
the step that wrote them (``round{r}_detect.h5``, ``round{r}_reliability.h5``)::

    /                    attrs: round, step, kind, num_images, version
    /images/000000       attrs: name (image key), height, width
        keypoints        int16 N x 2, (y, x) pixel indices, strongest first
        scores           float16 N
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..common.errors import InputError
from ..common.files import write_atomic
from ..models.sekd import SEKDNet
from ..ops import nms_mask
from ..ops.correlation import shifted_max_dot
from . import warps
from .data import ImageSet, generator, to_tensor

LABEL_FORMAT = 1
STEP_IDS = {"detect": 1, "descriptor": 2, "reliability": 3, "detector": 4}

Labels = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> ((y, x) int16 N x 2, scores float16 N)


class LabelFileError(InputError):
    """A label file is unreadable or malformed (the message names the file)."""


# --------------------------------------------------------------------------- storage
def write_labels(path: str | Path, labels: Labels, sizes: dict[str, tuple[int, int]] | None = None, **attrs) -> None:
    """Write labels atomically (:func:`sekd_plugin.common.write_atomic`)."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["version"] = LABEL_FORMAT
            f.attrs["num_images"] = len(labels)
            for k, v in attrs.items():
                f.attrs[k] = v
            grp = f.create_group("images")
            for i, key in enumerate(sorted(labels)):
                yx, sc = labels[key]
                g = grp.create_group(f"{i:06d}")
                g.attrs["name"] = key
                if sizes and key in sizes:
                    g.attrs["height"], g.attrs["width"] = sizes[key][:2]
                g.create_dataset("keypoints", data=np.asarray(yx, dtype=np.int16).reshape(-1, 2))
                g.create_dataset("scores", data=np.asarray(sc, dtype=np.float16).reshape(-1))

    write_atomic(path, write)


def read_labels_with_sizes(path: str | Path) -> tuple[Labels, dict[str, tuple[int, int]], dict]:
    """``(labels, image sizes (H, W), root attributes)`` of a label file.

    A truncated, corrupt or malformed file raises :class:`LabelFileError` naming it.
    """
    out: Labels = {}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            if attrs.get("version") != LABEL_FORMAT or "images" not in f:
                raise LabelFileError(f"{path}: not a label file of this trainer (version {attrs.get('version')!r})")
            for g in f["images"].values():
                name = g.attrs["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                yx, sc = g["keypoints"][()], g["scores"][()]
                if yx.ndim != 2 or yx.shape[1] != 2 or len(sc) != len(yx):
                    raise LabelFileError(f"{path}: malformed labels of image {name}")
                out[name] = (yx, sc)
                if "height" in g.attrs:
                    sizes[name] = (int(g.attrs["height"]), int(g.attrs["width"]))
            if len(out) != int(attrs.get("num_images", -1)):
                raise LabelFileError(f"{path}: holds {len(out)} images, its header says {attrs.get('num_images')}")
    except LabelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError ... on damage
        raise LabelFileError(f"{path}: unreadable label file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return out, sizes, attrs


def read_labels(path: str | Path) -> tuple[Labels, dict]:
    """``(labels, root attributes)`` of a label file."""
    labels, _, attrs = read_labels_with_sizes(path)
    return labels, attrs


def label_stats(labels: Labels, sizes: dict[str, tuple[int, int]]) -> dict:
    """Mean keypoints per image and the negative-class weight of the focal loss.

    The weight is the release's ``avg_points / (avg_pixels - avg_points)``.
    """
    n = [len(v[0]) for v in labels.values()]
    pixels = [sizes[k][0] * sizes[k][1] for k in labels]
    avg_pts = float(np.mean(n)) if n else 0.0
    avg_pix = float(np.mean(pixels)) if pixels else 1.0
    return {
        "keypoints_per_image": avg_pts,
        "keypoints_min": int(min(n)) if n else 0,
        "keypoints_max": int(max(n)) if n else 0,
        "images": len(n),
        "negative_weight": avg_pts / max(avg_pix - avg_pts, 1.0),
    }


def maxima_stats(per_image: list[np.ndarray]) -> dict:
    """Round summary of the per-image NMS statistics ``[maxima, labels, p10, p50, p90, floor-passing]``."""
    if not per_image:
        return {}
    a = np.stack(per_image)
    return {
        "nms_maxima_per_image": float(a[:, 0].mean()),
        "nms_maxima_p10": float(np.nanmedian(a[:, 2])),
        "nms_maxima_median": float(np.nanmedian(a[:, 3])),
        "nms_maxima_p90": float(np.nanmedian(a[:, 4])),
        "above_threshold_per_image": float(a[:, 5].mean()),
        "labels_per_image_min": int(a[:, 1].min()),
        "labels_per_image_median": float(np.median(a[:, 1])),
    }


# --------------------------------------------------------------------------- helpers
def _pad4(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``1 x C x H x W`` to multiples of 4; returns the image and its ``1 x 1`` content mask."""
    h, w = image.shape[-2:]
    ph, pw = -h % 4, -w % 4
    valid = torch.ones_like(image[:, :1])
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        valid = F.pad(valid, (0, pw, 0, ph))
    return image, valid


def budget(size: tuple[int, int], area: float, max_kp: int) -> int:
    """Label budget of an image: one per ``area`` px^2 (0 = unlimited), at most ``max_kp``."""
    h, w = size
    if area <= 0:
        return int(max_kp)
    return int(min(max_kp, max(1, round(h * w / area))))


def select_labels(
    score: torch.Tensor, size: tuple[int, int], radius: int, border: int, threshold: float, area: float, max_kp: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strongest NMS maxima of an ``H' x W'`` score map within the ``size = (H, W)`` image.

    Returns ``(yx N x 2 long, scores N, stats 6)`` with ``stats = [maxima, labels, p10, p50,
    p90 of the maxima, maxima above the threshold]`` (on the score's device; NaN quantiles
    when there is no maximum).
    """
    h, w = size
    region = torch.zeros_like(score, dtype=torch.bool)
    region[border : h - border, border : w - border] = True
    mask = nms_mask(score[None, None], radius)[0, 0] & region
    flat = score.flatten()
    idx = torch.nonzero(mask.flatten(), as_tuple=True)[0]
    vals = flat[idx]
    order = torch.sort(vals, descending=True, stable=True)[1]
    above = vals[order] > threshold
    n_above = above.sum()
    k = budget(size, area, max_kp)
    keep = order[:k][above[:k]]
    idx, sc = idx[keep], vals[keep]
    if vals.numel():
        q = torch.quantile(vals.float(), vals.new_tensor([0.1, 0.5, 0.9], dtype=torch.float32))
    else:
        q = torch.full((3,), float("nan"), device=score.device)
    stats = torch.cat([torch.stack([vals.new_tensor(vals.numel(), dtype=torch.float32), vals.new_tensor(idx.numel(), dtype=torch.float32)]), q, n_above.float()[None]])
    ww = score.shape[-1]
    return torch.stack([idx // ww, idx % ww], dim=-1), sc, stats


def _chunks(n: int, size: int):
    size = max(1, size)
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _references(image: torch.Tensor, valid: torch.Tensor, num: int, conf, gen: torch.Generator):
    """``num`` colour-jittered random affine warps of a padded ``1 x C x H x W`` image (same size).

    Returns gray ``refs num x 1 x H x W``, their content masks, ``H`` and ``H^-1``
    (``num x 3 x 3``; inverted on the host in float64, no device sync).
    """
    size = image.shape[-2:]
    H = warps.random_warp_from_conf(num, size, size, conf.ref_warp, gen)
    Hinv = torch.linalg.inv(H.double()).float()
    jit = warps.random_jitter(num, conf.ref_warp, gen)
    H, Hinv = H.to(image.device), Hinv.to(image.device)
    gray = warps.jitter_to_gray(image.expand(num, -1, -1, -1), jit, valid.expand(num, -1, -1, -1))
    refs = warps.warp_images(gray, H, size)
    ref_valid = warps.warp_valid_mask(H, size, size, valid.expand(num, -1, -1, -1))
    return refs, ref_valid, H, Hinv


def _gray(image: torch.Tensor) -> torch.Tensor:
    return warps.rgb_to_gray(image) if image.shape[1] == 3 else image


class LabelNet(torch.nn.Module):
    """A frozen copy of SEKD laid out for label inference on a CPU.

    Channels-last convolutions (oneDNN's fast layout) and the grouped transposed convolutions
    as dense block-diagonal ones (oneDNN has no fast grouped deconvolution: 2x on that layer).
    Same function as the network, to float rounding (~1e-6). :meth:`logits` skips the
    descriptor head, which step 1 does not use.
    """

    def __init__(self, net: SEKDNet):
        super().__init__()
        import copy

        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        for name in ("deconv0", "deconv1"):
            seq = getattr(self.net, name)
            seq[2] = _dense_deconv(seq[2])
        self.net = self.net.to(memory_format=torch.channels_last)

    def _trunk(self, image: torch.Tensor):
        return self.net.trunk(image.contiguous(memory_format=torch.channels_last))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """``B x 2 x H x W`` detector logits of ``B x 1 x H x W`` images."""
        return self.net.detector(self._trunk(image)[1]).contiguous()

    def features(self, image: torch.Tensor):
        """As :meth:`SEKDNet.features`, outputs in the standard (NCHW) layout."""
        f2, u0 = self._trunk(image)
        return self.net.detector(u0).contiguous(), self.net.descriptor(f2).contiguous(), u0.contiguous()


def _dense_deconv(m: torch.nn.ConvTranspose2d) -> torch.nn.ConvTranspose2d:
    if m.groups == 1:
        return m
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    dense = torch.nn.ConvTranspose2d(cin, cout, m.kernel_size, stride=m.stride, padding=m.padding,
                                     output_padding=m.output_padding, bias=m.bias is not None).to(m.weight)
    w = torch.zeros_like(dense.weight)  # cin x cout x k x k
    ci, co = cin // g, cout // g
    for i in range(g):  # block i: input channels i*ci.., output channels i*co..
        w[i * ci : (i + 1) * ci, i * co : (i + 1) * co] = m.weight[i * ci : (i + 1) * ci]
    with torch.no_grad():
        dense.weight.copy_(w)
        if m.bias is not None:
            dense.bias.copy_(m.bias)
    return dense


def label_network(net, fast: bool = True):
    """The network to compute labels with: a :class:`LabelNet` when ``fast`` (and the net is a
    plain :class:`SEKDNet`), else ``net`` itself."""
    if fast and type(net) is SEKDNet:
        return LabelNet(net).to(next(net.parameters()).device)
    return net


def _logits(net, x: torch.Tensor) -> torch.Tensor:
    return net.logits(x) if isinstance(net, LabelNet) else net.features(x)[0]


# --------------------------------------------------------------------------- step 1
@torch.no_grad()
def detector_score(net, image: torch.Tensor, conf, gen: torch.Generator) -> torch.Tensor:
    """Keypoint probability of a ``1 x C x H x W`` image (C = 3 RGB or 1 gray) averaged with its references.

    The image and its ``detect.num_refs`` references go through the network together
    (chunks of ``detect.ref_chunk``). Every reference's probability is warped back and
    averaged only where it is valid (inside the warped image, outside ``detect.ref_border``).
    Returns the ``H' x W'`` map of the padded size.
    """
    image, valid = _pad4(image)
    size = image.shape[-2:]
    num = int(conf.detect.num_refs)
    gray = _gray(image)
    if num == 0:
        return torch.softmax(_logits(net, gray), dim=1)[0, 1]
    refs, ref_valid, _, Hinv = _references(image, valid, num, conf, gen)
    b = int(conf.detect.ref_border)
    if b > 0:
        ref_valid[..., :b, :] = False
        ref_valid[..., -b:, :] = False
        ref_valid[..., :, :b] = False
        ref_valid[..., :, -b:] = False
    batch = torch.cat([gray, refs])  # the image and its references: one forward
    total = torch.zeros(1, 1, *size, device=image.device)
    count = torch.zeros_like(total)
    for s, e in _chunks(num + 1, conf.detect.ref_chunk):
        p = torch.softmax(_logits(net, batch[s:e]).float(), dim=1)[:, 1:]
        if s == 0:  # the image itself: weight 1 everywhere
            total += p[:1]
            count += 1.0
            p, lo = p[1:], 0
        else:
            lo = s - 1
        hi = lo + p.shape[0]
        if p.shape[0]:
            m = ref_valid[lo:hi].float()
            total += warps.warp_images(p * m, Hinv[lo:hi], size).sum(0, keepdim=True)
            count += warps.warp_images(m, Hinv[lo:hi], size).sum(0, keepdim=True)
    return (total / count)[0, 0]


def detect_keypoints(net, image: torch.Tensor, conf, gen: torch.Generator):
    """Step-1 labels of a ``1 x C x H x W`` image: ``(yx N x 2, scores N, stats 6)``."""
    h, w = image.shape[-2:]
    score = detector_score(net, image, conf, gen)
    d = conf.detect
    return select_labels(score, (h, w), d.nms_radius, d.border, d.threshold, d.budget_area, d.max_keypoints)


def random_keypoints(size: tuple[int, int], num: int, border: int, gen: torch.Generator):
    """``num`` distinct random pixels (fewer if the image is tiny), score 0.5."""
    h, w = size
    hh, ww = max(h - 2 * border, 1), max(w - 2 * border, 1)
    num = min(num, hh * ww)
    idx = torch.randperm(hh * ww, generator=gen)[:num]
    yx = torch.stack([idx // ww + border, idx % ww + border], dim=-1)
    yx[:, 0].clamp_(0, h - 1)
    yx[:, 1].clamp_(0, w - 1)
    return yx, torch.full((num,), 0.5)


# --------------------------------------------------------------------------- step 3
def _offsets(radius: int, stride: int, device) -> torch.Tensor:
    """``K x 2`` (x, y) neighbour offsets, ``K = (2r+1)^2 - 1``, in cells of the map."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32) * stride
    oy, ox = torch.meshgrid(r, r, indexing="ij")
    off = torch.stack([ox.flatten(), oy.flatten()], dim=-1)
    return off[(off != 0).any(-1)]


def _cos_dist(cos: torch.Tensor) -> torch.Tensor:
    """Distance of unit vectors from their cosine (``+1e-4`` as the release)."""
    return torch.sqrt((2.0 - 2.0 * cos).clamp(min=0.0) + 1e-4)


def _sample(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear read of ``R x C x h x w`` maps at map-pixel coordinates ``R x ... x 2`` (cell centres integer)."""
    h, w = maps.shape[-2:]
    g = grid * grid.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]) - 1.0
    return F.grid_sample(maps, g.to(maps.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def _ratio_reference(target: torch.Tensor, ref: torch.Tensor, grid: torch.Tensor, offsets: torch.Tensor, eps: float, chunk: int) -> torch.Tensor:
    """distinctiveness / (repeatability + eps) with the neighbourhood on the reference's grid (the release).

    Args:
        target: ``C x h x w`` unit features of the target.
        ref: ``R x C x h' x w'`` raw features of the references.
        grid: ``R x h x w x 2`` correspondences of the target cells in the references' map
            coordinates.
        offsets: ``K x 2`` neighbour offsets (cells).
        chunk: neighbours sampled together; each chunk is one ``grid_sample`` writing
            ``R x C x h x (w * chunk)`` and one fused dot/norm reduction (no per-neighbour pass).
    Returns:
        ``R x h x w``. Each neighbour is sampled bilinearly and normalised; the nearest one is
        the one with the largest cosine, so the distance is taken once at the end.
    """
    r, _, h, w = grid.shape[0], target.shape[0], grid.shape[1], grid.shape[2]
    s = _sample(ref, grid)  # R x C x h x w
    dot = torch.einsum("rchw,chw->rhw", s, target)
    rep = _cos_dist(dot / torch.linalg.vector_norm(s, dim=1).clamp(min=1e-12))
    best = None
    ref_cl = ref.contiguous(memory_format=torch.channels_last)  # ~3x faster grid_sample on CPU
    tgt = target[None, :, None]  # 1 x C x 1 x h x w: broadcast over the k neighbours (outer dim, vectorises)
    for a in range(0, offsets.shape[0], chunk):
        off = offsets[a : a + chunk]
        k = off.shape[0]
        g = (grid[:, None] + off.view(1, k, 1, 1, 2)).reshape(r, k * h, w, 2)
        s = _sample(ref_cl, g).view(r, -1, k, h, w)
        dot = (s * tgt).sum(1)  # R x k x h x w
        norm2 = (s * s).sum(1)
        c = (dot * norm2.clamp(min=1e-24).rsqrt()).amax(1)
        best = c if best is None else torch.maximum(best, c)
    return _cos_dist(best) / (rep + eps)


def _ratio_target(target: torch.Tensor, ref: torch.Tensor, grid: torch.Tensor, offsets: torch.Tensor, eps: float) -> torch.Tensor:
    """As :func:`_ratio_reference`, the neighbourhood laid out on the target's grid.

    The references' features are warped into the target once (bilinear, normalised); the
    neighbour ``o`` of cell ``p`` is the reference feature at the correspondence of ``p + o``,
    i.e. at ``q + A o`` (``A`` the warp's local linear part) instead of ``q + o``. Every
    neighbour is then a shifted view, which is several times cheaper on a CPU.
    """
    warped = F.normalize(_sample(ref, grid), dim=1)  # R x C x h x w
    rep = _cos_dist(torch.einsum("rchw,chw->rhw", warped, target))
    h, w = target.shape[-2:]
    best = torch.full_like(rep, -2.0)
    for ox, oy in offsets.long().tolist():  # 48 shifted views; no device sync
        ty, tx = slice(max(0, -oy), h - max(0, oy)), slice(max(0, -ox), w - max(0, ox))
        sy, sx = slice(max(0, oy), h + min(0, oy)), slice(max(0, ox), w + min(0, ox))
        c = torch.einsum("rchw,chw->rhw", warped[:, :, sy, sx], target[:, ty, tx])
        best[:, ty, tx] = torch.maximum(best[:, ty, tx], c)
    return _cos_dist(best) / (rep + eps)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=1)`` (same eps) in one pass over an NCHW map (~1.6x faster on CPU)."""
    return x * (x * x).sum(1, keepdim=True).clamp_min_(1e-24).rsqrt_()


def _ratio_in_reference(
    target: torch.Tensor, ref: torch.Tensor, grid: torch.Tensor, Hinv: torch.Tensor, scale: float, offsets: torch.Tensor, eps: float
) -> torch.Tensor:
    """As :func:`_ratio_reference` (the neighbourhood on the reference's grid), computed in the
    reference's frame: the fast path.

    The target's features are moved into each reference once (bilinear, normalised); there the
    neighbours of a reference cell are integer-shifted slices of the reference's own unit
    features (:func:`sekd_plugin.ops.correlation.shifted_max_dot`, tiled), so no neighbour is
    resampled. The ratio map on the reference's cells is then read bilinearly at each target
    cell's correspondence. Differs from the exact path only in where the bilinear interpolation
    happens (of the ratio instead of the features).

    Args:
        target: ``C x h x w`` unit features of the target.
        ref: ``R x C x h' x w'`` raw features of the references.
        grid: ``R x h x w x 2`` correspondences of the target cells in the references' map coordinates.
        Hinv: ``R x 3 x 3`` reference pixels -> target pixels.
        scale: pixels per map cell (1 or 4); cell centres lie at ``scale * cell + (scale - 1) / 2`` px.
        offsets: ``K x 2`` integer neighbour offsets (cells).
    Returns:
        ``R x h x w``.
    """
    r = ref.shape[0]
    size = ref.shape[-2:]
    shift = (scale - 1) / 2.0
    feat = _unit(ref)
    cells = warps.pixel_grid(size, device=ref.device) * scale + shift
    back = warps.transform_points(Hinv, cells.reshape(1, -1, 2).expand(r, -1, -1)).view(r, *size, 2)
    src = target[None].contiguous(memory_format=torch.channels_last).expand(r, -1, -1, -1)  # CL: faster grid_sample
    moved = _unit(_sample(src, (back - shift) / scale).contiguous())  # zero outside the target
    rep = _cos_dist((moved * feat).sum(1))
    best = shifted_max_dot(moved, feat, offsets.long())
    ratio = _cos_dist(best) / (rep + eps)  # R x h' x w' on the references' cells
    return _sample(ratio[:, None], grid)[:, 0]


def _offset_chunk(r: int, c: int, h: int, w: int, k: int, device: torch.device) -> int:
    """Neighbours per ``grid_sample`` so that one chunk stays within a memory budget."""
    budget = (1 << 30) if device.type == "cuda" else (1 << 27)  # elements of the sampled block
    return int(max(1, min(k, budget // max(r * c * h * w, 1))))


@torch.no_grad()
def reliability_score(net, image: torch.Tensor, conf, gen: torch.Generator) -> torch.Tensor:
    """Per-pixel descriptor reliability of a ``1 x C x H x W`` image (map of the padded size).

    For every reference (a random warp of the image) and target cell ``p`` with
    correspondence ``q``: repeatability = distance between the features at ``p`` and ``q``,
    distinctiveness = smallest distance between the feature at ``p`` and the reference's
    features on a ``(2r+1)^2 - 1`` grid (``stride`` cells of the feature's own map apart)
    around ``q``; ratio = distinctiveness / (repeatability + eps), averaged over the
    references where ``q`` and its neighbourhood lie inside the reference. Two terms, averaged:

    * the 1/4-resolution descriptor, with ``reliability.desc_mode = "native"`` evaluated on
      its own cells (neighbours 2 cells = 8 px apart) and the ratio map upsampled bilinearly
      (the release), or ``"upsampled"`` on the map upsampled to the image (2 px apart);
    * the full-resolution feature ``u0`` (neighbours 2 px apart).
    """
    rc = conf.reliability
    image, valid = _pad4(image)
    size = image.shape[-2:]
    dev = image.device
    num = int(rc.num_refs)
    refs, _, H, Hinv = _references(image, valid, num, conf, gen)
    # the target is colour-jittered too (the release's get_image_pair)
    tgt_gray = warps.jitter_to_gray(image, warps.random_jitter(1, conf.ref_warp, gen), valid)
    _, desc0, low0 = net.features(tgt_gray)
    desc0, low0 = desc0.float(), low0.float()
    offsets = _offsets(rc.radius, rc.stride, dev)
    pix = warps.pixel_grid(size, device=dev)
    content = valid[0, 0] > 0

    # name -> (target positions h x w x 2 (full-res px), map scale, content mask, unit target C x h x w)
    terms = {}
    if rc.use_descriptor:
        if rc.desc_mode == "native":
            cells = warps.pixel_grid(desc0.shape[-2:], device=dev) * 4.0 + 1.5  # cell centres in px
            cmask = F.avg_pool2d(valid, 4)[0, 0] > 0.999
            terms["desc"] = (cells, 4.0, cmask, F.normalize(desc0, dim=1)[0])
        else:
            up = F.normalize(warps.sample_coarse(desc0, pix[None], size), dim=1)[0]
            terms["desc"] = (pix, 1.0, content, up)
    if rc.use_low_level:
        terms["low"] = (pix, 1.0, content, F.normalize(low0, dim=1)[0])
    sums = {k: torch.zeros(v[0].shape[:2], device=dev) for k, v in terms.items()}
    counts = {k: torch.zeros(v[0].shape[:2], device=dev) for k, v in terms.items()}

    for s, e in _chunks(num, rc.ref_chunk):
        _, desc_r, low_r = net.features(refs[s:e])
        for name, (pos, scale, cmask, tgt) in terms.items():
            if name == "desc" and rc.desc_mode == "upsampled":
                feat = F.interpolate(desc_r.float(), size=size, mode="bilinear", align_corners=False)
            else:
                feat = (desc_r if name == "desc" else low_r).float()
            # correspondences in full-res px, then in the feature map's cells (pixel centres
            # of a 1/4 map: x_px = 4 x_cell + 1.5, as bilinear upsampling)
            q = warps.transform_points(H[s:e], pos.reshape(1, -1, 2).expand(e - s, -1, -1)).view(e - s, *pos.shape)
            grid = (q - (scale - 1) / 2.0) / scale
            ok = (warps.inside(grid, feat.shape[-2:], float(rc.radius * rc.stride)) & cmask[None]).float()
            if rc.neighbours == "target":
                ok = ok * warps.inside(warps.pixel_grid(tgt.shape[-2:], device=dev), tgt.shape[-2:], float(rc.radius * rc.stride)).float()[None]
                ratio = _ratio_target(tgt, feat, grid, offsets, rc.eps)
            elif rc.fast:
                ratio = _ratio_in_reference(tgt, feat, grid, Hinv[s:e], scale, offsets, rc.eps)
            else:
                chunk = _offset_chunk(e - s, feat.shape[1], *grid.shape[1:3], offsets.shape[0], dev)
                ratio = _ratio_reference(tgt, feat, grid, offsets, rc.eps, chunk)
            sums[name] += (ratio * ok).sum(0)
            counts[name] += ok.sum(0)
    maps = []
    for name in terms:
        m = sums[name] / (counts[name] + 1e-2)
        if m.shape != size:  # native descriptor term: cells -> pixels
            m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        maps.append(m)
    return torch.stack(maps).mean(0)


def reliability_keypoints(net, image: torch.Tensor, conf, gen: torch.Generator):
    """Step-3 labels of a ``1 x C x H x W`` image: ``(yx N x 2, scores N, stats 6)``."""
    h, w = image.shape[-2:]
    score = reliability_score(net, image, conf, gen)
    r = conf.reliability
    return select_labels(score, (h, w), r.nms_radius, r.border, r.threshold, r.budget_area, r.max_keypoints)


# --------------------------------------------------------------------------- a whole step
def compute_labels(
    kind: str,
    net,
    images: ImageSet,
    indices: list[int],
    conf,
    seed: int,
    round_idx: int,
    device: torch.device,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[Labels, dict[str, tuple[int, int]], list[np.ndarray]]:
    """Labels of ``indices`` for ``kind`` in {"random", "detect", "reliability"}.

    Returns ``(labels, sizes (H, W), per-image NMS statistics)`` (see :func:`select_labels`).
    """
    from tqdm import tqdm

    was_training = net.training
    net.eval()
    fast = bool(conf.reliability.fast if kind == "reliability" else conf.detect.fast)
    label_net = label_network(net, fast) if kind != "random" else net
    out: Labels = {}
    sizes: dict[str, tuple[int, int]] = {}
    stats: list[np.ndarray] = []
    step = STEP_IDS["reliability" if kind == "reliability" else "detect"]
    try:
        for idx in tqdm(indices, desc=desc or kind, disable=not progress, leave=False, dynamic_ncols=True):
            img = images.image(idx)
            key = images.keys[idx]
            sizes[key] = tuple(img.shape[:2])
            gen = generator(seed, round_idx, step, idx)
            if kind == "random":
                yx, sc = random_keypoints(img.shape[:2], conf.detect.random_keypoints, conf.detect.border, gen)
            else:
                x = to_tensor(img).to(device, non_blocking=True)
                fn = detect_keypoints if kind == "detect" else reliability_keypoints
                yx, sc, st = fn(label_net, x, conf, gen)
                stats.append(st.cpu().numpy())
            out[key] = (yx.cpu().numpy().astype(np.int16), sc.float().cpu().numpy().astype(np.float16))
    finally:
        net.train(was_training)
    return out, sizes, stats
