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
6. incremental mapping (:func:`.mapping.reconstruct`, shared with COLMAP's own pipeline,
   :func:`sekd_plugin.benchmark.sfm.colmap.reconstruct`); every model is written to
   ``sfm_dir/models/<i>`` and the largest (most registered images) is copied into ``sfm_dir``
   (``cameras.bin``, ``images.bin``, ``points3D.bin``, ...) and returned (None when nothing could be reconstructed, with the
   reason in ``stats.json`` under ``failure_hint``).

An ``sfm_dir`` that already holds a reconstruction is refused unless ``overwrite``; even then
only what this program writes is replaced (``models/`` holding anything else is refused).

``sfm_dir/stats.json`` records the model statistics (registered images, 3D points, mean
track length, observations per image, reprojection error, matched and verified pairs with the
inlier counts verification and the mapper's initialisation require) and the time of each
step, in the one schema of both pipelines (:data:`.mapping.STATS_KEYS`); :func:`reconstruct`
returns them with the model, :func:`main` (hloc's signature) the model only. COLMAP's log goes
to ``sfm_dir/colmap.LOG.*``. The modules: :mod:`.options` (COLMAP options from dicts),
:mod:`.database` (images, keypoints, matches, fixed intrinsics), :mod:`.mapping` (the folder,
mapping, stats, failure hint).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from ..common import PartialFailure, run_cli
from ..common.cli import finite_float
from ..io.colmap_model import camera_num_params, known_camera_models
from ..io.images import list_images, parse_image_list
from . import mapping, options as _options
from .database import (FeatureInputs, build_database, check_match_indices, read_inputs, scaled_K,  # noqa: F401
                       set_fixed_intrinsics)
from .mapping import (STATS_KEYS, TIMING_KEYS, colmap_output, failure_hint, map_database,  # noqa: F401
                      prepare_sfm_dir, reconstruction_stats, verification_stats)
from .options import (CAMERA_MODES, FIXED_INTRINSICS_OPTIONS, VERIFICATION_OPTIONS,  # noqa: F401
                      ReconstructionError, camera_mode, mapping_options, pipeline_options, verification_options)

PIPELINE = "hloc"


def reconstruct(
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
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any]]:
    """The hloc-features pipeline: ``(largest model or None, stats)`` (see the module docstring).

    ``image_list``: only these images (a text file or a list of names), else every image of
    ``image_dir``. ``mapper_options``: ``IncrementalPipelineOptions`` keys (nested dict for
    ``mapper`` / ``triangulation``), applied last. ``verification``: ``TwoViewGeometryOptions``
    keys over hloc's. ``image_options``: ``ImageReaderOptions`` keys. ``seed``: pycolmap's
    random seed (None: not set). ``overwrite``: replace a previous reconstruction in ``sfm_dir``.
    """
    sfm_dir, image_dir = Path(sfm_dir), Path(image_dir)
    if camera_num_params(camera_model) is None:  # pycolmap would fail deep in the import, with a traceback
        raise ReconstructionError(f"unknown camera model {camera_model!r}; valid: {', '.join(known_camera_models())}")
    if min_match_score is not None and not np.isfinite(min_match_score):
        raise ReconstructionError(f"min_match_score must be a finite number, got {min_match_score}")
    inputs = read_inputs(image_dir, Path(pairs), Path(features), Path(matches), image_list, min_match_score)
    mode = _options.camera_mode(camera_mode)  # an unknown mode fails before any work
    options = mapping_options(mapper_options, fixed=fixed_intrinsics is not None, num_threads=num_threads, seed=seed)
    two_view = verification_options(verification)
    reader_options = pycolmap.ImageReaderOptions({"camera_model": camera_model, **dict(image_options or {})})

    def build(database: Path) -> dict[str, Any]:
        return build_database(database, image_dir, inputs, mode, camera_model, reader_options, two_view,
                              options.min_num_matches, fixed_intrinsics, skip_geometric_verification, verbose)

    return mapping.reconstruct(sfm_dir, image_dir, inputs.names, PIPELINE, build, options, verbose, overwrite)


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
    """hloc's ``reconstruction.main``: :func:`reconstruct`, returning the largest model or None
    (the stats are in ``sfm_dir/stats.json``)."""
    rec, _ = reconstruct(sfm_dir, image_dir, pairs, features, matches, camera_mode, camera_model, fixed_intrinsics,
                         skip_geometric_verification, min_match_score, image_list, mapper_options, verbose,
                         image_options, num_threads, seed, overwrite, verification)
    return rec


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
    parser.add_argument("--min-match-score", type=finite_float)
    parser.add_argument("--mapper-option", action="append", default=[], metavar="KEY=VALUE",
                        help="IncrementalPipelineOptions entry (e.g. mapper.init_min_num_inliers=50)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the reconstruction already in --sfm-dir (only the files this program writes)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    return run_cli(_cli_main, args=args, on_success=_cli_done)


def _cli_main(args: argparse.Namespace) -> pycolmap.Reconstruction:
    from ..common.conf_layers import parse_dotlist

    mapper = parse_dotlist(args.mapper_option, "--mapper-option") if args.mapper_option else None
    fixed = None
    if args.gt_intrinsics is not None:
        from ..datasets.strecha import intrinsics_from_gt, load_gt_cameras

        names = parse_image_list(args.image_list) if args.image_list else list_images(args.images)
        fixed = intrinsics_from_gt(load_gt_cameras(args.gt_intrinsics, names, image_dir=args.images))
    rec, stats = reconstruct(
        sfm_dir=args.sfm_dir, image_dir=args.images, pairs=args.pairs, features=args.features, matches=args.matches,
        camera_mode=args.camera_mode, camera_model=args.camera_model, fixed_intrinsics=fixed,
        skip_geometric_verification=args.skip_geometric_verification, min_match_score=args.min_match_score,
        image_list=args.image_list, mapper_options=mapper, verbose=args.verbose, overwrite=args.overwrite)
    if rec is None:
        raise PartialFailure(f"no model could be reconstructed: {stats['failure_hint']}")
    return rec


def _cli_done(rec: pycolmap.Reconstruction) -> int:
    print(rec.summary())
    return 0


__all__ = ["reconstruct", "main", "cli", "ReconstructionError", "CAMERA_MODES", "STATS_KEYS", "TIMING_KEYS",
           "pipeline_options", "verification_options", "mapping_options", "camera_mode", "check_match_indices",
           "scaled_K", "set_fixed_intrinsics", "verification_stats", "failure_hint", "reconstruction_stats",
           "prepare_sfm_dir", "map_database", "colmap_output", "FeatureInputs", "FIXED_INTRINSICS_OPTIONS",
           "VERIFICATION_OPTIONS"]
