"""Leave-one-out localization benchmark on scenes with GT cameras.

    python -m sekd_plugin.benchmark localization --config benchmark_configs/reconstruction/fountain-P11.yaml \\
        [--methods colmap-sift,sift,sekd-sfm] [--ransac-thresh 12] [--query-intrinsics gt|exif] \\
        --output DIR [--work DIR] [key=value ...]

For every image i of a scene and each method: the reference model is the GT-pose triangulation
(:mod:`sekd_plugin.triangulation`, known-pose verification) of all the other images; image i is
localized in it from its matches to every model image (:mod:`sekd_plugin.localize_sfm`; query
intrinsics from its GT camera, fixed, or with ``--query-intrinsics exif`` from its EXIF / size,
focal length refined). Reported per method: the share of queries within (1 cm, 0.1 deg),
(5 cm, 0.5 deg) and (25 cm, 2 deg), median position and rotation errors (:mod:`.metrics`); a
query that fails is a miss with its reason (a row of ``results.json``), never dropped.
``results.json`` is :mod:`..core`'s envelope: ``methods[label]["scenes"][scene]`` the summary,
one row per query x method in ``rows``; exit status 1 when a method failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pycolmap

from ... import localize_sfm as L
from ... import triangulation as T
from ...common import ConfigError
from ...io.pairs_file import write_pairs
from .. import core, scenes
from .common import Timer, gt_camera, method_files, plan_scenes
from ...metrics.localization import THRESHOLDS, pose_errors, summarize

PROTOCOL = "leave-one-out localization in the GT-pose triangulation of the others"
DEFAULT_METHODS = ("colmap-sift", "sift", "sekd-best", "sekd-sfm")
QUERY_INTRINSICS = ("gt", "exif")
COLUMNS = ("scene", "method", "matcher", "localized", *(f"{100 * m:g} cm, {d:g} deg (%)" for m, d in THRESHOLDS),
           "med pos err (cm)", "med rot err (deg)", "med inliers", "model s/query", "localize s/query")


def evaluate(cfg: dict[str, Any], method: str, gt, ransac_thresh: float,
             query_intrinsics: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Leave-one-out over the scene's images for one method: the summary and per-query rows."""
    files = method_files(cfg, method)
    scene, names = files["scene"], files["names"]
    rows, model_s, loc_s = [], [], []
    for query in scene.names:
        row: dict[str, Any] = {"query": query, "localized": False, "reason": None, "num_inliers": 0,
                               "position_error_m": float("inf"), "rotation_error_deg": float("inf")}
        rows.append(row)
        if query not in names:
            row["reason"] = "feature extraction failed"
            continue
        others = [n for n in names if n != query]
        work = scene.output / "loo" / Path(query).stem
        with Timer() as t:
            try:
                model = T.main(work / "model", T.model_from_gt_cameras(gt, others), scene.image_dir, files["pairs"],
                               files["features"], files["matches"], overwrite=True)
            except T.TriangulationError as error:
                row["reason"] = f"no reference model: {error}"
                continue
        model_s.append(t.s)
        retrieval = write_pairs(work / "retrieval.txt", [(query, n) for n in others])
        cameras = {query: gt_camera(gt[query])} if query_intrinsics == "gt" else None
        with Timer() as t:
            out = L.main(model, [query], retrieval, files["features"], files["matches"], work / "poses.txt",
                         ransac_thresh=ransac_thresh, query_cameras=cameras, image_dir=scene.image_dir,
                         seed=cfg["seed"] or 0)
        loc_s.append(t.s)
        log = out["queries"][query]
        row.update(reason=log["reason"], num_inliers=log["num_inliers"],
                   num_correspondences=log.get("num_correspondences", 0))
        if log["localized"]:
            q = np.asarray(log["cam_from_world"]["quat_wxyz"])[[1, 2, 3, 0]]
            R = pycolmap.Rotation3d(q).matrix()
            err_m, err_deg = pose_errors(R, log["cam_from_world"]["t"], gt[query].R_cw, gt[query].t_cw)
            row.update(localized=True, position_error_m=err_m, rotation_error_deg=err_deg)
    summary = summarize([r["position_error_m"] for r in rows], [r["rotation_error_deg"] for r in rows])
    summary["median_inliers"] = float(np.median([r["num_inliers"] for r in rows]))
    return {"matcher": files["matcher"], "keypoints_per_image": files["keypoints_per_image"], "summary": summary,
            "timings": {"model_s_per_query": float(np.mean(model_s)) if model_s else None,
                        "localize_s_per_query": float(np.mean(loc_s)) if loc_s else None, **files["timings"]}}, rows


