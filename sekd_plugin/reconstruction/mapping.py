"""What every SfM pipeline does around its database: the ``sfm_dir`` lifecycle, COLMAP's log,
incremental mapping, the one stats schema, the failure hint and ``stats.json``.

A pipeline (hloc features: :func:`sekd_plugin.reconstruction.reconstruct`; COLMAP's own:
:func:`sekd_plugin.benchmark.sfm.colmap.reconstruct`) only fills the database; :func:`reconstruct`
does the rest, so both return ``(model or None, stats)`` with the keys of :data:`STATS_KEYS`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pycolmap

from ..common import write_json
from ..common.cli import quiet_colmap, restore_sigterm
from .options import ReconstructionError

logger = logging.getLogger(__name__)

# Files a pipeline writes into sfm_dir (and COLMAP into sfm_dir/models/<i>).
MODEL_FILES = ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin", "project.ini")
OWN_FILES = ("database.db", "stats.json", "pairs-sfm.txt", "pairs-colmap.txt", *MODEL_FILES)
_BAD_CONFIGS = (pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE)

# The one stats schema of both pipelines; a stage a pipeline does not run times as None
# (COLMAP's own pipeline verifies while matching: its verification is in match_s).
TIMING_KEYS = ("extract_s", "match_s", "import_s", "verification_s", "mapping_s")
DATABASE_KEYS = ("camera_mode", "camera_model", "fixed_camera_params", "num_pairs", "mean_keypoints_per_image",
                 "mean_matches_per_pair", "failed_images")
VERIFICATION_KEYS = ("num_verified_pairs", "verification_min_inliers", "max_pair_inliers", "median_pair_inliers",
                     "init_min_num_inliers", "num_pairs_above_init_min_inliers")
MODEL_KEYS = ("registered_images", "num_points3D", "mean_track_length", "mean_observations_per_image",
              "mean_reprojection_error_px", "num_observations")
STATS_KEYS = ("pipeline", "num_input_images", *DATABASE_KEYS, *VERIFICATION_KEYS, "num_models", "largest_model",
              *MODEL_KEYS, "failure_hint", "timings")


@contextlib.contextmanager
def colmap_output(verbose: bool):
    """Silence COLMAP's stderr logging unless ``verbose`` (the log file is still written); a
    SIGTERM during the stage raises :class:`~sekd_plugin.common.cli.Terminated` (glog's handler,
    installed by the import of pycolmap, is replaced by the CLI's again)."""
    restore_sigterm()
    with quiet_colmap(verbose):
        yield


def prepare_sfm_dir(sfm_dir: Path, overwrite: bool) -> None:
    """Make ``sfm_dir`` ready for a new reconstruction without deleting anything we did not write.

    An ``sfm_dir`` holding a previous reconstruction is refused unless ``overwrite``; with it,
    only the pipelines' files and COLMAP's numbered model folders (holding only model files)
    are removed. ``models/`` with anything else in it is refused either way.
    """
    sfm_dir.mkdir(parents=True, exist_ok=True)
    models = sfm_dir / "models"
    existing = [name for name in (*OWN_FILES, "models") if (sfm_dir / name).exists()]
    # a run that ended without a model (COLMAP found no initial pair, an interruption) is
    # replaced, not defended: the corrected command just works
    finished = (any((sfm_dir / name).exists() for name in MODEL_FILES)
                or (models.exists() and (not models.is_dir()
                                         or any(not p.is_dir() or any(p.iterdir()) for p in models.iterdir()))))
    if existing and finished and not overwrite:
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


def map_database(
    sfm_dir: Path,
    database: Path,
    image_dir: Path,
    options: pycolmap.IncrementalPipelineOptions,
    num_images: int,
    verbose: bool = False,
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any]]:
    """Incremental mapping of a verified database into ``sfm_dir/models/<i>``; the largest model
    is copied into ``sfm_dir`` and returned with its statistics."""
    models_path = sfm_dir / "models"
    models_path.mkdir(parents=True, exist_ok=True)
    logger.info("Incremental mapping of %d images...", num_images)
    with colmap_output(verbose):
        models = pycolmap.incremental_mapping(database, image_dir, models_path, options=options)
    stats: dict[str, Any] = {"num_models": len(models), "largest_model": None}
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


def reconstruct(
    sfm_dir: Path,
    image_dir: Path,
    names: Sequence[str],
    pipeline: str,
    build: Callable[[Path], dict[str, Any]],
    options: pycolmap.IncrementalPipelineOptions,
    verbose: bool = False,
    overwrite: bool = False,
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any]]:
    """The steps both pipelines share around ``build(database) -> stats``, which fills the new
    database (images, keypoints, verified matches) and returns the :data:`DATABASE_KEYS`, its
    ``verification_min_inliers`` and its ``timings``. Prepares ``sfm_dir``, logs COLMAP there,
    maps, explains a failure and writes ``sfm_dir/stats.json``; returns ``(largest model or
    None, stats)`` with exactly the keys of :data:`STATS_KEYS`."""
    sfm_dir = Path(sfm_dir)
    prepare_sfm_dir(sfm_dir, overwrite)
    database = sfm_dir / "database.db"
    with pycolmap.Database.open(database):  # creates the empty database
        pass
    pycolmap.logging.set_log_destination(pycolmap.logging.INFO, sfm_dir / "colmap.LOG.")
    built = build(database)
    timings = {key: None for key in TIMING_KEYS}
    timings.update(built.pop("timings"))
    stats: dict[str, Any] = {"pipeline": pipeline, "num_input_images": len(names), "fixed_camera_params": None,
                             "mean_keypoints_per_image": None, "failed_images": {}}
    stats.update(built)
    stats.update(verification_stats(database, built["verification_min_inliers"], options.mapper.init_min_num_inliers))
    start = time.perf_counter()
    reconstruction, model_stats = map_database(sfm_dir, database, image_dir, options, len(names), verbose)
    timings["mapping_s"] = time.perf_counter() - start
    stats.update(model_stats)
    stats["failure_hint"] = None
    if reconstruction is None:
        stats["failure_hint"] = failure_hint(stats, options)
        logger.error("Could not reconstruct any model: %s", stats["failure_hint"])
    stats["timings"] = timings
    stats = {key: stats[key] for key in STATS_KEYS}  # the one schema: a missing key fails here, loudly
    write_json(sfm_dir / "stats.json", stats)
    return reconstruction, stats
