"""Keypoint labels of a round: step 1 (detector + affine adaptation) and step 3 (reliability).

Both work on whole training images (padded to multiples of 4), one image at a time with all
of its random references in one batch. Labels are stored per round in an HDF5 file::

    /                    attrs: round, step, kind, num_images, version
    /images/000000       attrs: name (image key), height, width
        keypoints        int16 N x 2, (y, x) pixel indices, strongest first
        scores           float16 N
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..ops import nms_mask, select_keypoints
from . import warps
from .data import ImageSet, generator, to_tensor

LABEL_FORMAT = 1
STEP_IDS = {"detect": 1, "descriptor": 2, "reliability": 3, "detector": 4}

Labels = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> ((y, x) int16 N x 2, scores float16 N)


# --------------------------------------------------------------------------- storage
def write_labels(path: str | Path, labels: Labels, sizes: dict[str, tuple[int, int]] | None = None, **attrs) -> None:
    """Write labels atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
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
                g.attrs["height"], g.attrs["width"] = sizes[key]
            g.create_dataset("keypoints", data=np.asarray(yx, dtype=np.int16).reshape(-1, 2))
            g.create_dataset("scores", data=np.asarray(sc, dtype=np.float16).reshape(-1))
    os.replace(tmp, path)


def read_labels(path: str | Path) -> tuple[Labels, dict]:
    """``(labels, root attributes)`` of a label file."""
    out: Labels = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        for g in f["images"].values():
            name = g.attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            out[name] = (g["keypoints"][()], g["scores"][()])
    return out, attrs


