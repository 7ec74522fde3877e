"""Structure-from-motion from hloc feature and match files with pycolmap.

    python -m sekd_plugin.reconstruction --sfm-dir OUT --images DIR --pairs pairs.txt \\
        --features feats.h5 --matches matches.h5 [--camera-mode SINGLE] [--overwrite] [--verbose]

``main(sfm_dir, image_dir, pairs, features, matches, ...)`` follows ``hloc.reconstruction``:

1. a new COLMAP database ``sfm_dir/database.db``;
2. the images imported with pycolmap (cameras per ``camera_mode``: AUTO, SINGLE,
   PER_FOLDER or PER_IMAGE, model ``camera_model``); with ``fixed_intrinsics``
   (``name -> (K, width, height)``, K for an image of that size and rescaled to the actual
   size by the one rule of :func:`sekd_plugin.datasets.strecha.image_scale`: same aspect ratio,
   else an error) each camera becomes a ``PINHOLE`` camera with that K,
   and the mapper is told not to refine focal lengths, principal points or extra parameters;
3. the keypoints of the features file, **+0.5** (our keypoints put the centre of the top-left
   pixel at (0, 0); COLMAP puts its corner there);
4. the matches of every pair of ``pairs`` (once per unordered pair; optionally only those
   with a score > ``min_match_score``), each index checked against its image's keypoint count
   before COLMAP sees any of them (matches made with other features are an error naming the pair);
5. two-view geometric verification with pycolmap (``verification_options``, default hloc's
   :data:`VERIFICATION_OPTIONS`; or, with ``skip_geometric_verification``, all matches taken
   as inliers);
6. incremental mapping (:func:`map_database`, shared with the COLMAP-native pipeline of the
   benchmark); every model is written to ``sfm_dir/models/<i>`` and the largest (most
   registered images) is copied into ``sfm_dir`` (``cameras.bin``, ``images.bin``,
   ``points3D.bin``, ...) and returned (None when nothing could be reconstructed, with the
   reason in ``stats.json`` under ``failure_hint``).

An ``sfm_dir`` that already holds a reconstruction is refused unless ``overwrite``; even then
only what this program writes is replaced (``models/`` holding anything else is refused).

``sfm_dir/stats.json`` records the model statistics (registered images, 3D points, mean
track length, observations per image, reprojection error, matched and verified pairs with the
inlier counts verification and the mapper's initialisation require) and the time of each
step; COLMAP's log goes to ``sfm_dir/colmap.LOG.*``.
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
from omegaconf import OmegaConf

from .common import PartialFailure, run_cli, write_json
from .common.cli import restore_sigterm
from .common.errors import InputError
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
# Files this module writes into sfm_dir (and COLMAP into sfm_dir/models/<i>).
MODEL_FILES = ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin", "project.ini")
OWN_FILES = ("database.db", "stats.json", "pairs-sfm.txt", *MODEL_FILES)
_BAD_CONFIGS = (pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE)


class ReconstructionError(InputError):
    """Inconsistent inputs (missing images, features or pairs; bad options; an occupied sfm_dir)."""


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _colmap_output(verbose: bool):
    """Silence COLMAP's stderr logging unless ``verbose`` (the log file is still written); a
    SIGTERM during the stage raises :class:`~sekd_plugin.common.cli.Terminated` (glog's handler,
    installed by the import of pycolmap, is replaced by the CLI's again)."""
    restore_sigterm()
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


def _check_keys(options: Mapping[str, Any], reference: Mapping[str, Any], what: str, prefix: str = "") -> None:
    for key, value in options.items():
        if key not in reference:
            raise ReconstructionError(f"unknown {what} option '{prefix}{key}'; valid: {sorted(reference)}")
        ref = reference[key]
        if isinstance(value, Mapping):
            if not isinstance(ref, Mapping):
                raise ReconstructionError(f"{what} option '{prefix}{key}' is not a group")
            _check_keys(value, ref, what, f"{prefix}{key}.")
        elif isinstance(ref, Mapping):
            raise ReconstructionError(f"{what} option '{prefix}{key}' is a group of options, got {value!r}")
        elif not _same_kind(value, ref):
            raise ReconstructionError(f"{what} option '{prefix}{key}' must be a {type(ref).__name__} "
                                      f"(like its default {ref!r}), got {value!r}")


def _same_kind(value: Any, ref: Any) -> bool:
    if isinstance(ref, bool):
        return isinstance(value, bool)
    if isinstance(ref, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(ref, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(ref, str):
        return isinstance(value, str)
    return True  # enums, paths, sets: pycolmap converts or refuses


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts merged left to right (OmegaConf)."""
    return OmegaConf.to_container(OmegaConf.merge(*[OmegaConf.create(dict(layer)) for layer in layers]))


def _build(cls, options: Mapping[str, Any], what: str):
    _check_keys(options, cls().todict(), what)
    try:
        return cls(dict(options))
    except (TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise ReconstructionError(f"invalid {what} options {dict(options)}: {error}") from None


def pipeline_options(options: Mapping[str, Any]) -> pycolmap.IncrementalPipelineOptions:
    """``IncrementalPipelineOptions`` from a (nested) dict; an unknown key is a clear error."""
    return _build(pycolmap.IncrementalPipelineOptions, options, "mapper")


def verification_options(options: Mapping[str, Any] | None = None) -> pycolmap.TwoViewGeometryOptions:
    """``TwoViewGeometryOptions``: hloc's :data:`VERIFICATION_OPTIONS` <- ``options``."""
    return _build(pycolmap.TwoViewGeometryOptions, _merge(VERIFICATION_OPTIONS, options or {}), "verification")


def _scaled_K(K: np.ndarray, size: tuple[int, int], target: tuple[int, int], where: str = "fixed_intrinsics") -> np.ndarray:
    """K of an image of ``size`` (W, H) rescaled to ``target``: the one rule of
    :func:`sekd_plugin.datasets.strecha.image_scale` (same aspect ratio, else an error)."""
    from .datasets.strecha import scale_K

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
        K = _scaled_K(K, (int(w), int(h)), (camera.width, camera.height), f"fixed_intrinsics of {name}")
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


def verification_stats(database: Path, min_inliers: int, init_min_inliers: int) -> dict[str, Any]:
    """Two-view geometries of the database: how many pairs verification accepted (at least
    ``min_inliers`` inliers, a valid configuration), the best pair's inlier count, and how many
    pairs have the ``init_min_inliers`` the mapper needs to start a model."""
    with pycolmap.Database.open(database) as db:
        _, geometries = db.read_two_view_geometries()
    counts = np.array([len(g.inlier_matches) if g.config not in _BAD_CONFIGS else 0 for g in geometries], int)
    return {
        "num_verified_pairs": int((counts >= min_inliers).sum()) if len(counts) else 0,
        "verification_min_inliers": int(min_inliers),
        "max_pair_inliers": int(counts.max()) if len(counts) else 0,
        "median_pair_inliers": float(np.median(counts)) if len(counts) else 0.0,
        "init_min_num_inliers": int(init_min_inliers),
        "num_pairs_above_init_min_inliers": int((counts >= init_min_inliers).sum()) if len(counts) else 0,
    }


def failure_hint(stats: Mapping[str, Any], options: pycolmap.IncrementalPipelineOptions) -> str:
    """Why incremental mapping produced no model, in the terms of its options."""
    best, need = stats.get("max_pair_inliers", 0), options.mapper.init_min_num_inliers
    if not stats.get("num_verified_pairs"):
        return (f"no image pair passed geometric verification (each needs >= {stats.get('verification_min_inliers')} "
                f"inliers; best pair: {best}): the images do not overlap or the matches are wrong")
    if best < need:
        return (f"COLMAP rejected every initial image pair: the mapper needs a verified pair with >= {need} inliers "
                f"(mapper.mapper.init_min_num_inliers) and the best pair has {best}; lower it, or extract more "
                "keypoints")
    return (f"COLMAP rejected every initial image pair: {stats.get('num_pairs_above_init_min_inliers')} pair(s) have "
            f">= {need} inliers, but none gave a triangulation angle >= {options.mapper.init_min_tri_angle} deg "
            f"(mapper.mapper.init_min_tri_angle) with a forward motion <= {options.mapper.init_max_forward_motion} "
            "(mapper.mapper.init_max_forward_motion); with few images, lower the angle or add views with a wider "
            "baseline")


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


def prepare_sfm_dir(sfm_dir: Path, overwrite: bool) -> None:
    """Make ``sfm_dir`` ready for a new reconstruction without deleting anything we did not write.

    An ``sfm_dir`` holding a previous reconstruction is refused unless ``overwrite``; with it,
    only this module's files and COLMAP's numbered model folders (holding only model files)
    are removed. ``models/`` with anything else in it is refused either way.
    """
    sfm_dir.mkdir(parents=True, exist_ok=True)
    models = sfm_dir / "models"
    existing = [name for name in (*OWN_FILES, "models") if (sfm_dir / name).exists()]
    if existing and not overwrite:
        raise ReconstructionError(
            f"{sfm_dir} already holds a reconstruction ({', '.join(existing)}); pass --overwrite "
            "(overwrite=True) to replace it, or choose another --sfm-dir")
    if models.exists():
        foreign = [p.name for p in models.iterdir()
                   if not (p.is_dir() and p.name.isdigit()
                           and all(f.is_file() and f.name in MODEL_FILES for f in p.iterdir()))]
        if foreign or not models.is_dir():
            raise ReconstructionError(
                f"{models} holds files this program did not write ({', '.join(sorted(foreign)[:5]) or models}); "
                "move them away or choose another --sfm-dir")
        for folder in models.iterdir():
            for file in folder.iterdir():
                file.unlink()
            folder.rmdir()
        models.rmdir()
    for name in OWN_FILES:
        (sfm_dir / name).unlink(missing_ok=True)


def map_database(
    sfm_dir: Path,
    database: Path,
    image_dir: Path,
    options: pycolmap.IncrementalPipelineOptions,
    num_images: int,
    verbose: bool = False,
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any]]:
    """Incremental mapping of a verified database into ``sfm_dir/models/<i>``; the largest model
    is copied into ``sfm_dir`` and returned with its statistics (and ``failure_hint`` if none)."""
    models_path = sfm_dir / "models"
    models_path.mkdir(parents=True, exist_ok=True)
    logger.info("Incremental mapping of %d images...", num_images)
    with _colmap_output(verbose):
        models = pycolmap.incremental_mapping(database, image_dir, models_path, options=options)
    stats: dict[str, Any] = {"num_models": len(models)}
    reconstruction = None
    if models:
        best = max(models, key=lambda i: (models[i].num_reg_images(), models[i].num_points3D()))
        reconstruction = models[best]
        for file in (models_path / str(best)).iterdir():
            if file.is_file():
                shutil.copy2(file, sfm_dir / file.name)
        logger.info("Largest of %d model(s): #%d with %d of %d images.", len(models), best,
                    reconstruction.num_reg_images(), num_images)
        stats["largest_model"] = int(best)
    stats.update(reconstruction_stats(reconstruction))
    return reconstruction, stats


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
    overwrite: bool = False,
    verification: Mapping[str, Any] | None = None,
) -> pycolmap.Reconstruction | None:
    """Reconstruct ``image_dir`` from features and matches; see the module docstring.

    ``image_list``: only these images (a text file or a list of names), else every image of
    ``image_dir``. ``mapper_options``: ``IncrementalPipelineOptions`` keys (nested dict for
    ``mapper`` / ``triangulation``), applied last. ``verification``: ``TwoViewGeometryOptions``
    keys over hloc's. ``image_options``: ``ImageReaderOptions`` keys. ``seed``: pycolmap's
    random seed (None: not set). ``overwrite``: replace a previous reconstruction in
    ``sfm_dir``. Returns the largest model or None.
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

    options = mapping_options(mapper_options, fixed=fixed_intrinsics is not None, num_threads=num_threads, seed=seed)
    two_view = verification_options(verification)
    reader_options = pycolmap.ImageReaderOptions({"camera_model": camera_model, **dict(image_options or {})})
    # read and check everything before COLMAP sees it (an out-of-range index crashes its verification)
    keypoints = {name: np.asarray(get_keypoints(features, name), dtype=np.float64) + 0.5 for name in names}  # COLMAP origin
    pair_matches = []
    for name0, name1 in pair_list:
        m, scores = get_matches(matches, name0, name1)
        if min_match_score is not None:
            m = m[scores > min_match_score]
        check_match_indices(m, (name0, name1), (len(keypoints[name0]), len(keypoints[name1])), matches, features)
        pair_matches.append((name0, name1, m.astype(np.uint32)))

    prepare_sfm_dir(sfm_dir, overwrite)
    database = sfm_dir / "database.db"
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
            stats["fixed_camera_params"] = set_fixed_intrinsics(db, fixed_intrinsics, names)
        for name in names:
            db.write_keypoints(ids[name], keypoints[name].astype(np.float32))
        num_matches = []
        for name0, name1, m in pair_matches:
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
            pycolmap.verify_matches(database, sfm_pairs, options=two_view)
    timings["verification_s"] = time.perf_counter() - start
    min_inliers = options.min_num_matches if skip_geometric_verification else two_view.min_num_inliers
    stats.update(verification_stats(database, min_inliers, options.mapper.init_min_num_inliers))

    # 6: incremental mapping
    start = time.perf_counter()
    reconstruction, model_stats = map_database(sfm_dir, database, image_dir, options, len(names), verbose)
    timings["mapping_s"] = time.perf_counter() - start
    stats.update(model_stats)
    if reconstruction is None:
        stats["failure_hint"] = failure_hint(stats, options)
        logger.error("Could not reconstruct any model: %s", stats["failure_hint"])
    stats["timings"] = timings
    write_json(sfm_dir / "stats.json", stats)
    return reconstruction


def mapping_options(
    mapper_options: Mapping[str, Any] | None = None,
    fixed: bool = False,
    num_threads: int | None = None,
    seed: int | None = 0,
) -> pycolmap.IncrementalPipelineOptions:
    """The mapper options every pipeline uses: threads, seed, fixed intrinsics, then the user's."""
    options: dict[str, Any] = {"num_threads": num_threads or min(multiprocessing.cpu_count(), 16)}
    if seed is not None:
        pycolmap.set_random_seed(int(seed))
        options["random_seed"] = int(seed)
    layers = [options, FIXED_INTRINSICS_OPTIONS] if fixed else [options]
    return pipeline_options(_merge(*layers, mapper_options or {}))


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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the reconstruction already in --sfm-dir (only the files this program writes)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    return run_cli(_cli_main, args=args, on_success=_cli_done)


def _cli_main(args: argparse.Namespace) -> pycolmap.Reconstruction:
    from omegaconf.errors import OmegaConfBaseException

    bad = [o for o in args.mapper_option if "=" not in o]
    if bad:
        raise ReconstructionError(f"--mapper-option expects KEY=VALUE, got {bad}")
    try:
        mapper = OmegaConf.to_container(OmegaConf.from_dotlist(args.mapper_option)) if args.mapper_option else None
    except OmegaConfBaseException as error:
        raise ReconstructionError(f"--mapper-option {args.mapper_option}: {error}") from None
    fixed = None
    if args.gt_intrinsics is not None:
        from .datasets.strecha import intrinsics_from_gt, load_gt_cameras

        names = parse_image_list(args.image_list) if args.image_list else list_images(args.images)
        fixed = intrinsics_from_gt(load_gt_cameras(args.gt_intrinsics, names, image_dir=args.images))
    rec = main(sfm_dir=args.sfm_dir, image_dir=args.images, pairs=args.pairs, features=args.features,
               matches=args.matches, camera_mode=args.camera_mode, camera_model=args.camera_model,
               fixed_intrinsics=fixed, skip_geometric_verification=args.skip_geometric_verification,
               min_match_score=args.min_match_score, image_list=args.image_list, mapper_options=mapper,
               verbose=args.verbose, overwrite=args.overwrite)
    if rec is None:
        import json

        hint = json.loads((args.sfm_dir / "stats.json").read_text()).get("failure_hint", "")
        raise PartialFailure(f"no model could be reconstructed: {hint}")
    return rec


def _cli_done(rec: pycolmap.Reconstruction) -> int:
    print(rec.summary())
    return 0


if __name__ == "__main__":
    sys.exit(cli())
