"""COLMAP's own pipeline through pycolmap: the reference a COLMAP user already has.

``colmap-sift`` in the benchmarks: COLMAP's SIFT extraction (``pycolmap.extract_features``),
COLMAP's matching (``match_exhaustive``, or ``match_image_pairs`` for a pair list) with its
default SIFT matching options (ratio 0.8, angular distance 0.7, cross check) and its default
two-view verification, all on CPU; then the same mapping, stats and failure hint
(:func:`sekd_plugin.reconstruction.mapping.reconstruct`) and GT evaluation as every other method.
``extraction`` / ``matching`` / ``verification``
override COLMAP's ``FeatureExtractionOptions`` / ``FeatureMatchingOptions`` /
``TwoViewGeometryOptions`` keys; :data:`EXTRACTION_DEFAULTS` only fixes the image size cap
(1600 px, as COLMAP's GUI default) and the CPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from ...io.pairs_file import write_pairs
from ...reconstruction import mapping
from ...reconstruction.database import set_fixed_intrinsics
from ...reconstruction.mapping import colmap_output
from ...reconstruction.options import ReconstructionError, build, camera_mode as to_camera_mode, mapping_options, merge

logger = logging.getLogger(__name__)

EXTRACTION_DEFAULTS = {"max_image_size": 1600, "use_gpu": False}
MATCHING_DEFAULTS = {"use_gpu": False}


def extraction_options(overrides: Mapping[str, Any] | None, num_threads: int | None) -> pycolmap.FeatureExtractionOptions:
    options = merge(EXTRACTION_DEFAULTS, {"num_threads": num_threads or -1}, overrides or {})
    return build(pycolmap.FeatureExtractionOptions, options, "colmap_extraction")


def matching_options(overrides: Mapping[str, Any] | None, num_threads: int | None,
                     skip_verification: bool = False) -> pycolmap.FeatureMatchingOptions:
    options = merge(MATCHING_DEFAULTS, {"num_threads": num_threads or -1}, overrides or {})
    if skip_verification:
        options["skip_geometric_verification"] = True
    return build(pycolmap.FeatureMatchingOptions, options, "colmap_matching")


def two_view_options(overrides: Mapping[str, Any] | None) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's default verification (not hloc's) <- ``overrides``."""
    return build(pycolmap.TwoViewGeometryOptions, dict(overrides or {}), "verification")


