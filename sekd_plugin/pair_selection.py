"""Retrieval-free pair selection: covisibility in a model, camera poses, EXIF GPS, and the
quadratic sequential offsets of COLMAP's sequential matcher. Used by ``python -m sekd_plugin.pairs``.

Every function returns unordered pairs ``(name_i, name_j)`` (each once, ``unique_pairs``), each
image paired with its ``num`` best partners; a pair chosen by both images is kept once.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .common.errors import InputError
from .io.pairs_file import Pair, unique_pairs

logger = logging.getLogger(__name__)


EARTH_RADIUS_M = 6_371_000.0


class PairingError(InputError):
    """A model, camera folder or image set cannot give pairs (the message names it)."""


def _top(names: Sequence[str], scores: np.ndarray, num: int, larger_is_better: bool) -> list[Pair]:
    """Each image with its ``num`` best-scoring partners (``scores`` N x N, NaN = never)."""
    if num < 1:
        raise PairingError(f"--num must be >= 1, got {num}")
    pairs = []
    for i, name in enumerate(names):
        s = np.array(scores[i], float)
        s[i] = np.nan
        valid = np.flatnonzero(np.isfinite(s))
        order = valid[np.argsort(-s[valid] if larger_is_better else s[valid], kind="stable")]
        pairs += [(name, names[j]) for j in order[:num]]
    return unique_pairs(pairs)


def _load_model(path: str | os.PathLike):
    from .io.colmap_model import ModelError, read_model

    try:
        return read_model(path, "COLMAP model")
    except ModelError as error:  # this module's error type, the reader's message
        raise PairingError(str(error)) from None


def covisibility_pairs(model_path: str | os.PathLike, num: int) -> list[Pair]:
    """Each registered image with the ``num`` images sharing the most 3D points with it (> 0)."""
    model = _load_model(model_path)
    ids = sorted(model.reg_image_ids())
    index = {image_id: k for k, image_id in enumerate(ids)}
    shared = np.zeros((len(ids), len(ids)))
    for point in model.points3D.values():
        seen = sorted({index[e.image_id] for e in point.track.elements if e.image_id in index})
        for a in range(len(seen)):
            for b in range(a + 1, len(seen)):
                shared[seen[a], seen[b]] += 1
                shared[seen[b], seen[a]] += 1
    shared[shared == 0] = np.nan
    return _top([model.images[i].name for i in ids], shared, num, larger_is_better=True)


def camera_poses(source: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, centres N x 3, viewing directions N x 3)`` of a COLMAP model or a folder of
    Strecha ``.camera`` files (names = the file names without ``.camera``)."""
    source = Path(source)
    if source.is_dir() and any(source.glob("*.camera")):
        from .datasets.strecha import read_strecha_camera

        files = sorted(source.glob("*.camera"))
        cams = [read_strecha_camera(f) for f in files]
        return [f.name[: -len(".camera")] for f in files], np.array([c.C for c in cams]), np.array([c.R[:, 2] for c in cams])
    model = _load_model(source)
    names, centres, axes = [], [], []
    for image_id in sorted(model.reg_image_ids()):
        image = model.images[image_id]
        pose = image.cam_from_world()
        R = np.asarray(pose.rotation.matrix())
        names.append(image.name)
        centres.append(-R.T @ np.asarray(pose.translation))
        axes.append(R[2])
    return names, np.array(centres), np.array(axes)


def pose_pairs(source: str | os.PathLike, num: int, max_angle_deg: float = 30.0) -> list[Pair]:
    """Each camera with its ``num`` nearest cameras (by centre distance) whose viewing direction
    is within ``max_angle_deg`` of its own (hloc's ``pairs_from_poses``)."""
    if not (math.isfinite(max_angle_deg) and 0 <= max_angle_deg <= 180):
        raise PairingError(f"max_angle must be between 0 and 180 degrees, got {max_angle_deg}")
    names, centres, axes = camera_poses(source)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    cos = np.clip(axes @ axes.T, -1.0, 1.0)
    dist[np.degrees(np.arccos(cos)) > max_angle_deg] = np.nan
    return _top(names, dist, num, larger_is_better=False)


