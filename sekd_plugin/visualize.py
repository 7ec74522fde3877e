"""Pictures of matches and of models, one PNG each (OpenCV drawing).

    # one PNG per pair: both images side by side, keypoints, matches green (inlier) / red (outlier)
    python -m sekd_plugin.visualize --images DIR --pairs pairs.txt --features feats.h5 --matches matches.h5 \\
        --output DIR [--verify opencv|magsac|pycolmap|poselib] [--threshold 4] [--model MODEL] [--max-pairs N] \\
        [--max-matches 500]
    # one PNG per image of a model (hloc's 2D views): keypoints coloured by track length or visibility
    python -m sekd_plugin.visualize --images DIR --model MODEL --output DIR [--color-by track_length|visibility]

Inliers of a pair: with ``--model``, the matches whose two keypoints observe the same 3D point
of the model (the model must index the same features, as ours do); else the fundamental matrix
of ``--verify`` (:mod:`sekd_plugin.geometry.estimators`, ``--threshold`` px). Model views
(``color_by``): ``visibility`` = triangulated keypoints blue, the others red; ``track_length``
= triangulated keypoints coloured by track length (OpenCV's JET map, 2 views blue to the
longest track red), the others grey. Images are scaled to at most ``resize_max`` px per side.
Every write is checked: a file that cannot be written is a one-line error naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .common import run_cli
from .common.cli import finite_positive_float, non_negative_int, number, positive_int
from .common.errors import InputError
from .io.colmap_model import read_model
from .io.matched_features import MatchedFeatures
from .io.images import read_image
from .io.pairs_file import read_pairs

GREEN, RED, BLUE, GREY, KEYPOINT = (0, 200, 0), (0, 0, 255), (255, 128, 0), (160, 160, 160), (0, 220, 255)  # BGR
COLOR_BY = ("track_length", "visibility")


def write_png(path: Path, image: np.ndarray) -> Path:
    """``cv2.imwrite`` with its result checked (False or an exception is an :class:`InputError`)."""
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error as error:
        raise InputError(f"cannot write image {path}: {str(error).strip().splitlines()[-1]}") from None
    if not ok:
        raise InputError(f"cannot write image {path} (folder missing or not writable, or unknown extension)")
    return path


def _output_dir(output: Path) -> Path:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder {output}: {error.strerror or error}") from None
    return output


def _load(image_dir: Path, name: str, resize_max: int) -> tuple[np.ndarray, float]:
    """BGR image scaled to at most ``resize_max`` px a side, and the scale applied."""
    image = np.ascontiguousarray(read_image(image_dir / name)[:, :, ::-1])
    scale = min(1.0, resize_max / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return image, scale


def _pt(xy: np.ndarray, scale: float, dx: int = 0) -> tuple[int, int]:
    return int(round((xy[0] + 0.5) * scale - 0.5)) + dx, int(round((xy[1] + 0.5) * scale - 0.5))


def draw_pair(image0: np.ndarray, image1: np.ndarray, kp0: np.ndarray, kp1: np.ndarray, matches: np.ndarray,
              inliers: np.ndarray, scale0: float = 1.0, scale1: float = 1.0) -> np.ndarray:
    """Side-by-side canvas (BGR uint8): keypoints (``N x 2`` each, original pixels) as small yellow
    dots, matches (``M x 2``) as lines, green where ``inliers`` (M,) else red."""
    h = max(image0.shape[0], image1.shape[0])
    canvas = np.zeros((h, image0.shape[1] + image1.shape[1], 3), np.uint8)
    canvas[: image0.shape[0], : image0.shape[1]] = image0
    canvas[: image1.shape[0], image0.shape[1]:] = image1
    dx = image0.shape[1]
    for kp, s, off in ((kp0, scale0, 0), (kp1, scale1, dx)):
        for xy in kp:
            cv2.circle(canvas, _pt(xy, s, off), 1, KEYPOINT, -1, cv2.LINE_AA)
    order = np.argsort(inliers, kind="stable")  # outliers first, inliers drawn on top
    for k in order:
        i, j = matches[k]
        color = GREEN if inliers[k] else RED
        p0, p1 = _pt(kp0[i], scale0), _pt(kp1[j], scale1, dx)
        cv2.line(canvas, p0, p1, color, 1, cv2.LINE_AA)
        cv2.circle(canvas, p0, 2, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, p1, 2, color, -1, cv2.LINE_AA)
    return canvas


def _model_inliers(model, name0: str, name1: str, matches: np.ndarray) -> np.ndarray:
    ids = {image.name: image for image in model.images.values()}
    if name0 not in ids or name1 not in ids:
        return np.zeros(len(matches), bool)
    p0, p1 = ids[name0].points2D, ids[name1].points2D
    out = np.zeros(len(matches), bool)
    for k, (i, j) in enumerate(matches):
        if i < len(p0) and j < len(p1) and p0[int(i)].has_point3D():
            out[k] = p0[int(i)].point3D_id == p1[int(j)].point3D_id
    return out


def _safe(name: str) -> str:
    return name.replace("/", "-").replace(os.sep, "-")


def draw_pairs(image_dir: str | os.PathLike, pairs: str | os.PathLike, features: str | os.PathLike,
               matches: str | os.PathLike, output: str | os.PathLike, verify: str = "opencv", threshold: float = 4.0,
               model: str | os.PathLike | None = None, max_pairs: int | None = None,
               resize_max: int = 1024, max_matches: int = 500) -> list[dict[str, Any]]:
    """One PNG per pair (``output/<name0>__<name1>.png``); returns per pair the file, matches, inliers.
    ``max_matches``: draw a random (seed 0) subset of at most this many matches (0: all); the
    counts returned are over all matches."""
    from .geometry.estimators import check_estimator, estimate_fundamental

    image_dir, output = Path(image_dir), Path(output)
    if not (threshold > 0 and np.isfinite(threshold)):
        raise InputError(f"threshold must be a finite number of pixels above 0, got {threshold}")
    if max_pairs is not None and max_pairs < 1:
        raise InputError(f"max_pairs must be at least 1, got {max_pairs}")
    inputs = MatchedFeatures(features, matches)  # the matches must be of these features
    rec = _load_model(model) if model is not None else None
    if rec is None:
        check_estimator(verify)
    _output_dir(output)
    out = []
    for name0, name1 in read_pairs(pairs)[:max_pairs]:
        kp0, kp1 = inputs.keypoints(name0), inputs.keypoints(name1)
        m, _ = inputs.matches_of(name0, name1)
        if rec is not None:
            inliers = _model_inliers(rec, name0, name1, m)
        else:
            inliers = estimate_fundamental(kp0[m[:, 0]], kp1[m[:, 1]], verify, threshold)[1] if len(m) else np.zeros(0, bool)
        (im0, s0), (im1, s1) = _load(image_dir, name0, resize_max), _load(image_dir, name1, resize_max)
        shown = np.arange(len(m))
        if 0 < max_matches < len(m):
            shown = np.sort(np.random.default_rng(0).choice(len(m), max_matches, replace=False))
        path = write_png(output / f"{_safe(name0)}__{_safe(name1)}.png",
                         draw_pair(im0, im1, kp0, kp1, m[shown], inliers[shown], s0, s1))
        out.append({"pair": [name0, name1], "png": str(path), "matches": int(len(m)), "inliers": int(inliers.sum())})
    return out


def _load_model(path: str | os.PathLike):
    return read_model(path, "COLMAP model")


def draw_model(image_dir: str | os.PathLike, model: str | os.PathLike, output: str | os.PathLike,
               color_by: str = "visibility", resize_max: int = 1024, max_images: int | None = None) -> list[dict[str, Any]]:
    """One PNG per registered image of ``model`` (``output/<name>.png``, hloc's 2D view)."""
    if color_by not in COLOR_BY:
        raise InputError(f"unknown --color-by '{color_by}'; valid: {list(COLOR_BY)}")
    image_dir, output = Path(image_dir), Path(output)
    rec = _load_model(model)
    _output_dir(output)
    lengths = [p.track.length() for p in rec.points3D.values()]
    longest = max(lengths) if lengths else 2
    out = []
    for image_id in sorted(rec.reg_image_ids())[:max_images]:
        image = rec.images[image_id]
        canvas, scale = _load(image_dir, image.name, resize_max)
        xy = np.array([p.xy for p in image.points2D]).reshape(-1, 2) - 0.5  # COLMAP -> pixel-centre origin
        tri = np.array([p.has_point3D() for p in image.points2D], bool)
        track = np.array([rec.points3D[p.point3D_id].track.length() if p.has_point3D() else 0 for p in image.points2D])
        if color_by == "track_length":
            level = np.clip((track - 2) / max(longest - 2, 1), 0, 1)
            jet = cv2.applyColorMap((255 * level).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
            colors = [tuple(int(c) for c in jet[k]) if tri[k] else GREY for k in range(len(xy))]
        else:
            colors = [BLUE if t else RED for t in tri]
        for k in np.argsort(tri, kind="stable"):  # triangulated on top
            cv2.circle(canvas, _pt(xy[k], scale), 2, colors[k], -1, cv2.LINE_AA)
        path = write_png(output / f"{_safe(image.name)}.png", canvas)
        out.append({"image": image.name, "png": str(path), "keypoints": int(len(xy)), "triangulated": int(tri.sum())})
    return out


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.visualize",
                                     description="PNG pictures of matches (per pair) or of a model (per image).")
    parser.add_argument("--images", type=Path, required=True, help="image folder")
    parser.add_argument("--output", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--pairs", type=Path, help="pairs file: draw these pairs (needs --features, --matches)")
    parser.add_argument("--features", type=Path)
    parser.add_argument("--matches", type=Path)
    parser.add_argument("--model", type=Path, help="COLMAP model: inliers of the pairs, or its 2D views alone")
    parser.add_argument("--verify", default="opencv", help="fundamental-matrix estimator: opencv|magsac|pycolmap|poselib")
    parser.add_argument("--threshold", type=finite_positive_float, default=4.0, help="epipolar inlier threshold (px)")
    parser.add_argument("--color-by", default="visibility", help="model views: visibility | track_length")
    parser.add_argument("--max-pairs", type=positive_int, help="draw at most this many pairs / model images")
    parser.add_argument("--resize-max", type=number(int, low=16), default=1024, help="scale images to at most this many px a side")
    parser.add_argument("--max-matches", type=non_negative_int, default=500,
                        help="pairs: draw a random subset of at most N matches (0: all)")
    args = parser.parse_args(argv)
    return run_cli(_cli_main, args=args, on_success=lambda n: print(f"{n} PNG file(s) -> {args.output}"))


def _cli_main(args: argparse.Namespace) -> int:
    if args.resize_max < 16:
        raise InputError(f"--resize-max must be at least 16 px, got {args.resize_max}")
    if args.pairs is not None:
        if args.features is None or args.matches is None:
            raise InputError("--pairs needs --features and --matches")
        for path, what in ((args.pairs, "pairs file"), (args.features, "features file"), (args.matches, "matches file")):
            if not path.exists():
                raise InputError(f"{what} not found: {path}")
        return len(draw_pairs(args.images, args.pairs, args.features, args.matches, args.output, args.verify,
                              args.threshold, args.model, args.max_pairs, args.resize_max, args.max_matches))
    if args.model is None:
        raise InputError("give --pairs (with --features, --matches) or --model")
    return len(draw_model(args.images, args.model, args.output, args.color_by, args.resize_max, args.max_pairs))


if __name__ == "__main__":
    sys.exit(cli())
