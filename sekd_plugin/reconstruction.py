"""Structure-from-motion from hloc feature and match files with pycolmap.

    python -m sekd_plugin.reconstruction --sfm-dir OUT --images DIR --pairs pairs.txt \\
        --features feats.h5 --matches matches.h5 [--camera-mode SINGLE] [--verbose]

``main(sfm_dir, image_dir, pairs, features, matches, ...)`` follows ``hloc.reconstruction``:

1. a new COLMAP database ``sfm_dir/database.db`` (an old one is replaced);
2. the images imported with pycolmap (cameras per ``camera_mode``: AUTO, SINGLE,
   PER_FOLDER or PER_IMAGE, model ``camera_model``); with ``fixed_intrinsics``
   (``name -> (K, width, height)``, K for an image of that size and rescaled to the actual
   size) each camera becomes a ``PINHOLE`` camera with that K, and the mapper is told not to
   refine focal lengths, principal points or extra parameters;
3. the keypoints of the features file, **+0.5** (our keypoints put the centre of the top-left
   pixel at (0, 0); COLMAP puts its corner there);
4. the matches of every pair of ``pairs`` (once per unordered pair; optionally only those
   with a score > ``min_match_score``);
5. two-view geometric verification with pycolmap (or, with
   ``skip_geometric_verification``, all matches taken as inliers);
6. incremental mapping; every model is written to ``sfm_dir/models/<i>`` and the largest
   (most registered images) is copied into ``sfm_dir`` (``cameras.bin``, ``images.bin``,
   ``points3D.bin``, ...) and returned (None when nothing could be reconstructed).

``sfm_dir/stats.json`` records the model statistics (registered images, 3D points, mean
track length, observations per image, reprojection error, matched and verified pairs) and
the time of each step; COLMAP's log goes to ``sfm_dir/colmap.LOG.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from .io.h5 import get_keypoints, get_matches, list_names
from .io.images import list_images, parse_image_list
from .pairs import read_pairs, unique_pairs, write_pairs

logger = logging.getLogger(__name__)

CAMERA_MODES = tuple(pycolmap.CameraMode.__members__)
# Two-view verification as hloc: more RANSAC trials, lower inlier ratio than COLMAP's defaults.
VERIFICATION_OPTIONS = {"ransac": {"max_num_trials": 20000, "min_inlier_ratio": 0.1}}
# Two-view configuration stored for unverified matches (skip_geometric_verification).
SKIP_CONFIG = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
# Mapper options that keep the intrinsics fixed.
FIXED_INTRINSICS_OPTIONS = {
    "ba_refine_focal_length": False,
    "ba_refine_principal_point": False,
    "ba_refine_extra_params": False,
    "mapper": {"abs_pose_refine_focal_length": False, "abs_pose_refine_extra_params": False},
}


class ReconstructionError(ValueError):
    """Inconsistent inputs (missing images, features or pairs; bad options)."""


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _colmap_output(verbose: bool):
    """Silence COLMAP's stderr logging unless ``verbose`` (the log file is still written)."""
    previous = pycolmap.logging.alsologtostderr
    if not verbose:
        pycolmap.logging.alsologtostderr = False
    try:
        yield
    finally:
        pycolmap.logging.alsologtostderr = previous


def _camera_mode(mode: str | pycolmap.CameraMode) -> pycolmap.CameraMode:
    if isinstance(mode, pycolmap.CameraMode):
        return mode
    key = str(mode).upper()
    if key not in pycolmap.CameraMode.__members__:
        raise ReconstructionError(f"unknown camera_mode '{mode}'; valid: {list(CAMERA_MODES)}")
    return pycolmap.CameraMode.__members__[key]


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def pipeline_options(options: Mapping[str, Any]) -> pycolmap.IncrementalPipelineOptions:
    """``IncrementalPipelineOptions`` from a (nested) dict; an unknown key is a clear error."""
    valid = pycolmap.IncrementalPipelineOptions().todict()

    def check(opts, ref, prefix=""):
        for key, value in opts.items():
            if key not in ref:
                raise ReconstructionError(
                    f"unknown mapper option '{prefix}{key}'; valid: {sorted(ref)}")
            if isinstance(value, Mapping):
                if not isinstance(ref[key], Mapping):
                    raise ReconstructionError(f"mapper option '{prefix}{key}' is not a group")
                check(value, ref[key], f"{prefix}{key}.")

    check(options, valid)
    try:
        return pycolmap.IncrementalPipelineOptions(dict(options))
    except (TypeError, ValueError, RuntimeError) as error:
        raise ReconstructionError(f"invalid mapper options {dict(options)}: {error}") from None