def quadratic_pairs(names: Sequence[str], window: int, loop: bool = False, sort: bool = True) -> list[Pair]:
    """COLMAP's sequential matching: each image with the next ``window`` images and, quadratic
    overlap, with the images ``2^k`` ahead for ``k < window``; ``loop`` wraps around the end."""
    if window < 1:
        raise PairingError(f"the sequential window must be >= 1, got {window}")
    names = sorted(dict.fromkeys(names)) if sort else list(dict.fromkeys(names))
    n = len(names)
    pairs = []
    for i in range(n):
        for k in _quadratic_offsets(n, window, loop):
            if i + k >= n and not loop:
                continue
            pairs.append((names[i], names[(i + k) % n]))
    return unique_pairs(pairs)


def _quadratic_offsets(n: int, window: int, loop: bool) -> list[int]:
    """The offsets ``1..window`` and ``2^k`` (``k < window``) in increasing order, reduced to those
    that give distinct pairs among ``n`` images: without ``loop`` the ones below ``n``, with it their
    residues modulo ``n`` in order of first appearance. The powers of two mod ``n`` cycle within
    ``n`` steps, so the work is bounded by ``n``, never by ``window`` (``--window 100000000``)."""
    if n < 2:
        return []
    out = list(range(1, min(window, n - 1) + 1))
    seen = set(out)
    first = max(window, 1).bit_length()  # the first k with 2^k > window
    last = min(window, first + 2 * n + 64) if loop else min(window, (n - 1).bit_length())
    for k in range(first, last):
        r = pow(2, k, n) if loop else 2 ** k
        if 0 < r < n and r not in seen:
            seen.add(r)
            out.append(r)
    return out


def _rational(value) -> float:
    try:
        return float(value)
    except TypeError:
        return float(value[0]) / float(value[1])


def read_gps(path: str | os.PathLike) -> tuple[float, float, float | None] | None:
    """``(latitude, longitude, altitude or None)`` in degrees / metres from EXIF, or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gps = image.getexif().get_ifd(0x8825)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None
    try:
        lat = sum(_rational(v) / 60 ** k for k, v in enumerate(gps[2]))
        lon = sum(_rational(v) / 60 ** k for k, v in enumerate(gps[4]))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    # a 0/0 rational reads as NaN: one such image made every distance NaN and gave 0 pairs for all
    if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
        return None
    lat = -lat if str(gps.get(1, "N")).upper().startswith("S") else lat
    lon = -lon if str(gps.get(3, "E")).upper().startswith("W") else lon
    alt = None
    if 6 in gps:
        try:
            alt = _rational(gps[6]) * (-1 if gps.get(5) in (1, b"\x01") else 1)
        except (TypeError, ValueError, ZeroDivisionError):
            alt = None
        alt = alt if alt is not None and math.isfinite(alt) else None
    return lat, lon, alt


def gps_pairs(image_dir: str | os.PathLike, names: Sequence[str], num: int) -> list[Pair]:
    """Each image with EXIF GPS paired with its ``num`` nearest by horizontal position (local
    east/north metres). Images without GPS are named in one warning and get no pairs; none with
    GPS is a :class:`PairingError`."""
    positions = {n: read_gps(Path(image_dir) / n) for n in names}
    missing = [n for n, p in positions.items() if p is None]
    have = [n for n, p in positions.items() if p is not None]
    if len(have) < 2:
        raise PairingError(f"{len(have)} of {len(names)} images in {image_dir} carry EXIF GPS; --gps needs at "
                           f"least 2 (without GPS: {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''})")
    if missing:
        logger.warning("%d image(s) without EXIF GPS (or with an unusable one: 0/0, out of range) get no pairs: %s",
                       len(missing), ", ".join(missing))
    lat = np.radians([positions[n][0] for n in have])
    lon = np.radians([positions[n][1] for n in have])
    east = EARTH_RADIUS_M * (lon - lon.mean()) * math.cos(lat.mean())
    north = EARTH_RADIUS_M * (lat - lat.mean())
    xy = np.stack([east, north], 1)
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    return _top(have, dist, num, larger_is_better=False)


def pair_stats(pairs: Sequence[Pair], names: Sequence[str]) -> dict[str, int]:
    """Pairs kept against the exhaustive count, and the least-paired image's degree."""
    degree = Counter(n for p in pairs for n in p)
    n = len(set(names))
    return {"pairs": len(pairs), "exhaustive": n * (n - 1) // 2, "min_pairs_per_image": min(degree[x] for x in set(names)) if n else 0}
