"""3D points from known cameras and poses (hloc's ``triangulation``) with pycolmap.

    python -m sekd_plugin.triangulation --sfm-dir OUT --reference-model MODEL --images DIR \\
        --pairs pairs.txt --features feats.h5 --matches matches.h5 [--verification poses|colmap|none] \\
        [--max-error 4] [--min-match-score S] [--overwrite] [--verbose]
    python -m sekd_plugin.triangulation --sfm-dir OUT --gt-cameras GT_DIR --images DIR ...   # Strecha GT

``main(sfm_dir, reference_model, image_dir, pairs, features, matches, ...)`` follows
``hloc.triangulation.main``: a COLMAP database is made from the reference model (its cameras,
rigs, frames and images with their ids), our keypoints (+0.5, COLMAP's pixel origin) and the
matches of the pairs are imported, the matches are verified, and pycolmap's
``triangulate_points`` triangulates, merges and completes tracks and bundle-adjusts the points
with every camera and pose held fixed (``refine_intrinsics=False``). ``reference_model`` is a
model folder or a ``pycolmap.Reconstruction``; :func:`model_from_gt_cameras` builds one from
Strecha GT cameras. Verification (``verification``):

* ``poses`` (default, hloc's known-pose check): a match is kept when its Sampson distance to the
  epipolar geometry of the two known poses is at most ``max_error`` px;
* ``colmap``: pycolmap's two-view verification (hloc's ``estimate_two_view_geometries``);
* ``none``: every match is taken as an inlier.

Writes the model into ``sfm_dir`` (``cameras.bin``, ``images.bin``, ``points3D.bin``...),
``sfm_dir/database.db`` and ``sfm_dir/stats.json`` (points, mean track length, observations,
mean reprojection error, verified matches and the time of each step).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from .common import run_cli, write_json
from .common.cli import finite_float, finite_positive_float
from .common.errors import InputError
from .io.colmap_model import ModelError, read_model
from .io.matched_features import MatchedFeatures
from .io.pairs_file import read_pairs, unique_pairs, write_pairs
from .reconstruction.mapping import colmap_output, reconstruction_stats
from .reconstruction.options import pipeline_options, verification_options

VERIFICATIONS = ("poses", "colmap", "none")
OWN_FILES = ("database.db", "stats.json", "pairs-triangulation.txt", "cameras.bin", "images.bin", "points3D.bin",
             "frames.bin", "rigs.bin")


class TriangulationError(InputError):
    """Inconsistent inputs (a missing model, features or pairs; an occupied sfm_dir)."""


def model_from_gt_cameras(cams: Mapping[str, Any], names: Sequence[str] | None = None) -> pycolmap.Reconstruction:
    """A COLMAP model with one fixed ``PINHOLE`` camera and the GT pose per image, no points.

    ``cams``: ``name -> StrechaCamera`` (``K`` 3x3, ``R_cw``, ``t_cw``, ``width``, ``height``);
    ``names``: the images to include, in this order (ids 1..N), default all of ``cams``.
    K is used as COLMAP's (the README of the scenes and the reconstruction use it so too).
    """
    rec = pycolmap.Reconstruction()
    for image_id, name in enumerate(names if names is not None else sorted(cams), 1):
        cam = cams[name]
        K = np.asarray(cam.K, float)
        camera = pycolmap.Camera(model="PINHOLE", width=int(cam.width), height=int(cam.height),
                                 params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], camera_id=image_id)
        rec.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(name=name, camera_id=image_id, image_id=image_id)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.asarray(cam.R_cw, float)), np.asarray(cam.t_cw, float))
        rec.add_image_with_trivial_frame(image, pose)
    return rec


def _load_reference(reference_model: str | os.PathLike | pycolmap.Reconstruction) -> pycolmap.Reconstruction:
    if isinstance(reference_model, pycolmap.Reconstruction):
        return reference_model
    try:
        return read_model(reference_model, "reference model")
    except ModelError as error:  # this command's error type, the reader's message
        raise TriangulationError(str(error)) from None


def create_database(reference: pycolmap.Reconstruction, database: Path) -> dict[str, int]:
    """A new database holding the reference's cameras, rigs, frames and images with their ids."""
    database.unlink(missing_ok=True)
    with pycolmap.Database.open(database) as db:
        for camera in reference.cameras.values():
            db.write_camera(camera, use_camera_id=True)
        for rig in reference.rigs.values():
            db.write_rig(rig, use_rig_id=True)
        for frame in reference.frames.values():
            db.write_frame(frame, use_frame_id=True)
        for image in reference.images.values():
            db.write_image(image, use_image_id=True)
    return {image.name: image_id for image_id, image in reference.images.items()}


