"""Random warps, colour jitter, valid masks and correspondences, batched on any device.

Conventions: pixel (row i, column j) has its centre at (x = j, y = i); a 3x3 matrix ``H`` maps
source pixel coordinates to destination pixel coordinates (kornia's ``warp_perspective``
convention, ``align_corners=True``). Random parameters come from an explicit
``torch.Generator`` so that every warp is reproducible from a seed. The default warp
distribution is the SEKD release's (:func:`release_affines`); :func:`random_homographies` is
the package's former ("legacy") parametrisation.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from ..ops.gray import rgb_to_gray


def _uniform(gen: torch.Generator | None, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def random_homographies(
    n: int,
    src_size: tuple[int, int],
    dst_size: tuple[int, int] | None = None,
    *,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    shear: float = 0.0,
    perspective: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n x 3 x 3`` float32 random warps about the image centres (source -> destination).

    ``M = T(c_dst + t) . P . R . Sh . S . T(-c_src)``: scale, x-shear, rotation, an optional
    projective part (strength ``perspective``, relative to the source size) and a translation
    (``translate`` x size). The source centre maps to the (translated) destination centre.
    """
    h, w = src_size
    dh, dw = dst_size or src_size
    ang = torch.deg2rad(_uniform(generator, n, -degrees, degrees))
    sh = torch.deg2rad(_uniform(generator, n, -shear, shear))
    s = _uniform(generator, n, scale[0], scale[1])
    tx = _uniform(generator, n, -translate, translate) * dw
    ty = _uniform(generator, n, -translate, translate) * dh
    px = _uniform(generator, n, -perspective, perspective) / max(w, 1)
    py = _uniform(generator, n, -perspective, perspective) / max(h, 1)

    eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    t_src = eye.clone()
    t_src[:, 0, 2], t_src[:, 1, 2] = -(w - 1) / 2.0, -(h - 1) / 2.0
    scl = eye.clone()
    scl[:, 0, 0], scl[:, 1, 1] = s, s
    shr = eye.clone()
    shr[:, 0, 1] = torch.tan(sh)
    rot = eye.clone()
    rot[:, 0, 0], rot[:, 0, 1] = torch.cos(ang), -torch.sin(ang)
    rot[:, 1, 0], rot[:, 1, 1] = torch.sin(ang), torch.cos(ang)
    prj = eye.clone()
    prj[:, 2, 0], prj[:, 2, 1] = px, py
    t_dst = eye.clone()
    t_dst[:, 0, 2], t_dst[:, 1, 2] = (dw - 1) / 2.0 + tx, (dh - 1) / 2.0 + ty
    m = t_dst @ prj @ rot @ shr @ scl @ t_src
    return (m / m[:, 2:, 2:]).float()


