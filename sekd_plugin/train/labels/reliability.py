"""Step 3: keypoints from descriptor reliability (distinctiveness against repeatability over
random warps, 1/4- and full-resolution maps fused); the fast path computes the neighbourhood
in each reference's frame (:func:`sekd_plugin.ops.correlation.shifted_max_dot`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...ops.correlation import shifted_max_dot
from .. import warps
from .selection import chunks, pad4, references, select_labels


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


def _ratio_reference(target: torch.Tensor, ref: torch.Tensor, grid: torch.Tensor, offsets: torch.Tensor, eps: float,
                     chunk: int) -> torch.Tensor:
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
    image, valid = pad4(image)
    size = image.shape[-2:]
    dev = image.device
    num = int(rc.num_refs)
    refs, _, H, Hinv = references(image, valid, num, conf, gen)
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

    for s, e in chunks(num, rc.ref_chunk):
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
                pixels = warps.pixel_grid(tgt.shape[-2:], device=dev)
                ok = ok * warps.inside(pixels, tgt.shape[-2:], float(rc.radius * rc.stride)).float()[None]
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
