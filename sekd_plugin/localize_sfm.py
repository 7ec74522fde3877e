"""Localize query images in a COLMAP model from hloc features and matches (hloc's ``localize_sfm``).

    python -m sekd_plugin.localize_sfm --reference-sfm MODEL --queries queries.txt \\
        --features feats.h5 --matches matches.h5 --results poses.txt [--retrieval pairs.txt] \\
        [--images DIR] [--gt-cameras GT_DIR] [--ransac-thresh 12] [--overwrite]

``main(reference_sfm, queries, retrieval, features, matches, results, ...)`` follows
``hloc.localize_sfm.main``. For every query, the matches to its retrieved model images
(``retrieval``: a pairs file ``query db_image``; None: every image of the model) give 2D-3D
correspondences through the model's tracks; pycolmap's ``estimate_and_refine_absolute_pose``
(P3P in LO-RANSAC, ``ransac_thresh`` px, then non-linear refinement) gives ``cam_from_world``.

Query intrinsics, first that applies: the query list line (hloc's ``name MODEL W H params...``),
``query_cameras`` (``name -> pycolmap.Camera``, e.g. from GT cameras; kept fixed), else the
image's EXIF focal length and size (``pycolmap.infer_camera_from_image``, which falls back to
1.2 x the larger side; the focal length is then refined).

Writes ``results`` in hloc's format (``name qw qx qy qz tx ty tz`` per localized query, world to
camera) and ``<results>_logs.json``: per query ``localized`` or not, the reason when not (a query
that fails is reported, never dropped), inliers, correspondences, the retrieved images and the
camera. Returns that log.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycolmap

from .common import run_cli, write_atomic, write_json
from .common.cli import finite_positive_float
from .common.errors import InputError
from .io.colmap_model import ModelError, make_camera, read_model
from .io.matched_features import MatchedFeatures
from .io.pairs_file import read_pairs


class LocalizationError(InputError):
    """Inconsistent inputs (a missing model, query list, features, matches or intrinsics)."""


def parse_queries(queries: str | os.PathLike | Sequence[str]) -> dict[str, pycolmap.Camera | None]:
    """Query names (and cameras when the list has hloc's intrinsics columns) of a list or file."""
    if not isinstance(queries, (str, os.PathLike)):
        return {str(q): None for q in queries}
    path = Path(queries)
    if not path.is_file():
        raise LocalizationError(f"query list not found: {path}")
    out: dict[str, pycolmap.Camera | None] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) == 1:
            out[tokens[0]] = None
            continue
        try:
            model, width, height, params = tokens[1], int(tokens[2]), int(tokens[3]), [float(v) for v in tokens[4:]]
        except (ValueError, IndexError) as error:
            raise LocalizationError(f"{path}:{number}: expected 'name [MODEL W H params...]', got {line!r} "
                                    f"({str(error).splitlines()[0]})") from None
        try:  # a known model, its number of finite parameters, positive focal lengths
            out[tokens[0]] = make_camera(model, width, height, params, f"{path}:{number}")
        except ModelError as error:
            raise LocalizationError(str(error)) from None
    if not out:
        raise LocalizationError(f"{path} lists no query")
    return out


def correspondences(model: pycolmap.Reconstruction, query: str, db_names: Sequence[str],
                    inputs: MatchedFeatures) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """2D-3D correspondences of ``query``: ``(points2D N x 2 in COLMAP pixels, points3D N x 3, counts)``.

    A query keypoint matched to several model images observing the same 3D point counts once.
    Every match index is checked against the query's keypoints and the model image's 2D points.
    """
    keypoints = inputs.keypoints(query) + 0.5  # COLMAP origin
    ids = {image.name: image_id for image_id, image in model.images.items()}
    seen: set[tuple[int, int]] = set()
    p2d, p3d = [], []
    num_matches = 0
    for name in db_names:
        if not inputs.has_pair(query, name):
            continue
        points2D = model.images[ids[name]].points2D
        m, _ = inputs.matches_of(query, name, (len(keypoints), len(points2D)))
        num_matches += len(m)
        for kq, kd in m:
            point = points2D[int(kd)]
            if point.has_point3D() and (int(kq), point.point3D_id) not in seen:
                seen.add((int(kq), point.point3D_id))
                p2d.append(keypoints[kq])
                p3d.append(model.points3D[point.point3D_id].xyz)
    counts = {"num_matches": num_matches, "num_correspondences": len(p2d)}
    return np.reshape(p2d, (-1, 2)), np.reshape(p3d, (-1, 3)), counts