def build_database(
    database: Path,
    image_dir: Path,
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    camera_mode: str = "AUTO",
    camera_model: str = "SIMPLE_RADIAL",
    fixed_intrinsics: Mapping[str, Any] | None = None,
    extraction: Mapping[str, Any] | None = None,
    matching: Mapping[str, Any] | None = None,
    verification: Mapping[str, Any] | None = None,
    skip_verification: bool = False,
    num_threads: int | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """A COLMAP database with COLMAP's SIFT features and matches of ``names`` (every pair, or
    ``pairs``), verified unless ``skip_verification``. Returns timings and counts."""
    database = Path(database)
    reader = pycolmap.ImageReaderOptions({"camera_model": camera_model})
    ext_opts = extraction_options(extraction, num_threads)
    match_opts = matching_options(matching, num_threads, skip_verification)
    verify_opts = two_view_options(verification)
    with pycolmap.Database.open(database):
        pass
    start = time.perf_counter()
    with colmap_output(verbose):
        pycolmap.extract_features(database, image_dir, image_names=list(names), camera_mode=to_camera_mode(camera_mode),
                                  reader_options=reader, extraction_options=ext_opts, device=pycolmap.Device.cpu)
    extract_s = time.perf_counter() - start
    with pycolmap.Database.open(database) as db:
        images = {image.name: image.image_id for image in db.read_all_images()}
        failed = {n: _unreadable_reason(Path(image_dir) / n) for n in names if n not in images}
        names = [n for n in names if n in images]
        if not names:
            raise ReconstructionError(f"COLMAP could not read any image of {image_dir}: {sorted(failed)[:10]}")
        if failed:  # the others go on; these count as failed, as for every other method
            logger.warning("COLMAP could not read %d image(s), left out: %s", len(failed),
                           "; ".join(f"{n}: {e}" for n, e in failed.items()))
            if pairs is not None:
                pairs = [p for p in pairs if p[0] in images and p[1] in images]
        num_keypoints = [db.num_keypoints_for_image(images[n]) for n in names]
        params = None
        if fixed_intrinsics is not None:
            params = set_fixed_intrinsics(db, fixed_intrinsics, names)
    start = time.perf_counter()
    with colmap_output(verbose):
        if pairs is None:
            pycolmap.match_exhaustive(database, matching_options=match_opts, verification_options=verify_opts,
                                      device=pycolmap.Device.cpu)
        else:
            pair_file = write_pairs(database.with_name("pairs-colmap.txt"), pairs)
            pycolmap.match_image_pairs(database, matching_options=match_opts,
                                       pairing_options=pycolmap.ImportedPairingOptions(match_list_path=pair_file),
                                       verification_options=verify_opts, device=pycolmap.Device.cpu)
    match_s = time.perf_counter() - start
    num_pairs = len(pairs) if pairs is not None else len(names) * (len(names) - 1) // 2
    with pycolmap.Database.open(database) as db:
        _, counts = db.read_all_matches()
        num_matches = [len(m) for m in counts]
    return {
        "extract_s": extract_s, "match_s": match_s, "num_pairs": num_pairs,
        "mean_keypoints_per_image": float(np.mean(num_keypoints)),
        "mean_matches_per_pair": float(np.sum(num_matches) / max(num_pairs, 1)),
        "min_num_inliers": verify_opts.min_num_inliers, "failed": failed, "fixed_camera_params": params,
    }


def _unreadable_reason(path: Path) -> str:
    """Why an image COLMAP did not import cannot be read (our decoder's message), for the report."""
    from ...io.images import ImageReadError, read_image

    try:
        read_image(path)
    except ImageReadError as error:
        return str(error)
    return f"COLMAP could not read {path} (see its log)"


def read_features_and_matches(database: Path) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """Keypoints (``name -> N x 2``, hloc's pixel-centre origin) and raw matches
    (``(name0, name1) -> M x 2``) of a COLMAP database."""
    with pycolmap.Database.open(database) as db:
        images = {image.image_id: image.name for image in db.read_all_images()}
        keypoints = {name: np.asarray(db.read_keypoints(image_id))[:, :2] - 0.5 for image_id, name in images.items()}
        pair_ids, matches = db.read_all_matches()
    out = {}
    for pair_id, m in zip(pair_ids, matches):
        id0, id1 = pycolmap.pair_id_to_image_pair(pair_id)
        out[(images[id0], images[id1])] = np.asarray(m).reshape(-1, 2)
    return keypoints, out


def reconstruct(
    sfm_dir: Path,
    image_dir: Path,
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    camera_mode: str = "AUTO",
    camera_model: str = "SIMPLE_RADIAL",
    fixed_intrinsics: Mapping[str, Any] | None = None,
    mapper_options: Mapping[str, Any] | None = None,
    extraction: Mapping[str, Any] | None = None,
    matching: Mapping[str, Any] | None = None,
    verification: Mapping[str, Any] | None = None,
    num_threads: int | None = None,
    seed: int | None = 0,
    verbose: bool = False,
    overwrite: bool = False,
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any]]:
    """COLMAP's whole pipeline into ``sfm_dir``: the same layout, stats schema and return value
    as the hloc-features pipeline (:func:`sekd_plugin.reconstruction.reconstruct`)."""
    options = mapping_options(mapper_options, fixed=fixed_intrinsics is not None, num_threads=num_threads, seed=seed)
    to_camera_mode(camera_mode)  # an unknown mode fails before any work

    def fill_database(database: Path) -> dict[str, Any]:
        built = build_database(database, image_dir, names, pairs, camera_mode, camera_model, fixed_intrinsics,
                               extraction, matching, verification, num_threads=num_threads, verbose=verbose)
        return {"camera_mode": str(camera_mode).upper(),
                "camera_model": "PINHOLE (fixed)" if fixed_intrinsics is not None else camera_model,
                "fixed_camera_params": built["fixed_camera_params"], "num_pairs": built["num_pairs"],
                "mean_keypoints_per_image": built["mean_keypoints_per_image"],
                "mean_matches_per_pair": built["mean_matches_per_pair"], "failed_images": built["failed"],
                "verification_min_inliers": built["min_num_inliers"],
                "timings": {"extract_s": built["extract_s"], "match_s": built["match_s"]}}

    return mapping.reconstruct(Path(sfm_dir), Path(image_dir), names, "colmap", fill_database, options, verbose,
                               overwrite)