def release_affines(
    n: int,
    src_size: tuple[int, int],
    dst_size: tuple[int, int] | None = None,
    *,
    degrees: float = 40.0,
    translate: float = 0.02,
    scale: tuple[float, float] = (0.7, 1.4),
    shear: float = 40.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n x 3 x 3`` float32 source -> destination affines drawn as the SEKD release's.

    The release (``TransformerAffine``) draws angle ``a``, shear ``s`` (both uniform +-),
    per-axis scales ``sx, sy`` (independently uniform in ``scale``) and a translation, and
    builds the *destination -> source* matrix ``[[sx cos a, -sy sin(a + s)], [sx sin a,
    sy cos(a + s)]]`` about the centres. Here it acts on pixel coordinates about the image
    centres (the release uses [-1, 1] coordinates, i.e. anisotropic on non-square images) and
    is inverted to our source -> destination convention.
    """
    h, w = src_size
    dh, dw = dst_size or src_size
    ang = torch.deg2rad(_uniform(generator, n, -degrees, degrees))
    sh = torch.deg2rad(_uniform(generator, n, -shear, shear))
    sx = _uniform(generator, n, scale[0], scale[1])
    sy = _uniform(generator, n, scale[0], scale[1])
    tx = _uniform(generator, n, -translate, translate) * dw
    ty = _uniform(generator, n, -translate, translate) * dh
    back = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)  # destination -> source, centred
    back[:, 0, 0], back[:, 0, 1] = sx * torch.cos(ang), -sy * torch.sin(ang + sh)
    back[:, 1, 0], back[:, 1, 1] = sx * torch.sin(ang), sy * torch.cos(ang + sh)
    back[:, 0, 2], back[:, 1, 2] = tx, ty
    fwd = torch.linalg.inv(back)
    t_src = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    t_src[:, 0, 2], t_src[:, 1, 2] = -(w - 1) / 2.0, -(h - 1) / 2.0
    t_dst = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    t_dst[:, 0, 2], t_dst[:, 1, 2] = (dw - 1) / 2.0, (dh - 1) / 2.0
    return (t_dst @ fwd @ t_src).float()


def random_warp_from_conf(n: int, src_size, dst_size, conf, generator) -> torch.Tensor:
    """``n x 3 x 3`` warps with the parameters of a ``WarpConf`` (its ``form``)."""
    if conf.form == "release":
        H = release_affines(
            n,
            src_size,
            dst_size,
            degrees=conf.degrees,
            translate=conf.translate,
            scale=tuple(conf.scale),
            shear=conf.shear,
            generator=generator,
        )
        if conf.perspective > 0:  # optional projective part, applied in the destination
            dh, dw = dst_size or src_size
            P = random_homographies(n, (dh, dw), (dh, dw), perspective=conf.perspective, generator=generator)
            H = P @ H
        return H
    return random_homographies(
        n,
        src_size,
        dst_size,
        degrees=conf.degrees,
        translate=conf.translate,
        scale=tuple(conf.scale),
        shear=conf.shear,
        perspective=conf.perspective,
        generator=generator,
    )


def identity_warps(n: int, src_size: tuple[int, int], dst_size: tuple[int, int]) -> torch.Tensor:
    """``n x 3 x 3`` translations taking the source centre to the destination centre (a centre crop)."""
    h, w = src_size
    dh, dw = dst_size
    H = torch.eye(3).repeat(n, 1, 1)
    H[:, 0, 2], H[:, 1, 2] = (dw - w) / 2.0, (dh - h) / 2.0
    return H


def relative_rotation(H: torch.Tensor) -> torch.Tensor:
    """Rotation (degrees) of the closest rotation to the linear part of ``... x 3 x 3`` affines.

    The polar decomposition's rotation of ``A = [[a, b], [c, d]]`` has angle
    ``atan2(c - b, a + d)``; shear and anisotropic scale do not bias it.
    """
    a, b, c, d = H[..., 0, 0], H[..., 0, 1], H[..., 1, 0], H[..., 1, 1]
    return torch.rad2deg(torch.atan2(c - b, a + d))


JITTER_FIELDS = ("brightness", "contrast", "saturation", "hue")


def random_jitter(n: int, conf, generator: torch.Generator | None) -> torch.Tensor:
    """``n x 4`` (brightness, contrast, saturation, hue) factors drawn from a ``WarpConf``.

    Ranges as torchvision's ``ColorJitter`` (the release: 0.6-1.4 for the first three,
    hue +-0.2 of the hue circle).
    """
    b = _uniform(generator, n, conf.brightness[0], conf.brightness[1])
    c = _uniform(generator, n, conf.contrast[0], conf.contrast[1])
    s = _uniform(generator, n, conf.saturation[0], conf.saturation[1])
    h = _uniform(generator, n, -conf.hue, conf.hue)
    return torch.stack([b, c, s, h], dim=-1).float()


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean(dim=(-2, -1), keepdim=True)
    m = mask.to(x)
    return (x * m).sum(dim=(-2, -1), keepdim=True) / m.sum(dim=(-2, -1), keepdim=True).clamp(min=1)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Colour jitter of ``B x C x H x W`` images in [0, 1] (C = 3 RGB or 1 gray), batched.

    ``factors`` is ``B x 4`` (brightness, contrast, saturation, hue) or ``B x 2`` (the first
    two). Applied in torchvision's default order (brightness, contrast, saturation, hue; the
    release's ``ColorJitter`` shuffles the order per image): brightness scales, contrast
    blends with the mean gray of the (valid part of the) image, saturation with the gray
    image, hue rotates the hue channel (kornia). Saturation and hue are no-ops on gray input.
    """
    f = factors.to(images)
    f = torch.cat([f, f.new_tensor([1.0, 0.0]).expand(f.shape[0], 2)], 1) if f.shape[1] == 2 else f
    f = f.view(-1, 4, 1, 1)
    x = (images * f[:, 0:1]).clamp(0, 1)
    gray = rgb_to_gray(x)
    mean = _masked_mean(gray, mask)
    x = ((x - mean) * f[:, 1:2] + mean).clamp(0, 1)
    if x.shape[1] == 3:
        g = rgb_to_gray(x)
        x = ((x - g) * f[:, 2:3] + g).clamp(0, 1)
        # kornia's hue factor is an angle in radians; torchvision's is a fraction of the circle
        x = kornia.enhance.adjust_hue(x, f[:, 3, 0, 0] * (2.0 * math.pi)).clamp(0, 1)
    return x if mask is None else x * mask.to(x)