def localize(points2D: np.ndarray, points3D: np.ndarray, camera: pycolmap.Camera, ransac_thresh: float,
             refine_focal_length: bool, seed: int = 0) -> dict[str, Any] | None:
    """``{"cam_from_world", "num_inliers", "inliers"}`` or None; inputs ``N x 2`` / ``N x 3``."""
    if len(points2D) < 4:
        return None
    estimation = pycolmap.AbsolutePoseEstimationOptions()
    estimation.ransac.max_error = float(ransac_thresh)
    estimation.ransac.random_seed = int(seed)
    refinement = pycolmap.AbsolutePoseRefinementOptions()
    refinement.refine_focal_length = bool(refine_focal_length)
    result = pycolmap.estimate_and_refine_absolute_pose(points2D, points3D, camera, estimation, refinement)
    if result is None:
        return None
    return {"cam_from_world": result["cam_from_world"], "num_inliers": int(result["num_inliers"]),
            "inliers": np.asarray(result["inlier_mask"], bool)}


def main(
    reference_sfm: str | os.PathLike | pycolmap.Reconstruction,
    queries: str | os.PathLike | Sequence[str],
    retrieval: str | os.PathLike | None,
    features: str | os.PathLike,
    matches: str | os.PathLike,
    results: str | os.PathLike,
    ransac_thresh: float = 12.0,
    query_cameras: Mapping[str, pycolmap.Camera] | None = None,
    image_dir: str | os.PathLike | None = None,
    seed: int = 0,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Localize every query; see the module docstring. ``image_dir``: where the query images are
    (for EXIF intrinsics). Returns ``{"queries": {name: log}, "num_localized": n, ...}``."""
    features, matches, results = Path(features), Path(matches), Path(results)
    for path, what in ((features, "features file"), (matches, "matches file")):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    if results.exists() and not overwrite:
        raise LocalizationError(f"{results} exists; pass --overwrite")
    if not ransac_thresh > 0:
        raise LocalizationError(f"ransac_thresh must be a positive number of pixels, got {ransac_thresh}")
    inputs = MatchedFeatures(features, matches)  # the matches must be of these features
    try:
        model = read_model(reference_sfm, "reference model")
    except ModelError as error:  # this command's error type, the reader's message
        raise LocalizationError(str(error)) from None
    model_names = sorted(image.name for image in model.images.values())
    query_list = parse_queries(queries)
    have = set(inputs.names())
    retrieved: dict[str, list[str]] = {}
    if retrieval is not None:
        for q, d in read_pairs(retrieval):
            retrieved.setdefault(q, []).append(d)
        unknown = sorted({d for ds in retrieved.values() for d in ds} - set(model_names))
        if unknown:
            raise LocalizationError(f"{retrieval} names {len(unknown)} image(s) not in the model: {unknown[:5]}")
    logs: dict[str, dict[str, Any]] = {}
    lines = []
    for query, camera in query_list.items():
        db_names = retrieved.get(query, []) if retrieval is not None else [n for n in model_names if n != query]
        log: dict[str, Any] = {"localized": False, "reason": None, "db": db_names, "num_inliers": 0}
        logs[query] = log
        fixed = camera is not None or (query_cameras is not None and query in query_cameras)
        if camera is None and query_cameras is not None:
            camera = query_cameras.get(query)
        if camera is None:
            if image_dir is None or not (Path(image_dir) / query).is_file():
                log["reason"] = f"no intrinsics: not in the query list or query_cameras, and no image {query} for EXIF"
                continue
            camera = pycolmap.infer_camera_from_image(Path(image_dir) / query)
        log["camera"] = {"model": camera.model.name, "width": camera.width, "height": camera.height,
                         "params": [float(v) for v in camera.params], "fixed": fixed}
        if query not in have:
            log["reason"] = f"no features in {features}"
            continue
        if not db_names:
            log["reason"] = "no retrieved image in the model"
            continue
        p2d, p3d, counts = correspondences(model, query, db_names, inputs)
        log.update(counts)
        if len(p2d) < 4:
            log["reason"] = (f"{len(p2d)} 2D-3D correspondences (need 4) from {counts['num_matches']} matches to "
                             f"{len(db_names)} model image(s)")
            continue
        est = localize(p2d, p3d, camera, ransac_thresh, refine_focal_length=not fixed, seed=seed)
        if est is None:
            log["reason"] = f"absolute pose RANSAC found no pose from {len(p2d)} correspondences"
            continue
        pose = est["cam_from_world"]
        log.update(localized=True, num_inliers=est["num_inliers"], cam_from_world={
            "quat_wxyz": [float(v) for v in np.asarray(pose.rotation.quat)[[3, 0, 1, 2]]],
            "t": [float(v) for v in pose.translation]})
        q, t = log["cam_from_world"]["quat_wxyz"], log["cam_from_world"]["t"]
        lines.append(" ".join([query, *(repr(v) for v in q + t)]))
    write_atomic(results, "".join(line + "\n" for line in lines))
    out = {"num_queries": len(logs), "num_localized": sum(log["localized"] for log in logs.values()),
           "ransac_thresh": ransac_thresh, "queries": logs}
    write_json(Path(f"{results}_logs.json"), out)
    return out


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.localize_sfm",
                                     description="Localize query images in a COLMAP model (pycolmap absolute pose).")
    parser.add_argument("--reference-sfm", type=Path, required=True, help="COLMAP model folder")
    parser.add_argument("--queries", type=Path, required=True,
                        help="query list: 'name' or hloc's 'name MODEL W H params...' per line")
    parser.add_argument("--retrieval", type=Path, help="pairs 'query db_image' (default: every model image)")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--matches", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True, help="poses file to write (hloc's format)")
    parser.add_argument("--images", type=Path, help="query image folder (intrinsics from EXIF / size)")
    parser.add_argument("--gt-cameras", type=Path,
                        help="folder of Strecha .camera files: fixed query intrinsics (needs --images: K fitted to their size)")
    parser.add_argument("--ransac-thresh", type=finite_positive_float, default=12.0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    return run_cli(_cli_main, args=args, on_success=_done)


def _cli_main(args: argparse.Namespace) -> dict[str, Any]:
    cameras = None
    if args.gt_cameras is not None:
        from .datasets.strecha import gt_camera_path, load_gt_cameras

        if args.images is None:  # K is fitted to the query images' size (the one rule of GT cameras)
            raise LocalizationError("--gt-cameras needs --images (the query images, to fit K to their size)")
        gt = load_gt_cameras(args.gt_cameras, list(parse_queries(args.queries)), image_dir=args.images)
        cameras = {n: make_camera("PINHOLE", c.width, c.height, [c.K[0, 0], c.K[1, 1], c.K[0, 2], c.K[1, 2]],
                                  str(gt_camera_path(args.gt_cameras, n))) for n, c in gt.items()}
    return main(args.reference_sfm, args.queries, args.retrieval, args.features, args.matches, args.results,
                args.ransac_thresh, cameras, args.images, overwrite=args.overwrite)


def _done(out: dict[str, Any]) -> int:
    for name, log in out["queries"].items():
        print(f"{name}: " + (f"{log['num_inliers']} inliers" if log["localized"] else f"not localized: {log['reason']}"))
    print(f"{out['num_localized']}/{out['num_queries']} queries localized")
    return 0 if out["num_localized"] == out["num_queries"] else 1


if __name__ == "__main__":
    sys.exit(cli())