def _row(scene: str, method: str, r: dict[str, Any]) -> list[str]:
    s, t = r["summary"], r["timings"]
    recalls = [core.fmt(s[f"recall@{m * 100:g}cm,{d:g}deg"], ".1f", 100) for m, d in THRESHOLDS]
    return [scene, method, r["matcher"], f"{s['num_localized']}/{s['num_queries']}", *recalls,
            core.fmt(s["median_position_error_m"], ".2f", 100), core.fmt(s["median_rotation_error_deg"], ".3f"),
            core.fmt(s["median_inliers"], ".0f"), core.fmt(t["model_s_per_query"], ".2f"),
            core.fmt(t["localize_s_per_query"], ".3f")]


def markdown_report(results: dict[str, Any]) -> str:
    st = results["settings"]
    rows = [_row(s, m, r) for s, m, r in scenes.by_scene(results)]
    out = ["# Leave-one-out localization (GT-pose triangulation as the model)", "",
           f"Query intrinsics: {st['query_intrinsics']}; pycolmap absolute pose (LO-RANSAC "
           f"{st['ransac_thresh']} px + refinement). Overrides: `{' '.join(st['overrides']) or 'none'}`.",
           "", core.markdown_table(COLUMNS, rows), ""]
    out += [f"- {q['scene']}/{q['method']}: {q['query']} not localized: {q['reason']}"
            for q in results["rows"] if not q["localized"]]
    out += core.outcome_lines(results)
    return "\n".join(out) + "\n"


def run(configs: Sequence[str | Path], methods: Sequence[str] = DEFAULT_METHODS, output: str | Path = "outputs/localization",
        overrides: Sequence[str] = (), work: str | Path | None = None, ransac_thresh: float = 12.0,
        query_intrinsics: str = "gt") -> dict[str, Any]:
    """Every config x method; returns the results (also written under ``output``)."""
    if query_intrinsics not in QUERY_INTRINSICS:
        raise ConfigError(f"--query-intrinsics must be one of {list(QUERY_INTRINSICS)}, got {query_intrinsics!r}")
    if not ransac_thresh > 0:
        raise ConfigError(f"--ransac-thresh must be a positive number of pixels, got {ransac_thresh}")
    output = Path(output)
    plans, gt = plan_scenes(configs, methods, Path(work) if work else output, overrides)
    results = core.new_results(PROTOCOL, scenes.settings(
        configs, methods, overrides, ransac_thresh=ransac_thresh, query_intrinsics=query_intrinsics,
        thresholds_m_deg=[list(t) for t in THRESHOLDS]))
    scenes.run(results, plans,
               lambda scene, method, cfg: evaluate(cfg, method, gt[scene], ransac_thresh, query_intrinsics),
               lambda r: core.save(output, r, markdown_report(r)))  # saves at the end too
    return results


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/localization",
         overrides: Sequence[str] = (), work: str | None = None, ransac_thresh: float = 12.0,
         query_intrinsics: str = "gt") -> dict[str, Any]:
    """The CLI's body: run and print the table (exit status: :func:`..core.exit_code`)."""
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, work, ransac_thresh, query_intrinsics)
    print((Path(output) / "results.md").read_text())
    return results
