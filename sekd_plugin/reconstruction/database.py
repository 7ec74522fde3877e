"""The COLMAP database of the hloc-features pipeline: images and cameras (fixed intrinsics
included), our keypoints and matches, checked before COLMAP sees any of them, and the
two-view verification."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from ..io.matched_features import MatchedFeatures
from ..io.images import list_images, parse_image_list
from ..io.pairs_file import read_pairs, unique_pairs, write_pairs
from .mapping import colmap_output
from .options import ReconstructionError, camera_mode

logger = logging.getLogger(__name__)

# Two-view configuration stored for unverified matches (skip_geometric_verification).
SKIP_CONFIG = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED


def scaled_K(K: np.ndarray, size: tuple[int, int], target: tuple[int, int],
             where: str = "fixed_intrinsics") -> np.ndarray:
    """K of an image of ``size`` (W, H) rescaled to ``target``: the one rule of
    :func:`sekd_plugin.datasets.strecha.image_scale` (same aspect ratio, else an error)."""
    from ..datasets.strecha import scale_K

    return scale_K(K, size, target, where)


def set_fixed_intrinsics(db, fixed: Mapping[str, Any], names: Sequence[str] | None = None) -> dict[int, list[float]]:
    """Replace the cameras of the database's images ``names`` (default: all) by PINHOLE
    cameras with the given K (``name -> (K, width, height)``); returns ``camera_id -> params``."""
    images = {image.image_id: image for image in db.read_all_images()}
    names_to_ids = {image.name: image_id for image_id, image in images.items()
                    if names is None or image.name in set(names)}
    missing = sorted(set(names_to_ids) - set(fixed))
    if missing:
        raise ReconstructionError(f"fixed_intrinsics has no K for {len(missing)} image(s): {missing[:10]}")
    cameras = {camera.camera_id: camera for camera in db.read_all_cameras()}
    params: dict[int, tuple[list[float], str]] = {}
    for name, image_id in names_to_ids.items():
        camera = cameras[images[image_id].camera_id]
        K, w, h = fixed[name]
        K = scaled_K(K, (int(w), int(h)), (camera.width, camera.height), f"fixed_intrinsics of {name}")
        if abs(K[0, 1]) > 1e-6 * abs(K[0, 0]):
            logger.warning("%s: K has a skew of %g that a PINHOLE camera ignores", name, K[0, 1])
        p = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        if camera.camera_id in params and not np.allclose(params[camera.camera_id][0], p, rtol=1e-6, atol=1e-6):
            raise ReconstructionError(
                f"images {params[camera.camera_id][1]} and {name} share a camera but have different K; "
                "use camera_mode='PER_IMAGE'")
        params.setdefault(camera.camera_id, (p, name))
    for camera_id, (p, _) in params.items():
        old = cameras[camera_id]
        camera = pycolmap.Camera(camera_id=camera_id, model="PINHOLE", width=old.width, height=old.height,
                                 params=p, has_prior_focal_length=True)
        db.update_camera(camera)
    return {cid: p for cid, (p, _) in params.items()}


def check_match_indices(m: np.ndarray, pair: tuple[str, str], counts: tuple[int, int],
                        matches: str | os.PathLike = "matches", features: str | os.PathLike = "features") -> None:
    """Every index of the ``M x 2`` matches of ``pair`` must address a keypoint of its image
    (``counts``: the keypoints of the two images); otherwise the matches were made with other
    features, and a :class:`ReconstructionError` names the pair, the index and the count
    (one min and one max per column, never a loop over matches)."""
    if not len(m):
        return
    m = np.asarray(m).reshape(len(m), -1)
    for col in (0, 1):
        low, high = int(m[:, col].min()), int(m[:, col].max())
        if low < 0 or high >= counts[col]:
            bad = low if low < 0 else high
            raise ReconstructionError(
                f"{matches}: pair ({pair[0]}, {pair[1]}) has keypoint index {bad} for {pair[col]}, which has "
                f"{counts[col]} keypoints in {features} (matches made with other features?)")


@dataclass
class FeatureInputs:
    """Everything the database gets from hloc files, read and checked before COLMAP starts
    (an out-of-range index crashes its verification)."""

    names: list[str]
    pairs: list[tuple[str, str]]
    keypoints: dict[str, np.ndarray]  # COLMAP's pixel origin (+0.5)
    matches: list[tuple[str, str, np.ndarray]]


def read_inputs(image_dir: Path, pairs: Path, features: Path, matches: Path,
                image_list: str | os.PathLike | Sequence[str] | None = None,
                min_match_score: float | None = None) -> FeatureInputs:
    """The images, pairs, keypoints (+0.5: ours put the centre of the top-left pixel at (0, 0),
    COLMAP its corner) and matches (once per unordered pair, optionally score > ``min_match_score``)."""
    for path, what in ((features, "features file"), (matches, "matches file"), (pairs, "pairs file")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    inputs = MatchedFeatures(features, matches)  # the matches must be of these features
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    names = parse_image_list(image_list) if image_list is not None else list_images(image_dir)
    if not names:
        raise ReconstructionError(f"no images to reconstruct in {image_dir}")
    missing = sorted(set(names) - set(inputs.names()))
    if missing:
        raise ReconstructionError(f"{len(missing)} image(s) have no features in {features}: {missing[:10]}")
    pair_list = unique_pairs(read_pairs(pairs))
    known = set(names)
    unknown = sorted({n for p in pair_list for n in p} - known)
    if unknown and image_list is None:
        raise ReconstructionError(f"{pairs} names {len(unknown)} image(s) not in {image_dir}: {unknown[:10]}")
    pair_list = [p for p in pair_list if p[0] in known and p[1] in known]
    if not pair_list:
        raise ReconstructionError(f"no pair of {pairs} is between the images to reconstruct")
    keypoints = {name: inputs.keypoints(name) + 0.5 for name in names}
    pair_matches = []
    for name0, name1 in pair_list:
        m, scores = inputs.matches_of(name0, name1)
        if min_match_score is not None:
            m = m[scores > min_match_score]
        check_match_indices(m, (name0, name1), (len(keypoints[name0]), len(keypoints[name1])), matches, features)
        pair_matches.append((name0, name1, m.astype(np.uint32)))
    return FeatureInputs(list(names), pair_list, keypoints, pair_matches)


def build_database(
    database: Path,
    image_dir: Path,
    inputs: FeatureInputs,
    mode: str | pycolmap.CameraMode,
    camera_model: str,
    reader_options: pycolmap.ImageReaderOptions,
    two_view: pycolmap.TwoViewGeometryOptions,
    min_num_matches: int,
    fixed_intrinsics: Mapping[str, Any] | None = None,
    skip_geometric_verification: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Images, cameras, keypoints and matches into ``database``, then two-view verification (or,
    with ``skip_geometric_verification``, every match taken as an inlier). Returns the
    :data:`~sekd_plugin.reconstruction.mapping.DATABASE_KEYS`, ``verification_min_inliers`` and
    the timings, as :func:`~sekd_plugin.reconstruction.mapping.reconstruct` expects."""
    mode = camera_mode(mode)
    names = inputs.names
    start = time.perf_counter()
    with colmap_output(verbose):
        pycolmap.import_images(database, image_dir, mode, image_names=names, options=reader_options)
    stats: dict[str, Any] = {"camera_mode": mode.name,
                             "camera_model": "PINHOLE (fixed)" if fixed_intrinsics is not None else camera_model}
    with pycolmap.Database.open(database) as db:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        lost = sorted(set(names) - set(ids))
        if lost:
            raise ReconstructionError(f"pycolmap could not import {len(lost)} image(s): {lost[:10]}")
        if fixed_intrinsics is not None:
            stats["fixed_camera_params"] = set_fixed_intrinsics(db, fixed_intrinsics, names)
        for name in names:
            db.write_keypoints(ids[name], inputs.keypoints[name].astype(np.float32))
        for name0, name1, m in inputs.matches:
            db.write_matches(ids[name0], ids[name1], m)
            if skip_geometric_verification:
                db.write_two_view_geometry(ids[name0], ids[name1],
                                           pycolmap.TwoViewGeometry(inlier_matches=m, config=SKIP_CONFIG))
    import_s = time.perf_counter() - start
    stats["num_pairs"] = len(inputs.pairs)
    stats["mean_keypoints_per_image"] = float(np.mean([len(inputs.keypoints[n]) for n in names]))
    stats["mean_matches_per_pair"] = float(np.mean([len(m) for _, _, m in inputs.matches]))
    sfm_pairs = write_pairs(database.with_name("pairs-sfm.txt"), inputs.pairs)
    start = time.perf_counter()
    if not skip_geometric_verification:
        logger.info("Geometric verification of %d pairs...", len(inputs.pairs))
        with colmap_output(verbose):
            pycolmap.verify_matches(database, sfm_pairs, options=two_view)
    stats["verification_min_inliers"] = min_num_matches if skip_geometric_verification else two_view.min_num_inliers
    stats["timings"] = {"import_s": import_s, "verification_s": time.perf_counter() - start}
    return stats
