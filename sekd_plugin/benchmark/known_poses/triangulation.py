"""Triangulation benchmark (Schoenberger et al., "Comparative Evaluation of Hand-Crafted and
Learned Local Features", CVPR 2017): the ground-truth cameras and poses are fixed and each
method's matches of every image pair are triangulated (:mod:`sekd_plugin.triangulation`).

    python -m sekd_plugin.benchmark triangulation --config benchmark_configs/reconstruction/fountain-P11.yaml \\
        [--methods colmap-sift,sift,sekd-sfm] [--verification poses|colmap|none] [--max-error 4] \\
        --output DIR [--work DIR] [key=value ...]

Per scene and method: 3D points, mean track length, observations, COLMAP's mean reprojection
error, matches and verified matches, and the time of verification + triangulation. Writes
``DIR/results.json`` and ``DIR/results.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


from ... import triangulation as T
from ...common import ConfigError, PartialFailure
from .common import fmt, markdown_table, method_files, new_results, plan_scenes, run_plans


DEFAULT_METHODS = ("colmap-sift", "sift", "sekd", "sekd-sfm")
COLUMNS = ("scene", "method", "matcher", "images", "kpts/img", "#3D pts", "track len", "#obs", "reproj (px)",
           "matches / verified", "verif + triang (s)", "extract/match (s)")


def evaluate(cfg: dict[str, Any], method: str, gt, verification: str, max_error: float) -> dict[str, Any]:
    """Triangulate one method's matches of one scene in the GT cameras; the stats of the model."""
    files = method_files(cfg, method)
    scene = files["scene"]
    reference = T.model_from_gt_cameras(gt, files["names"])
    T.main(scene.output / "triangulation", reference, scene.image_dir, files["pairs"], files["features"],
           files["matches"], verification=verification, max_error=max_error, overwrite=True)
    import json

    stats = json.loads((scene.output / "triangulation" / "stats.json").read_text())
    return {**stats, "matcher": files["matcher"], "keypoints_per_image": files["keypoints_per_image"],
            "extract_match_timings": files["timings"]}


def _row(scene: str, method: str, r: dict[str, Any]) -> list[str]:
    t, em = r["timings"], r["extract_match_timings"]
    return [scene, method, r["matcher"], str(r["num_images"]), fmt(r["keypoints_per_image"], ".0f"),
            str(r["num_points3D"]), fmt(r["mean_track_length"], ".2f"), str(r["num_observations"]),
            fmt(r["mean_reprojection_error_px"], ".3f"), f"{r['num_matches']} / {r['num_verified_matches']}",
            f"{t['verification_s'] + t['triangulation_s']:.2f}", f"{em['extract_s']:.1f}/{em['match_s']:.1f}"]


def markdown_report(results: dict[str, Any]) -> str:
    rows = [_row(s, m, r) for s, ms in results["scenes"].items() for m, r in ms.items()]
    out = ["# Triangulation benchmark (GT cameras fixed)", "",
           f"Every image pair; verification `{results['verification']}`"
           + (f" (Sampson distance <= {results['max_error_px']} px to the GT epipolar geometry)"
              if results["verification"] == "poses" else "")
           + "; pycolmap `triangulate_points` (poses and intrinsics fixed, default triangulator options: tracks "
             f"of two views are dropped). Overrides: `{' '.join(results['overrides']) or 'none'}`.", "",
           *markdown_table(COLUMNS, rows), ""]
    out += [f"- skipped {k}: {v}" for k, v in results["skipped"].items()]
    out += [f"- FAILED {k}: {v}" for k, v in results["failed"].items()]
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
    plans, scenes = plan_scenes(configs, methods, Path(work) if work else output, overrides)
    output.mkdir(parents=True, exist_ok=True)
    results = new_results("Schoenberger et al. CVPR 2017: triangulation with fixed GT cameras", configs, methods,
                          overrides, verification=verification, max_error_px=max_error)
    return run_plans("triangulation", plans, scenes, results, output,
                     lambda cfg, method, scene: evaluate(cfg, method, scene, verification, max_error), markdown_report)


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/triangulation",
         overrides: Sequence[str] = (), work: str | None = None, verification: str = "poses",
         max_error: float = 4.0) -> dict[str, Any]:
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, work, verification, max_error)
    print((Path(output) / "results.md").read_text())
    if results["failed"] and not any(results["scenes"].values()):
        raise PartialFailure(f"every run failed: {sorted(results['failed'])}", results["failed"])
    return results
