"""A tiny ray-cast renderer for the demo multi-view scene: textured planar quads, pinhole cameras.

Why a renderer and not photos: SfM needs views of one rigid 3D scene with real parallax, and
scikit-image bundles no such set (its one stereo pair has too small a baseline for COLMAP to
start from). Here every pixel's ray is intersected with every quad (a z-buffer keeps the
nearest hit), the hit is mapped to the quad's texture through the exact face->image
homography and sampled with ``cv2.remap``; rendering is supersampled and box-filtered down,
so textures seen at grazing angles do not alias much. Shading is Lambertian under one fixed
light, i.e. view-independent, so the photometric constancy that matching relies on holds.

Conventions: world z is up, metres. A camera is ``(K, R, C)`` with **R camera-to-world** and
**C the centre** (the Strecha ``.camera`` convention of :mod:`sekd_plugin.datasets.strecha`):
``x ~ K R^T (X - C)``. ``K`` is in COLMAP's pixel convention (the image's top-left *corner*
is (0, 0), pixel centres at +0.5), so ``cx = width / 2`` is exactly COLMAP's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

NEAR = 0.05  # metres: hits closer than this to the camera are ignored
LIGHT = np.array([0.35, -0.45, 1.0]) / np.linalg.norm([0.35, -0.45, 1.0])  # towards the light


@dataclass(frozen=True)
class Quad:
    """A textured planar parallelogram ``origin + a * u + b * v`` for ``a, b`` in [0, 1].

    ``u`` runs along the texture's rows (left to right), ``v`` down its columns, so the
    texture is seen unmirrored from the side ``-(u x v)`` points to. ``texture``: name of a
    photo; ``window``: ``(cx, cy, zoom)``, the texture is the largest window of the quad's
    aspect ratio ``|u| / |v|`` in that photo, scaled by ``zoom`` and centred at the fractional
    position ``(cx, cy)`` (moved inside the photo where needed), see :func:`crop_texture`.
    """

    origin: tuple[float, float, float]
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    texture: str
    window: tuple[float, float, float] = (0.5, 0.5, 1.0)

    @property
    def aspect(self) -> float:
        return float(np.linalg.norm(self.u) / np.linalg.norm(self.v))


def box_quads(centre: Sequence[float], size: Sequence[float], textures: Sequence[str],
              windows: Sequence[tuple[float, float, float]]) -> list[Quad]:
    """The 4 sides and the top of an axis-aligned box standing on z = 0 (5 quads).

    ``centre``: (x, y) of its footprint; ``size``: (sx, sy, height); ``textures``/``windows``: 5 each,
    in the order -y, +x, +y, -x side, then top. Each side is textured upright seen from outside."""
    cx, cy = centre
    sx, sy, h = size
    x0, x1, y0, y1 = cx - sx / 2, cx + sx / 2, cy - sy / 2, cy + sy / 2
    sides = [((x0, y0, h), (sx, 0, 0)), ((x1, y0, h), (0, sy, 0)),
             ((x1, y1, h), (-sx, 0, 0)), ((x0, y1, h), (0, -sy, 0))]
    quads = [Quad(o, u, (0, 0, -h), t, w) for (o, u), t, w in zip(sides, textures[:4], windows[:4])]
    quads.append(Quad((x0, y1, h), (sx, 0, 0), (0, -sy, 0), textures[4], windows[4]))
    return quads


def look_at(C: Sequence[float], target: Sequence[float], up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world rotation (columns: camera x right, y down, z forward) of a camera at ``C``
    looking at ``target`` with no roll."""
    z = np.asarray(target, float) - np.asarray(C, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def crop_texture(photo: np.ndarray, aspect: float, window: Sequence[float]) -> np.ndarray:
    """The texture of a quad of width/height ``aspect`` from an H x W x 3 photo (see :class:`Quad`),
    so that no texture is stretched."""
    h, w = photo.shape[:2]
    cx, cy, zoom = window
    cw = min(w, h * aspect) * zoom
    ch = cw / aspect
    x0 = int(round(np.clip(cx * w - cw / 2, 0, w - cw)))
    y0 = int(round(np.clip(cy * h - ch / 2, 0, h - ch)))
    return np.ascontiguousarray(photo[y0:y0 + max(int(round(ch)), 2), x0:x0 + max(int(round(cw)), 2)])


def _sky(rays_world: np.ndarray) -> np.ndarray:
    """View-independent sky colour from each ray's elevation (H x W x 3 float32, RGB 0-255)."""
    elevation = rays_world[..., 2] / np.linalg.norm(rays_world, axis=-1)
    t = np.clip(elevation, 0, 1)[..., None]
    return ((1 - t) * np.array([205, 215, 230]) + t * np.array([110, 150, 210])).astype(np.float32)


def _pixel_window(K: np.ndarray, R_wc: np.ndarray, t_wc: np.ndarray, O: np.ndarray, u: np.ndarray,
                  v: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """The pixel rectangle a quad can cover (``None``: none), to ray-cast only there; the whole
    image when a corner is behind the camera (its projection would be meaningless)."""
    corners = np.stack([O, O + u, O + u + v, O + v]) @ R_wc.T + t_wc
    if (corners[:, 2] <= NEAR).all():
        return None
    if (corners[:, 2] <= NEAR).any():
        return slice(None), slice(None)
    xy = corners @ K.T
    xy = xy[:, :2] / xy[:, 2:]
    (x0, y0), (x1, y1) = np.floor(xy.min(0)) - 1, np.ceil(xy.max(0)) + 2
    x0, x1 = int(max(x0, 0)), int(min(x1, shape[1]))
    y0, y1 = int(max(y0, 0)), int(min(y1, shape[0]))
    return (slice(y0, y1), slice(x0, x1)) if x0 < x1 and y0 < y1 else None


def render_view(quads: Sequence[Quad], texture: Callable[[Quad], np.ndarray], K: np.ndarray, R: np.ndarray,
                C: np.ndarray, size: tuple[int, int], supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Render one view.

    Args:
        quads: the scene.
        texture: ``quad -> H_t x W_t x 3`` uint8 RGB texture of that quad.
        K: 3 x 3 intrinsics (COLMAP pixel convention); R: 3 x 3 camera-to-world; C: (3,) centre.
        size: (width, height) of the output.
        supersample: render at this factor and box-filter down.

    Returns:
        image ``H x W x 3`` uint8 RGB and depth ``H x W`` float32 (camera z of the nearest hit,
        ``inf`` for sky), both at ``size``; depth is the mean over each supersampled block
        (``inf`` if any of its samples saw the sky).
    """
    width, height = size
    s = supersample
    Ks = np.diag([s, s, 1.0]) @ K
    Ks[:2, 2] -= 0.5  # corner-origin -> cv2's pixel-centre coordinates
    xs, ys = np.meshgrid(np.arange(width * s, dtype=np.float64), np.arange(height * s, dtype=np.float64))
    pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # Hs x Ws x 3
    rays = pix @ np.linalg.inv(Ks).T  # camera rays with z = 1
    R_wc, t_wc = R.T, -R.T @ np.asarray(C, float)
    image = _sky(rays @ R.T)
    depth = np.full(xs.shape, np.inf)
    for quad in quads:
        O, u, v = (np.asarray(a, float) for a in (quad.origin, quad.u, quad.v))
        window = _pixel_window(Ks, R_wc, t_wc, O, u, v, depth.shape)
        if window is None:
            continue
        # Camera-from-texture homography of the plane: X_cam = [R u | R v | R O + t] [a b 1]^T,
        # so M^-1 ray = (a, b, 1) / z for the hit at camera depth z (rays have z = 1).
        M = np.stack([R_wc @ u, R_wc @ v, R_wc @ O + t_wc], axis=1)
        abw = rays[window] @ np.linalg.inv(M).T
        with np.errstate(divide="ignore", invalid="ignore"):
            z = 1.0 / abw[..., 2]
            a, b = abw[..., 0] * z, abw[..., 1] * z
        hit = (z > NEAR) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1) & (z < depth[window])
        if not hit.any():
            continue
        tex = texture(quad)
        th, tw = tex.shape[:2]
        map_x = np.where(hit, a * tw - 0.5, 0).astype(np.float32)
        map_y = np.where(hit, b * th - 0.5, 0).astype(np.float32)
        sampled = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        normal = np.cross(u, v)
        shade = 0.45 + 0.55 * abs(float(normal @ LIGHT)) / np.linalg.norm(normal)  # two-sided Lambert
        image[window][hit] = sampled[hit].astype(np.float32) * shade
        depth[window][hit] = z[hit]
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    depth = depth.reshape(height, s, width, s).mean(axis=(1, 3)).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), depth