def jitter_to_gray(images: torch.Tensor, factors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`color_jitter` on the RGB (or gray) images, then the gray ``B x 1 x H x W`` the network sees."""
    x = color_jitter(images, factors, mask)
    return rgb_to_gray(x)


def warp_images(images: torch.Tensor, H: torch.Tensor, dsize: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Warp ``B x C x h x w`` by ``B x 3 x 3`` source->destination matrices to ``dsize`` (zeros outside)."""
    return kornia.geometry.transform.warp_perspective(
        images, H.to(images), dsize, mode=mode, padding_mode="zeros", align_corners=True
    )


def warp_valid_mask(
    H: torch.Tensor,
    src_size: tuple[int, int],
    dsize: tuple[int, int],
    src_mask: torch.Tensor | None = None,
    border: int = 0,
) -> torch.Tensor:
    """bool ``B x 1 x H x W``: destination pixels that read only valid source pixels.

    ``src_mask`` (``B x 1 x h x w``) marks the valid source pixels (default: all); ``border``
    pixels at the source edges are excluded too.
    """
    b = H.shape[0]
    if src_mask is None:
        src = torch.ones(b, 1, *src_size, device=H.device)
    else:
        src = src_mask.float()
    if border > 0:
        src = src.clone()
        src[..., :border, :] = 0
        src[..., -border:, :] = 0
        src[..., :, :border] = 0
        src[..., :, -border:] = 0
    return warp_images(src, H, dsize) > 0.999


def transform_points(H: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``B x 3 x 3`` (or ``3 x 3``) matrices to ``B x N x 2`` (or ``N x 2``) (x, y) points."""
    hom = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    out = hom @ H.to(points).transpose(-1, -2)
    return out[..., :2] / _safe(out[..., 2:])


def _safe(z: torch.Tensor) -> torch.Tensor:
    return torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)


def pixel_grid(size: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """``H x W x 2`` (x, y) coordinates of every pixel centre."""
    h, w = size
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs, ys], dim=-1)


def correspondence_grid(H: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``B x H x W x 2``: where every pixel of a ``size`` image lands under ``H`` (pixel coords)."""
    grid = pixel_grid(size, device=H.device).reshape(1, -1, 2).expand(H.shape[0], -1, -1)
    return transform_points(H.float(), grid).reshape(H.shape[0], size[0], size[1], 2)


def normalize_grid(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel (x, y) -> [-1, 1] coordinates for ``grid_sample(align_corners=True)`` on ``size`` maps."""
    h, w = size
    scale = grid.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return grid * scale - 1.0


def sample_full(maps: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample full-resolution ``B x C x H x W`` maps at pixel coordinates ``B x h x w x 2`` (zeros outside)."""
    g = normalize_grid(grid, maps.shape[-2:])
    return F.grid_sample(maps, g.to(maps), mode=mode, padding_mode="zeros", align_corners=True)


def sample_coarse(desc: torch.Tensor, grid: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Sample a 1/s-resolution map at full-resolution pixel coordinates ``B x h x w x 2``.

    Same as bilinearly upsampling the map to ``image_size`` (``F.interpolate``,
    ``align_corners=False``, as the release's training code) and reading it there: pixel
    centres map onto cell centres, the outermost cells extend to the image border.
    """
    h, w = image_size
    scale = grid.new_tensor([2.0 / w, 2.0 / h])
    g = (grid + 0.5) * scale - 1.0
    return F.grid_sample(desc, g.to(desc), mode="bilinear", padding_mode="border", align_corners=False)


def inside(points: torch.Tensor, size: tuple[int, int], margin: float = 0.0) -> torch.Tensor:
    """bool mask of (x, y) points inside ``[margin, W-1-margin] x [margin, H-1-margin]``."""
    h, w = size
    x, y = points[..., 0], points[..., 1]
    return (x >= margin) & (x <= w - 1 - margin) & (y >= margin) & (y <= h - 1 - margin)

