"""Triangulation benchmark (Schoenberger et al., "Comparative Evaluation of Hand-Crafted and
Learned Local Features", CVPR 2017): the ground-truth cameras and poses are fixed and each
method's matches of every image pair are triangulated (:mod:`sekd_plugin.triangulation`).

    python -m sekd_plugin.benchmark triangulation --config benchmark_configs/reconstruction/fountain-P11.yaml \\
        [--methods colmap-sift,sift,sekd-sfm] [--verification poses|colmap|none] [--max-error 4] \\
        --output DIR [--work DIR] [key=value ...]

Per scene and method: 3D points, mean track length, observations, COLMAP's mean reprojection
error, matches and verified matches, and the time of verification + triangulation. Writes
``DIR/results.json`` (:mod:`..core`'s envelope: ``methods[label]["scenes"][scene]`` the
triangulation's stats, one row per scene x method in ``rows``; exit status 1 when a method
failed) and ``DIR/results.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ... import triangulation as T
from ...common import ConfigError
from .. import core, scenes
from .common import method_files, plan_scenes

PROTOCOL = "triangulation (Schoenberger et al. CVPR 2017, GT cameras fixed)"
ROW_KEYS = ("num_images", "num_points3D", "mean_track_length", "num_observations", "mean_reprojection_error_px",
            "num_matches", "num_verified_matches")
DEFAULT_METHODS = ("colmap-sift", "sift", "sekd-best", "sekd-sfm")
COLUMNS = ("scene", "method", "matcher", "images", "kpts/img", "#3D pts", "track len", "#obs", "reproj (px)",
           "matches / verified", "verif + triang (s)", "extract/match (s)")


def evaluate(cfg: dict[str, Any], method: str, gt, verification: str, max_error: float) -> dict[str, Any]:
    """Triangulate one method's matches of one scene in the GT cameras; the stats of the model."""
    files = method_files(cfg, method)
    scene = files["scene"]
    reference = T.model_from_gt_cameras(gt, files["names"])
    T.main(scene.output / "triangulation", reference, scene.image_dir, files["pairs"], files["features"],
           files["matches"], verification=verification, max_error=max_error, overwrite=True)
    stats = json.loads((scene.output / "triangulation" / "stats.json").read_text())
    return {**stats, "matcher": files["matcher"], "keypoints_per_image": files["keypoints_per_image"],
            "extract_match_timings": files["timings"]}


def _row(scene: str, method: str, r: dict[str, Any]) -> list[str]:
    t, em = r["timings"], r["extract_match_timings"]
    return [scene, method, r["matcher"], str(r["num_images"]), core.fmt(r["keypoints_per_image"], ".0f"),
            str(r["num_points3D"]), core.fmt(r["mean_track_length"], ".2f"), str(r["num_observations"]),
            core.fmt(r["mean_reprojection_error_px"], ".3f"), f"{r['num_matches']} / {r['num_verified_matches']}",
            f"{t['verification_s'] + t['triangulation_s']:.2f}", f"{em['extract_s']:.1f}/{em['match_s']:.1f}"]


def markdown_report(results: dict[str, Any]) -> str:
    st = results["settings"]
    rows = [_row(s, m, r) for s, m, r in scenes.by_scene(results)]
    out = ["# Triangulation benchmark (GT cameras fixed)", "",
           f"Every image pair; verification `{st['verification']}`"
           + (f" (Sampson distance <= {st['max_error_px']} px to the GT epipolar geometry)"
              if st["verification"] == "poses" else "")
           + "; pycolmap `triangulate_points` (poses and intrinsics fixed, default triangulator options: tracks "
             f"of two views are dropped). Overrides: `{' '.join(st['overrides']) or 'none'}`.", "",
           core.markdown_table(COLUMNS, rows), *core.outcome_lines(results)]
    return "\n".join(out) + "\n"


def run(configs: Sequence[str | Path], methods: Sequence[str] = DEFAULT_METHODS, output: str | Path = "outputs/triangulation",
        overrides: Sequence[str] = (), work: str | Path | None = None, verification: str = "poses",
        max_error: float = 4.0) -> dict[str, Any]:
    """Every config x method; returns the results (also written under ``output``)."""
    if verification not in T.VERIFICATIONS:
        raise ConfigError(f"--verification must be one of {list(T.VERIFICATIONS)}, got {verification!r}")
    if not max_error > 0:
        raise ConfigError(f"--max-error must be a positive number of pixels, got {max_error}")
    output = Path(output)
    plans, gt = plan_scenes(configs, methods, Path(work) if work else output, overrides)
    results = core.new_results(PROTOCOL, scenes.settings(configs, methods, overrides, verification=verification,
                                                         max_error_px=max_error))

    def evaluate_scene(scene: str, method: str, cfg: dict[str, Any]):
        r = evaluate(cfg, method, gt[scene], verification, max_error)
        return r, [{k: r[k] for k in ROW_KEYS}]

    scenes.run(results, plans, evaluate_scene, lambda r: core.save(output, r, markdown_report(r)))  # saves at the end too
    return results


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/triangulation",
         overrides: Sequence[str] = (), work: str | None = None, verification: str = "poses",
         max_error: float = 4.0) -> dict[str, Any]:
    """The CLI's body: run and print the table (exit status: :func:`..core.exit_code`)."""
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, work, verification, max_error)
    print((Path(output) / "results.md").read_text())
    return results