def _scaled_K(K: np.ndarray, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """K of an image of ``size`` (W, H) rescaled to ``target`` (plain scaling of focal and centre)."""
    K = np.asarray(K, float).copy()
    if tuple(size) != tuple(target):
        sx, sy = target[0] / size[0], target[1] / size[1]
        K[0] *= sx
        K[1] *= sy
    return K


def _set_fixed_intrinsics(db, names_to_ids: dict[str, int], fixed: Mapping[str, Any]) -> dict[int, list[float]]:
    """Replace the cameras of the database by PINHOLE cameras with the given K."""
    missing = sorted(set(names_to_ids) - set(fixed))
    if missing:
        raise ReconstructionError(f"fixed_intrinsics has no K for {len(missing)} image(s): {missing[:10]}")
    images = {image.image_id: image for image in db.read_all_images()}
    cameras = {camera.camera_id: camera for camera in db.read_all_cameras()}
    params: dict[int, tuple[list[float], str]] = {}
    for name, image_id in names_to_ids.items():
        camera = cameras[images[image_id].camera_id]
        K, w, h = fixed[name]
        K = _scaled_K(K, (int(w), int(h)), (camera.width, camera.height))
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


def _count_verified(db, min_inliers: int) -> int:
    ids, geometries = db.read_two_view_geometries()
    bad = {pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE}
    return sum(1 for g in geometries if g.config not in bad and len(g.inlier_matches) >= min_inliers)


def reconstruction_stats(reconstruction: pycolmap.Reconstruction | None) -> dict[str, Any]:
    """Model statistics (zeros / None for no model)."""
    if reconstruction is None:
        return {"registered_images": 0, "num_points3D": 0, "mean_track_length": None,
                "mean_observations_per_image": None, "mean_reprojection_error_px": None, "num_observations": 0}
    return {
        "registered_images": int(reconstruction.num_reg_images()),
        "num_points3D": int(reconstruction.num_points3D()),
        "mean_track_length": float(reconstruction.compute_mean_track_length()),
        "mean_observations_per_image": float(reconstruction.compute_mean_observations_per_reg_image()),
        "mean_reprojection_error_px": float(reconstruction.compute_mean_reprojection_error()),
        "num_observations": int(reconstruction.compute_num_observations()),
    }


def _write_json(path: Path, data: dict) -> None:
    from .common import write_json

    write_json(path, data)


# --------------------------------------------------------------------------- main


def main(
    sfm_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    pairs: str | os.PathLike,
    features: str | os.PathLike,
    matches: str | os.PathLike,
    camera_mode: str | pycolmap.CameraMode = "AUTO",
    camera_model: str = "SIMPLE_RADIAL",
    fixed_intrinsics: Mapping[str, tuple[np.ndarray, int, int]] | None = None,
    skip_geometric_verification: bool = False,
    min_match_score: float | None = None,
    image_list: str | os.PathLike | Sequence[str] | None = None,
    mapper_options: Mapping[str, Any] | None = None,
    verbose: bool = False,
    image_options: Mapping[str, Any] | None = None,
    num_threads: int | None = None,
    seed: int | None = 0,
) -> pycolmap.Reconstruction | None:
    """Reconstruct ``image_dir`` from features and matches; see the module docstring.

    ``image_list``: only these images (a text file or a list of names), else every image of
    ``image_dir``. ``mapper_options``: ``IncrementalPipelineOptions`` keys (nested dict for
    ``mapper`` / ``triangulation``), applied last. ``image_options``: ``ImageReaderOptions``
    keys. ``seed``: pycolmap's random seed (None: not set). Returns the largest model or None.
    """
    sfm_dir, image_dir = Path(sfm_dir), Path(image_dir)
    pairs, features, matches = Path(pairs), Path(features), Path(matches)
    for path, what in ((features, "features file"), (matches, "matches file"), (pairs, "pairs file")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    mode = _camera_mode(camera_mode)

    names = parse_image_list(image_list) if image_list is not None else list_images(image_dir)
    if not names:
        raise ReconstructionError(f"no images to reconstruct in {image_dir}")
    missing = sorted(set(names) - set(list_names(features)))
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

    options = {"num_threads": num_threads or min(multiprocessing.cpu_count(), 16)}
    if seed is not None:
        pycolmap.set_random_seed(int(seed))
        options["random_seed"] = int(seed)
    if fixed_intrinsics is not None:
        options = _merge(options, FIXED_INTRINSICS_OPTIONS)
    options = pipeline_options(_merge(options, mapper_options or {}))
    reader_options = pycolmap.ImageReaderOptions({"camera_model": camera_model, **dict(image_options or {})})

    sfm_dir.mkdir(parents=True, exist_ok=True)
    database = sfm_dir / "database.db"
    if database.exists():
        logger.warning("Replacing the existing database %s", database)
        database.unlink()
    with pycolmap.Database.open(database):  # creates the empty database
        pass
    pycolmap.logging.set_log_destination(pycolmap.logging.INFO, sfm_dir / "colmap.LOG.")
    timings: dict[str, float] = {}

    # 1-4: database with images, cameras, keypoints and matches
    start = time.perf_counter()
    with _colmap_output(verbose):
        pycolmap.import_images(database, image_dir, mode, image_names=names, options=reader_options)
    stats: dict[str, Any] = {"num_input_images": len(names), "camera_mode": mode.name,
                             "camera_model": "PINHOLE (fixed)" if fixed_intrinsics is not None else camera_model}
    with pycolmap.Database.open(database) as db:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        lost = sorted(known - set(ids))
        if lost:
            raise ReconstructionError(f"pycolmap could not import {len(lost)} image(s): {lost[:10]}")
        if fixed_intrinsics is not None:
            stats["fixed_camera_params"] = _set_fixed_intrinsics(db, ids, fixed_intrinsics)
        for name in names:
            keypoints = np.asarray(get_keypoints(features, name), dtype=np.float64) + 0.5  # COLMAP origin
            db.write_keypoints(ids[name], keypoints.astype(np.float32))
        num_matches = []
        for name0, name1 in pair_list:
            m, scores = get_matches(matches, name0, name1)
            if min_match_score is not None:
                m = m[scores > min_match_score]
            m = m.astype(np.uint32)
            db.write_matches(ids[name0], ids[name1], m)
            num_matches.append(len(m))
            if skip_geometric_verification:
                db.write_two_view_geometry(ids[name0], ids[name1], pycolmap.TwoViewGeometry(inlier_matches=m, config=SKIP_CONFIG))
    timings["import_s"] = time.perf_counter() - start
    stats["num_pairs"] = len(pair_list)
    stats["mean_matches_per_pair"] = float(np.mean(num_matches))
    sfm_pairs = write_pairs(sfm_dir / "pairs-sfm.txt", pair_list)

    # 5: geometric verification
    start = time.perf_counter()
    if not skip_geometric_verification:
        logger.info("Geometric verification of %d pairs...", len(pair_list))
        with _colmap_output(verbose):
            pycolmap.verify_matches(database, sfm_pairs, options=pycolmap.TwoViewGeometryOptions(VERIFICATION_OPTIONS))
    timings["verification_s"] = time.perf_counter() - start
    with pycolmap.Database.open(database) as db:
        stats["num_verified_pairs"] = _count_verified(db, options.min_num_matches)

    # 6: incremental mapping
    start = time.perf_counter()
    models_path = sfm_dir / "models"
    if models_path.exists():
        shutil.rmtree(models_path)
    models_path.mkdir(parents=True)
    logger.info("Incremental mapping of %d images...", len(names))
    with _colmap_output(verbose):
        models = pycolmap.incremental_mapping(database, image_dir, models_path, options=options)
    timings["mapping_s"] = time.perf_counter() - start

    for old in ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin"):
        (sfm_dir / old).unlink(missing_ok=True)
    reconstruction = None
    if models:
        best = max(models, key=lambda i: (models[i].num_reg_images(), models[i].num_points3D()))
        reconstruction = models[best]
        for file in (models_path / str(best)).iterdir():
            if file.is_file():
                shutil.copy2(file, sfm_dir / file.name)
        logger.info("Largest of %d model(s): #%d with %d of %d images.", len(models), best,
                    reconstruction.num_reg_images(), len(names))
        stats["largest_model"] = int(best)
    else:
        logger.error("Could not reconstruct any model!")
    stats["num_models"] = len(models)
    stats.update(reconstruction_stats(reconstruction))
    stats["timings"] = timings
    _write_json(sfm_dir / "stats.json", stats)
    return reconstruction


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.reconstruction",
                                     description="SfM (pycolmap) from hloc features and matches.")
    parser.add_argument("--sfm-dir", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="image folder")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--image-list", type=Path, help="only these images")
    parser.add_argument("--camera-mode", default="AUTO", choices=CAMERA_MODES)
    parser.add_argument("--camera-model", default="SIMPLE_RADIAL")
    parser.add_argument("--gt-intrinsics", type=Path,
                        help="folder of Strecha .camera files: fix every camera to its GT K")
    parser.add_argument("--skip-geometric-verification", action="store_true")
    parser.add_argument("--min-match-score", type=float)
    parser.add_argument("--mapper-option", action="append", default=[], metavar="KEY=VALUE",
                        help="IncrementalPipelineOptions entry (e.g. mapper.init_min_num_inliers=50)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        from omegaconf import OmegaConf

        mapper = OmegaConf.to_container(OmegaConf.from_dotlist(args.mapper_option)) if args.mapper_option else None
        fixed = None
        if args.gt_intrinsics is not None:
            from .eval_sfm import intrinsics_from_gt, load_gt_cameras

            names = parse_image_list(args.image_list) if args.image_list else list_images(args.images)
            fixed = intrinsics_from_gt(load_gt_cameras(args.gt_intrinsics, names))
        rec = main(args.sfm_dir, args.images, args.pairs, args.features, args.matches, args.camera_mode,
                   args.camera_model, fixed, args.skip_geometric_verification, args.min_match_score,
                   args.image_list, mapper, args.verbose)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if rec is None:
        print("no model could be reconstructed", file=sys.stderr)
        return 1
    print(rec.summary())
    return 0


if __name__ == "__main__":
    sys.exit(cli())