def fundamental_from_poses(reference: pycolmap.Reconstruction, id0: int, id1: int) -> np.ndarray:
    """F (3x3) with ``x1^T F x0 = 0`` for COLMAP pixel coordinates, from the model's poses and K."""
    im0, im1 = reference.images[id0], reference.images[id1]
    rel = im1.cam_from_world() * im0.cam_from_world().inverse()
    R, t = np.asarray(rel.rotation.matrix()), np.asarray(rel.translation)
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    K0 = reference.cameras[im0.camera_id].calibration_matrix()
    K1 = reference.cameras[im1.camera_id].calibration_matrix()
    return np.linalg.inv(K1).T @ tx @ R @ np.linalg.inv(K0)


def sampson_distance(F: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Square root of the Sampson error (px) of ``N x 2`` correspondences under F."""
    h0, h1 = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]
    Fx0, Ftx1 = h0 @ F.T, h1 @ F
    num = np.sum(h1 * Fx0, axis=1) ** 2
    den = Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-300))


def main(
    sfm_dir: str | os.PathLike,
    reference_model: str | os.PathLike | pycolmap.Reconstruction,
    image_dir: str | os.PathLike,
    pairs: str | os.PathLike,
    features: str | os.PathLike,
    matches: str | os.PathLike,
    skip_geometric_verification: bool = False,
    estimate_two_view_geometries: bool = False,
    min_match_score: float | None = None,
    verbose: bool = False,
    mapper_options: Mapping[str, Any] | None = None,
    verification: str | None = None,
    max_error: float = 4.0,
    overwrite: bool = False,
) -> pycolmap.Reconstruction:
    """Triangulate ``features`` / ``matches`` of ``pairs`` in the fixed cameras of ``reference_model``.

    hloc's flags map onto ``verification``: ``skip_geometric_verification`` -> ``none``,
    ``estimate_two_view_geometries`` -> ``colmap``, else ``poses``. Pairs naming images that are
    not in the model are left out (leave-one-out uses that). ``mapper_options``:
    ``IncrementalPipelineOptions`` keys (``triangulation.*`` for the triangulator).
    Returns the triangulated model (also written to ``sfm_dir``).
    """
    sfm_dir, image_dir = Path(sfm_dir), Path(image_dir)
    for path, what in ((Path(features), "features file"), (Path(matches), "matches file"), (Path(pairs), "pairs file")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    mode = verification or ("none" if skip_geometric_verification else
                            "colmap" if estimate_two_view_geometries else "poses")
    if mode not in VERIFICATIONS:
        raise TriangulationError(f"unknown verification '{mode}'; valid: {list(VERIFICATIONS)}")
    if not max_error > 0:
        raise TriangulationError(f"max_error must be a positive number of pixels, got {max_error}")
    if min_match_score is not None and not np.isfinite(min_match_score):
        raise TriangulationError(f"min_match_score must be a finite number, got {min_match_score}")
    inputs = MatchedFeatures(features, matches)  # the matches must be of these features
    reference = _load_reference(reference_model)
    options = pipeline_options(dict(mapper_options or {}))
    two_view = verification_options() if mode == "colmap" else None
    existing = [n for n in OWN_FILES if (sfm_dir / n).exists()]
    if existing and not overwrite:
        raise TriangulationError(f"{sfm_dir} already holds a triangulation ({', '.join(existing)}); pass --overwrite")
    sfm_dir.mkdir(parents=True, exist_ok=True)
    for name in OWN_FILES:
        (sfm_dir / name).unlink(missing_ok=True)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    database = sfm_dir / "database.db"
    ids = create_database(reference, database)
    missing = sorted(set(ids) - set(inputs.names()))
    if missing:
        raise TriangulationError(f"{len(missing)} model image(s) have no features in {features}: {missing[:10]}")
    pair_list = [p for p in unique_pairs(read_pairs(pairs)) if p[0] in ids and p[1] in ids]
    if not pair_list:
        raise TriangulationError(f"no pair of {pairs} is between two images of the reference model")
    keypoints = {name: inputs.keypoints(name) + 0.5 for name in ids}  # COLMAP origin
    num_matches, num_inliers = 0, 0
    with pycolmap.Database.open(database) as db:
        for name, image_id in ids.items():
            db.write_keypoints(image_id, keypoints[name].astype(np.float32))
        for name0, name1 in pair_list:
            m, scores = inputs.matches_of(name0, name1)  # indices checked: COLMAP crashes on others
            if min_match_score is not None:
                m = m[scores > min_match_score]
            m = m.astype(np.uint32)
            id0, id1 = ids[name0], ids[name1]
            db.write_matches(id0, id1, m)
            num_matches += len(m)
            if mode == "colmap":
                continue
            if mode == "poses" and len(m):
                F = fundamental_from_poses(reference, id0, id1)
                err = sampson_distance(F, keypoints[name0][m[:, 0]], keypoints[name1][m[:, 1]])
                m = m[err <= max_error]
            num_inliers += len(m)
            config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            db.write_two_view_geometry(id0, id1, pycolmap.TwoViewGeometry(inlier_matches=m, config=config))
    timings["import_s"] = time.perf_counter() - start
    pairs_path = write_pairs(sfm_dir / "pairs-triangulation.txt", pair_list)
    start = time.perf_counter()
    if mode == "colmap":
        with colmap_output(verbose):
            pycolmap.verify_matches(database, pairs_path, options=two_view)
        with pycolmap.Database.open(database) as db:
            num_inliers = int(sum(len(g.inlier_matches) for g in db.read_two_view_geometries()[1]))
    timings["verification_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with colmap_output(verbose):
        rec = pycolmap.triangulate_points(reference, database, image_dir, sfm_dir, clear_points=True,
                                          options=options, refine_intrinsics=False)
    timings["triangulation_s"] = time.perf_counter() - start
    stats = {"num_images": len(ids), "num_pairs": len(pair_list), "verification": mode,
             "max_error_px": max_error if mode == "poses" else None, "num_matches": int(num_matches),
             "num_verified_matches": int(num_inliers), **reconstruction_stats(rec), "timings": timings}
    write_json(sfm_dir / "stats.json", stats)
    return rec


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.triangulation",
                                     description="Triangulate hloc features and matches in known cameras (pycolmap).")
    parser.add_argument("--sfm-dir", type=Path, required=True)
    ref = parser.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference-model", type=Path, help="COLMAP model folder with the fixed cameras and poses")
    ref.add_argument("--gt-cameras", type=Path, help="folder of Strecha .camera files (the model is built from it)")
    parser.add_argument("--images", type=Path, required=True, help="image folder")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--verification", choices=VERIFICATIONS, default="poses")
    parser.add_argument("--max-error", type=finite_positive_float, default=4.0, help="poses: Sampson distance threshold (px)")
    parser.add_argument("--min-match-score", type=finite_float)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    return run_cli(_cli_main, args=args, on_success=lambda rec: print(rec.summary()))


def _cli_main(args: argparse.Namespace) -> pycolmap.Reconstruction:
    reference: Any = args.reference_model
    if args.gt_cameras is not None:
        from .datasets.strecha import load_gt_cameras
        from .io.images import list_images

        names = sorted({n for p in read_pairs(args.pairs) for n in p} & set(list_images(args.images)))
        reference = model_from_gt_cameras(load_gt_cameras(args.gt_cameras, names, image_dir=args.images), names)
    return main(args.sfm_dir, reference, args.images, args.pairs, args.features, args.matches,
                min_match_score=args.min_match_score, verbose=args.verbose, verification=args.verification,
                max_error=args.max_error, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(cli())