def read_labels_with_sizes(path: str | Path) -> tuple[Labels, dict[str, tuple[int, int]], dict]:
    """``(labels, image sizes (H, W), root attributes)`` of a label file."""
    labels, attrs = read_labels(path)
    sizes = {}
    with h5py.File(path, "r") as f:
        for g in f["images"].values():
            name = g.attrs["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if "height" in g.attrs:
                sizes[name] = (int(g.attrs["height"]), int(g.attrs["width"]))
    return labels, sizes, attrs


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


# --------------------------------------------------------------------------- helpers
def _pad4(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``1 x 1 x H x W`` to multiples of 4; returns the image and its content mask."""
    h, w = image.shape[-2:]
    ph, pw = -h % 4, -w % 4
    valid = torch.ones_like(image)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        valid = F.pad(valid, (0, pw, 0, ph))
    return image, valid


def _select(score: torch.Tensor, size: tuple[int, int], radius: int, border: int, threshold: float, max_kp: int):
    h, w = size
    region = torch.zeros_like(score, dtype=torch.bool)
    region[border : h - border, border : w - border] = True
    mask = nms_mask(score[None, None], radius)[0, 0] & region
    yx, sc = select_keypoints(score, mask, threshold, max_kp)
    return yx, sc


def _chunks(n: int, size: int):
    size = max(1, size)
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _references(image, valid, num, conf, gen):
    """``num`` colour-jittered random affine warps of a padded image (same size)."""
    size = image.shape[-2:]
    H = warps.random_warp_from_conf(num, size, size, conf.ref_warp, gen).to(image.device)
    jit = warps.random_jitter(num, conf.ref_warp, gen)
    refs = warps.warp_images(warps.color_jitter(image.expand(num, -1, -1, -1), jit, valid.expand(num, -1, -1, -1)), H, size)
    ref_valid = warps.warp_valid_mask(H, size, size, valid.expand(num, -1, -1, -1))
    return refs, ref_valid, H


# --------------------------------------------------------------------------- step 1
@torch.no_grad()
def detector_score(net, image: torch.Tensor, conf, gen: torch.Generator) -> torch.Tensor:
    """Keypoint probability of a padded ``1 x 1 x H x W`` image averaged with its references.

    Every reference's probability is warped back and averaged only where it is valid (inside
    the warped image and outside its ``detect.ref_border``).
    """
    image, valid = _pad4(image)
    size = image.shape[-2:]
    num = int(conf.detect.num_refs)
    prob = torch.softmax(net.features(image)[0], dim=1)[:, 1:]
    total, count = prob.clone(), torch.ones_like(prob)
    if num > 0:
        refs, ref_valid, H = _references(image, valid, num, conf, gen)
        b = int(conf.detect.ref_border)
        if b > 0:
            ref_valid[..., :b, :] = False
            ref_valid[..., -b:, :] = False
            ref_valid[..., :, :b] = False
            ref_valid[..., :, -b:] = False
        Hinv = torch.linalg.inv(H)
        for s, e in _chunks(num, conf.detect.ref_chunk):
            p = torch.softmax(net.features(refs[s:e])[0], dim=1)[:, 1:]
            m = ref_valid[s:e].float()
            total += warps.warp_images(p * m, Hinv[s:e], size).sum(0, keepdim=True)
            count += warps.warp_images(m, Hinv[s:e], size).sum(0, keepdim=True)
    return (total / count)[0, 0]


def detect_keypoints(net, image: torch.Tensor, conf, gen: torch.Generator):
    h, w = image.shape[-2:]
    score = detector_score(net, image, conf, gen)
    d = conf.detect
    return _select(score, (h, w), d.nms_radius, d.border, d.threshold, d.max_keypoints)


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
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32) * stride
    oy, ox = torch.meshgrid(r, r, indexing="ij")
    off = torch.stack([ox.flatten(), oy.flatten()], dim=-1)
    return off[(off != 0).any(-1)]  # the (2r+1)^2 - 1 neighbours


def _cos_dist(cos: torch.Tensor) -> torch.Tensor:
    """Distance of unit vectors from their cosine (``+1e-4`` as the release)."""
    return torch.sqrt((2.0 - 2.0 * cos).clamp(min=0.0) + 1e-4)


def _cosine(target: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """Cosine between unit ``1 x C x h x w`` targets and (not normalised) ``R x C x h x w`` samples."""
    dot = (sampled * target).sum(1)
    return dot / (sampled * sampled).sum(1).sqrt().clamp(min=1e-12)


def _ratio_reference(target, sample, grid, offsets, eps):
    """distinctiveness / (repeatability + eps); neighbours on the reference's pixel grid.

    ``target``: ``1 x C x h x w`` unit features at the target positions; ``sample(grid)``
    reads the references' features at pixel coordinates ``R x h x w x 2`` (``R x C x h x w``).
    Each neighbour ``q + o`` is sampled bilinearly and normalised (the release). The nearest
    neighbour is the one with the largest cosine, so the distance is taken once at the end.
    """
    rep = _cos_dist(_cosine(target, sample(grid)))
    best = None
    for o in offsets:  # one dense operation per neighbour (48 for a 7 x 7 grid)
        c = _cosine(target, sample(grid + o))
        best = c if best is None else torch.maximum(best, c)
    return _cos_dist(best) / (rep + eps)


def _ratio_target(target, sample, grid, offsets, eps):
    """As :func:`_ratio_reference`, the neighbourhood laid out on the target's pixel grid.

    The references' features are warped into the target once (bilinear, normalised); the
    neighbour ``o`` of pixel ``p`` is the reference feature at the correspondence of ``p + o``,
    i.e. at ``q + A o`` (``A`` the warp's local linear part) instead of ``q + o``. Every
    neighbour is then a shifted view, which is several times cheaper on a CPU.
    """
    warped = F.normalize(sample(grid), dim=1)
    rep = _cos_dist((warped * target).sum(1))
    h, w = target.shape[-2:]
    best = torch.full_like(rep, -2.0)
    for o in offsets.long().tolist():
        ox, oy = o
        ty, tx = slice(max(0, -oy), h - max(0, oy)), slice(max(0, -ox), w - max(0, ox))
        sy, sx = slice(max(0, oy), h + min(0, oy)), slice(max(0, ox), w + min(0, ox))
        c = (target[:, :, ty, tx] * warped[:, :, sy, sx]).sum(1)
        best[:, ty, tx] = torch.maximum(best[:, ty, tx], c)
    return _cos_dist(best) / (rep + eps)


@torch.no_grad()
def reliability_score(net, image: torch.Tensor, conf, gen: torch.Generator) -> torch.Tensor:
    """Per-pixel descriptor reliability of a ``1 x 1 x H x W`` image (map of the padded size).

    For every reference (a random warp of the image) and target pixel ``p`` with
    correspondence ``q``: repeatability = distance between the features at ``p`` and ``q``,
    distinctiveness = smallest distance between the feature at ``p`` and the reference's
    features on a ``(2r+1)^2 - 1`` grid (stride ``s`` px) around ``q``; ratio =
    distinctiveness / (repeatability + eps), averaged over the references where ``q`` (with
    its neighbourhood) is inside the reference. Computed for the upsampled descriptor and the
    full-resolution feature ``u0``, then averaged.
    """
    rc = conf.reliability
    image, valid = _pad4(image)
    size = image.shape[-2:]
    dev = image.device
    num = int(rc.num_refs)
    _, desc0, low0 = net.features(image)
    refs, _, H = _references(image, valid, num, conf, gen)
    offsets = _offsets(rc.radius, rc.stride, dev)
    margin = float(rc.radius * rc.stride)
    pix = warps.pixel_grid(size, device=dev)
    content = valid[0, 0] > 0

    terms = {}  # name -> (positions h x w x 2, content mask, unit target 1 x C x h x w)
    if rc.use_descriptor:
        if rc.desc_resolution == "coarse":
            cells = warps.pixel_grid(desc0.shape[-2:], device=dev) * 4.0 + 1.5  # cell centres
            cmask = F.avg_pool2d(valid, 4)[0, 0] > 0.999
            terms["desc"] = (cells, cmask, F.normalize(desc0, dim=1))
        else:
            terms["desc"] = (pix, content, F.normalize(warps.sample_coarse(desc0, pix[None], size), dim=1))
    if rc.use_low_level:
        terms["low"] = (pix, content, F.normalize(low0, dim=1))
    sums = {k: torch.zeros(v[0].shape[:2], device=dev) for k, v in terms.items()}
    counts = {k: torch.zeros(v[0].shape[:2], device=dev) for k, v in terms.items()}

    for s, e in _chunks(num, rc.ref_chunk):
        _, desc_r, low_r = net.features(refs[s:e])
        for name, (pos, cmask, tgt) in terms.items():
            grid = warps.transform_points(H[s:e], pos.reshape(1, -1, 2).expand(e - s, -1, -1)).view(e - s, *pos.shape)
            ok = (warps.inside(grid, size, margin) & cmask[None]).float()
            if name == "desc":
                sample = lambda g, d=desc_r: warps.sample_coarse(d, g, size)  # noqa: E731
            else:
                sample = lambda g, u=low_r: warps.sample_full(u, g)  # noqa: E731
            # the coarse descriptor term has no pixel grid to shift on: always "reference"
            on_pixels = name == "low" or rc.desc_resolution == "full"
            if rc.neighbours == "target" and on_pixels:
                ok = ok * warps.inside(pos, size, margin).float()[None]
                ratio = _ratio_target(tgt, sample, grid, offsets, rc.eps)
            else:
                ratio = _ratio_reference(tgt, sample, grid, offsets, rc.eps)
            sums[name] += (ratio * ok).sum(0)
            counts[name] += ok.sum(0)
    maps = []
    for name in terms:
        m = sums[name] / (counts[name] + 1e-2)
        if m.shape != size:  # coarse descriptor term: cell centres -> pixels
            m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        maps.append(m)
    return torch.stack(maps).mean(0)


def reliability_keypoints(net, image: torch.Tensor, conf, gen: torch.Generator):
    h, w = image.shape[-2:]
    score = reliability_score(net, image, conf, gen)
    r = conf.reliability
    return _select(score, (h, w), r.nms_radius, r.border, r.threshold, r.max_keypoints)


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
) -> tuple[Labels, dict[str, tuple[int, int]]]:
    """Labels of ``indices`` for ``kind`` in {"random", "detect", "reliability"}."""
    from tqdm import tqdm

    was_training = net.training
    net.eval()
    out: Labels = {}
    sizes: dict[str, tuple[int, int]] = {}
    step = STEP_IDS["reliability" if kind == "reliability" else "detect"]
    try:
        for idx in tqdm(indices, desc=desc or kind, disable=not progress, leave=False, dynamic_ncols=True):
            img = images.image(idx)
            key = images.keys[idx]
            sizes[key] = img.shape
            gen = generator(seed, round_idx, step, idx)
            if kind == "random":
                yx, sc = random_keypoints(img.shape, conf.detect.random_keypoints, conf.detect.border, gen)
            else:
                x = to_tensor(img).to(device)
                fn = detect_keypoints if kind == "detect" else reliability_keypoints
                yx, sc = fn(net, x, conf, gen)
            out[key] = (yx.cpu().numpy().astype(np.int16), sc.float().cpu().numpy().astype(np.float16))
    finally:
        net.train(was_training)
    return out, sizes
