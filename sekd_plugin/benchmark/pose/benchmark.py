"""Relative-pose benchmark on scenes with ground-truth cameras (Strecha configs).

    python -m sekd_plugin.benchmark pose --config benchmark_configs/reconstruction/fountain-P11.yaml \\
        [--config ...] [--methods colmap-sift,sift,sekd,sekd-sfm,superpoint] [--pairs pairs.txt] \\
        [--threshold 1.0] --output DIR [key=value ...]

Every image pair of each scene (or those of ``--pairs``, one ``name0 name1`` per line) is
matched with each method's matcher (:mod:`sekd_plugin.benchmark.methods`; features and
matches are cached under ``DIR/<scene>/<method>``); the essential matrix is estimated with the
ground-truth K of both images by pycolmap's ``estimate_essential_matrix`` (COLMAP's 5-point
solver in LO-RANSAC, inlier threshold ``--threshold`` pixels, fixed seed; the same for every
method) and decomposed (cheirality check) into ``cam1_from_cam0``; errors and AUC@5/10/20 deg
are those of :mod:`.metrics`. The ``key=value`` overrides are scene-runner config keys
(``resize_max=1024``, ``extractor_options.sekd.max_keypoints=2000``, ...).

Writes ``DIR/results.json`` (:mod:`..core`'s envelope: ``methods[label]`` with its
``scenes`` and ``all_scenes`` summaries, one row per pair x method in ``rows``; exit status 1
when a method failed), ``DIR/results.md``, ``DIR/pairs.csv`` and ``DIR/auc.png`` (recall vs pose-error threshold, one curve per method,
one panel per scene and one overall).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pycolmap
from tqdm import tqdm

from ...common import ConfigError, InputError, write_atomic
from ...common.cli import restore_sigterm
from ...common.files import save_figure
from ...common.locks import folder_lock
from ...datasets.strecha import StrechaCamera, load_gt_cameras, relative_pose
from .. import core, scenes
from ..methods import DEFAULT_METHODS
from ..known_poses.common import gt_camera
from ..sfm.config import resolve_scene
from ..sfm.pipelines import pipeline_of
from ...metrics.pose import THRESHOLDS_DEG, pose_auc, pose_error_deg, recall_curve

logger = logging.getLogger(__name__)

PROTOCOL = "relative pose"
DEFAULT_THRESHOLD_PX = 1.0


def estimate_pose(kp0: np.ndarray, kp1: np.ndarray, cam0: StrechaCamera, cam1: StrechaCamera,
                  threshold_px: float, seed: int = 0, estimator: str = "pycolmap") -> dict[str, Any] | None:
    """``cam1_from_cam0`` from matched keypoints (hloc's pixel-centre origin, N x 2 each) and the
    GT intrinsics: ``{"R", "t" (unit), "num_inliers"}``, or None (too few matches / no model).
    ``estimator``: a name of :mod:`sekd_plugin.geometry.estimators` (default pycolmap)."""
    if estimator != "pycolmap":
        from ...geometry.estimators import estimate_relative_pose

        return estimate_relative_pose(kp0, kp1, cam0.K, cam1.K, (cam0.width, cam0.height), (cam1.width, cam1.height),
                                      estimator, threshold_px, seed)
    if len(kp0) < 5:
        return None
    options = pycolmap.RANSACOptions(max_error=float(threshold_px))
    options.random_seed = int(seed)
    # COLMAP's pixel convention puts the corner of the first pixel at (0, 0): +0.5
    result = pycolmap.estimate_essential_matrix(np.asarray(kp0, float) + 0.5, np.asarray(kp1, float) + 0.5,
                                                gt_camera(cam0), gt_camera(cam1), options)
    if result is None:
        return None
    pose = result["cam2_from_cam1"]
    return {"R": np.asarray(pose.rotation.matrix()), "t": np.asarray(pose.translation),
            "num_inliers": int(result["num_inliers"])}


def read_pair_list(path: str | Path, names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of a ``name0 name1`` file restricted to ``names`` (an unknown name is an error)."""
    from ...io.pairs_file import read_pairs, unique_pairs

    path = Path(path)
    if not path.is_file():
        raise InputError(f"pair list not found: {path}")
    pairs = unique_pairs(read_pairs(path))
    unknown = sorted({n for p in pairs for n in p} - set(names))
    if unknown:
        raise InputError(f"{path} names {len(unknown)} image(s) not in the scene: {unknown[:5]}")
    if not pairs:
        raise InputError(f"{path} lists no pair")
    return pairs


def evaluate_method(cfg: dict[str, Any], method: str, scene, gt: dict[str, StrechaCamera],
                    pairs: list[tuple[str, str]], threshold_px: float,
                    estimator: str = "pycolmap") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pose errors of every pair for one method on one scene: its summary and per-pair rows."""
    scene.output.mkdir(parents=True, exist_ok=True)
    keypoints, matches, timings, matcher, failed = pipeline_of(cfg).pair_matches(cfg, scene, pairs)
    removed = [[a, b] for a, b in pairs if a in failed or b in failed]
    if failed:
        logger.warning("%s / %s: %d image(s) failed (%s); their %d pair(s) count as misses", scene.name, method,
                       len(failed), "; ".join(f"{n}: {e}" for n, e in failed.items()), len(removed))
    rows = []
    start = time.perf_counter()
    for name0, name1 in tqdm(pairs, desc=f"pose {scene.name}/{method}", leave=False):
        m = matches.get((name0, name1))
        if m is None and (name1, name0) in matches:  # stored the other way round (COLMAP's image ids)
            m = matches[(name1, name0)][:, ::-1]
        R_gt, t_gt = relative_pose(gt[name0], gt[name1])
        row = {"image0": name0, "image1": name1,
               "num_matches": 0 if m is None else int(len(m)), "num_inliers": 0,
               "rotation_error_deg": float("inf"), "translation_error_deg": float("inf"),
               "pose_error_deg": float("inf"), "baseline_m": float(np.linalg.norm(t_gt))}
        if m is not None and len(m):
            kp0 = keypoints[name0][m[:, 0].astype(int)]
            kp1 = keypoints[name1][m[:, 1].astype(int)]
            est = estimate_pose(kp0, kp1, gt[name0], gt[name1], threshold_px, seed=cfg["seed"] or 0,
                                estimator=estimator)
            if est is not None:
                err_R, err_t, err = pose_error_deg(est["R"], est["t"], R_gt, t_gt)
                row.update(num_inliers=est["num_inliers"], rotation_error_deg=float(err_R),
                           translation_error_deg=float(err_t), pose_error_deg=float(err))
        rows.append(row)
    timings["pose_s"] = time.perf_counter() - start
    timings["pairs_per_s"] = len(pairs) / timings["match_s"] if timings["match_s"] > 0 else None
    return {"matcher": matcher, "timings": timings, "failed_images": dict(failed), "removed_pairs": removed,
            "mean_keypoints_per_image": float(np.mean([len(k) for k in keypoints.values()])) if keypoints else 0.0,
            "summary": summarize(rows)}, rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """AUC@5/10/20, medians and inlier counts of per-pair rows."""
    err = np.array([r["pose_error_deg"] for r in rows], float)
    err_R = np.array([r["rotation_error_deg"] for r in rows], float)
    err_t = np.array([r["translation_error_deg"] for r in rows], float)
    aucs = pose_auc(err, THRESHOLDS_DEG)
    return {
        "num_pairs": len(rows),
        "num_estimated": int(np.isfinite(err).sum()),
        **{f"auc@{t}": a for t, a in zip(THRESHOLDS_DEG, aucs)},
        "median_pose_error_deg": float(np.median(err)) if len(err) else None,
        "median_rotation_error_deg": float(np.median(err_R)) if len(err) else None,
        "median_translation_error_deg": float(np.median(err_t)) if len(err) else None,
        "median_inliers": float(np.median([r["num_inliers"] for r in rows])) if rows else None,
        "mean_matches": float(np.mean([r["num_matches"] for r in rows])) if rows else None,
    }


COLUMNS = ("scene", "method", "matcher", "pairs (estimated)", "AUC@5", "AUC@10", "AUC@20", "med pose err (deg)",
           "med rot err (deg)", "med transl err (deg)", "med inliers", "mean matches", "kpts/img",
           "extract/match/pose (s)", "match (pairs/s)")


def _row(scene: str, method: str, r: dict[str, Any]) -> list[str]:
    s, t = r["summary"], r.get("timings")
    time_cell = "-" if t is None else f"{t['extract_s']:.1f}/{t['match_s']:.1f}/{t['pose_s']:.1f}"
    return [
        scene, method, str(r["matcher"]), f"{s['num_pairs']} ({s['num_estimated']})",
        *(core.fmt(100 * s[f"auc@{k}"], ".1f") for k in THRESHOLDS_DEG),
        core.fmt(s["median_pose_error_deg"], ".3f"), core.fmt(s["median_rotation_error_deg"], ".3f"),
        core.fmt(s["median_translation_error_deg"], ".3f"), core.fmt(s["median_inliers"], ".0f"),
        core.fmt(s["mean_matches"], ".0f"), core.fmt(r.get("mean_keypoints_per_image"), ".0f"), time_cell,
        core.fmt(None if t is None else t.get("pairs_per_s"), ".1f")]


def markdown_report(results: dict[str, Any]) -> str:
    st = results["settings"]
    rows = [_row(scene, method, r) for scene, method, r in scenes.by_scene(results)]
    rows += [_row("**all scenes**", method, {"matcher": next(iter(e["scenes"].values()))["matcher"],
                                            "summary": e["all_scenes"]})
             for method, e in results["methods"].items() if e.get("all_scenes")]
    out = [
        "# Relative-pose benchmark",
        "",
        f"Essential matrix with the GT intrinsics: {st['estimator_description']} "
        f"(estimator `{st['estimator']}`, threshold {st['threshold_px']} px, seed {st['seed']}), decomposed into R, t. "
        "Pose error = max(rotation error, translation-direction error) in degrees; AUC (%) of the recall curve up to "
        "5/10/20 deg as LightGlue / glue-factory report on MegaDepth-1500; a pair without an estimate counts as "
        f"a miss. Overrides: `{' '.join(st['overrides']) or 'none'}`.",
        "",
        core.markdown_table(COLUMNS, rows),
        *core.outcome_lines(results),
        *scenes.failed_images_lines(results, "without features (counted as misses)"),
    ]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    plt = core.pyplot()
    names = scenes.scene_order(results)
    if not names:
        return None

    def curves(scene: str | None) -> dict[str, tuple[list[float], float]]:
        """method -> (pose errors, AUC@10) of one scene (None: all scenes)."""
        out = {}
        for method, entry in results["methods"].items():
            summary = entry["all_scenes"] if scene is None else entry["scenes"].get(scene, {}).get("summary")
            if summary:
                errors = [r["pose_error_deg"] for r in results["rows"]
                          if r["method"] == method and (scene is None or r["scene"] == scene)]
                out[method] = (errors, summary["auc@10"])
        return out

    panels = [(scene, curves(scene)) for scene in names] + [("all scenes", curves(None))]
    grid = np.linspace(0, max(THRESHOLDS_DEG), 201)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, methods) in zip(axes[0], panels):
        for method, (errors, auc) in methods.items():
            ax.plot(grid, recall_curve(errors, grid), label=f"{method} (AUC@10 {100 * auc:.1f})")
        for t in THRESHOLDS_DEG:
            ax.axvline(t, color="0.8", lw=0.8, zorder=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("pose error threshold (deg)")
        ax.set_ylabel("fraction of pairs")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path


def pairs_csv(results: dict[str, Any]) -> str:
    fields = ("scene", "method", "image0", "image1", "num_matches", "num_inliers", "rotation_error_deg",
              "translation_error_deg", "pose_error_deg", "baseline_m")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results["rows"])
    return buffer.getvalue()


def save(results: dict[str, Any], output: Path) -> None:
    """results.json, results.md, pairs.csv and auc.png."""
    core.save(output, results, markdown_report(results))
    write_atomic(output / "pairs.csv", pairs_csv(results))
    plot(results, output / "auc.png")


def run(
    configs: Sequence[str | Path],
    methods: Sequence[str] = DEFAULT_METHODS,
    output: str | Path = "outputs/pose",
    overrides: Sequence[str] = (),
    pairs: str | Path | None = None,
    threshold_px: float = DEFAULT_THRESHOLD_PX,
    work: str | Path | None = None,
    estimator: str = "pycolmap",
) -> dict[str, Any]:
    """Run every config x method; returns the results (also written under ``output``).
    ``work``: the per-method folders (cached features and matches), default ``output``."""
    from ...geometry.estimators import check_estimator, describe as describe_estimator

    check_estimator(estimator)
    if not threshold_px > 0:
        raise ConfigError(f"--threshold must be a positive number of pixels, got {threshold_px}")
    restore_sigterm()  # pycolmap's import replaced the CLI's SIGTERM handler
    output = Path(output)
    plans = scenes.plan(configs, methods, Path(work) if work else output, overrides)
    inputs: dict[str, tuple[dict[str, StrechaCamera], list[tuple[str, str]]]] = {}
    for scene_name, method, cfg in plans:  # validate the scenes before any work
        if scene_name in inputs:
            continue
        scene = resolve_scene(cfg, method)
        if scene.gt_dir is None:
            raise ConfigError(f"scene {scene_name} has no gt_cameras: the pose benchmark needs GT cameras")
        gt = load_gt_cameras(scene.gt_dir, scene.names, image_dir=scene.image_dir)
        if pairs is not None:
            pair_list = read_pair_list(pairs, scene.names)
        else:
            pair_list = [(a, b) for i, a in enumerate(scene.names) for b in scene.names[i + 1:]]
        inputs[scene_name] = (gt, pair_list)
    description = describe_estimator(estimator) + (" (estimate_essential_matrix)" if estimator == "pycolmap" else "")
    results = core.new_results(PROTOCOL, scenes.settings(
        configs, methods, overrides, threshold_px=threshold_px, seed=plans[0][2]["seed"] if plans else 0,
        estimator=estimator, estimator_description=description, pairs=str(pairs) if pairs else "all"))

    def evaluate(scene_name: str, method: str, cfg: dict[str, Any]):
        gt, pair_list = inputs[scene_name]
        scene = resolve_scene(cfg, method)
        logger.info("pose benchmark: %s / %s (%d pairs)", scene_name, method, len(pair_list))
        with folder_lock(scene.output, f"{scene_name}/{method}"):  # one run at a time per work folder
            return evaluate_method(cfg, method, scene, gt, pair_list, threshold_px, estimator)

    def all_scenes(entry: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        entry["all_scenes"] = summarize(rows)

    scenes.run(results, plans, evaluate, lambda r: save(r, output), finish=all_scenes)  # saves at the end too
    return results


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/pose",
         overrides: Sequence[str] = (), pairs: str | None = None,
         threshold_px: float = DEFAULT_THRESHOLD_PX, work: str | None = None,
         estimator: str = "pycolmap") -> dict[str, Any]:
    """The CLI's body: run and print the table (exit status: :func:`..core.exit_code`)."""
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, pairs, threshold_px, work, estimator)
    print((Path(output) / "results.md").read_text())
    return results
