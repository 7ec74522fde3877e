"""Reconstruction benchmark: every scene config x every method through the SfM pipeline.

    python -m sekd_plugin.benchmark reconstruction \\
        --config benchmark_configs/reconstruction/fountain-P11.yaml [--config ...] \\
        [--methods colmap-sift,sift,sekd,sekd-sfm,...] --output DIR [key=value ...]

A method is an entry of :data:`~sekd_plugin.benchmark.methods.METHODS` (its extraction
conf and its matcher; ``colmap-sift`` is COLMAP's own pipeline, the reference row) or any
extraction conf with its model's default matcher. The ``key=value`` overrides (scene-runner
config keys, e.g. ``intrinsics=gt``, ``resize_max=1024``) apply to every config; ``matcher=``
given there replaces every method's matcher. ``output`` is set per run
(``DIR/<scene>/<method>``, where features and matches are cached for the next run). Every
config x method is validated before the first run; methods whose weights are absent are
skipped with the reason; a run that fails is reported and the others go on (exit status 1).
Writes ``DIR/results.json`` (:mod:`..core`'s envelope: ``methods[label]["scenes"][scene]``
the run's stats, one row per scene x method in ``rows``), ``DIR/results.md`` and
``DIR/results.png`` (bar charts), updated after every method. A reconstruction judged failed against the GT (see
:mod:`~sekd_plugin.metrics.sfm`) reads ``FAILED`` in the table and
``gt.failed: true`` in the JSON.
"""


from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ...common.cli import restore_sigterm
from ...common.files import save_figure
from .. import core, scenes
from ..methods import DEFAULT_METHODS
from .scene import run as run_scene, sfm_seconds

PROTOCOL = "reconstruction"
COLUMNS = ("scene", "method", "matcher", "status", "reg/total", "#kpts/img", "#3D pts", "track len", "reproj (px)",
           "verified pairs", "med centre err (cm)", "<1/3/10 cm (%)", "med rot err (deg)",
           "extract/match/sfm (s)", "match (pairs/s)")
SUMMARY_KEYS = ("total_images", "registered_images", "num_points3D", "mean_track_length",
                "mean_observations_per_image", "mean_reprojection_error_px", "num_pairs", "num_verified_pairs",
                "verification_min_inliers", "max_pair_inliers", "init_min_num_inliers",
                "num_pairs_above_init_min_inliers", "num_models", "mean_keypoints_per_image", "mean_matches_per_pair",
                "pipeline", "extractor", "matcher", "intrinsics", "failure_hint", "timings", "cached", "paths",
                "failed_images", "removed_pairs")


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """What results.json keeps of a scene run's stats (GT per-image errors under ``gt_per_image``)."""
    out = {k: stats.get(k) for k in SUMMARY_KEYS}
    if "gt" in stats:
        out["gt"] = {k: v for k, v in stats["gt"].items() if k != "per_image"}
        out["gt_per_image"] = stats["gt"].get("per_image", {})
    return out


def row(r: dict[str, Any]) -> dict[str, Any]:
    """The per-item row of a scene x method: its status and headline numbers."""
    gt = r.get("gt") or {}
    return {"status": status(r), "registered_images": r["registered_images"], "total_images": r["total_images"],
            "num_points3D": r["num_points3D"], "mean_track_length": r["mean_track_length"],
            "mean_reprojection_error_px": r["mean_reprojection_error_px"],
            "num_verified_pairs": r["num_verified_pairs"],
            "num_pairs": r["num_pairs"], "median_center_error_m": gt.get("median_center_error_m"),
            "median_rotation_error_deg": gt.get("median_rotation_error_deg")}


def status(r: dict[str, Any]) -> str:
    """``ok``, or ``FAILED (<why>)``: no model, or a model the GT evaluation judges wrong."""
    if not r["registered_images"]:
        return "FAILED (no model)"
    gt = r.get("gt")
    if gt and gt.get("failed"):
        return f"FAILED ({gt.get('failure')})"
    return "ok"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    fmt = core.fmt
    for scene, method, r in scenes.by_scene(results):
        gt = r.get("gt") or {}
        t = r["timings"]
        within = "-" if gt.get("median_center_error_m") is None else "/".join(
            f"{gt[f'pct_center_within_{c}cm']:.0f}" for c in (1, 3, 10))
        err = fmt(gt.get("median_center_error_m"), ".2f", 100)
        rows.append([
            scene, method, str(r["matcher"]), status(r), f"{r['registered_images']}/{r['total_images']}",
            fmt(r.get("mean_keypoints_per_image"), ".0f"), str(r["num_points3D"]),
            fmt(r["mean_track_length"], ".2f"), fmt(r["mean_reprojection_error_px"], ".3f"),
            f"{r['num_verified_pairs']}/{r['num_pairs']}",
            f"**{err}** FAILED" if gt.get("failed") and err != "-" else err, within,
            fmt(gt.get("median_rotation_error_deg"), ".3f"),
            f"{t['extract_s']:.1f}/{t['match_s']:.1f}/{sfm_seconds(t):.1f}", fmt(t.get("pairs_per_s"), ".1f"),
        ])
    return rows


def markdown_report(results: dict[str, Any]) -> str:
    out = [
        "# Reconstruction benchmark",
        "",
        f"Overrides: `{' '.join(results['settings']['overrides']) or 'none'}`. Per scene and method: the matcher, "
        "the status (FAILED: no model, or cameras the GT evaluation rejects: median centre error above 10 % of the "
        "scene extent or fewer than half of the cameras fitting the similarity alignment), registered / total images, "
        "keypoints per image, 3D points, mean track length, COLMAP's mean reprojection error, geometrically "
        "verified / matched pairs; with GT cameras, after a robust similarity alignment of the camera centres: "
        "median camera-centre error, percentage of **all** images with a centre error below 1/3/10 cm, median "
        "rotation error. Times: wall-clock seconds of extraction, matching and SfM (import, verification and "
        "mapping; a stage reused from an earlier run reports the time it took then; for colmap-sift, matching "
        "includes COLMAP's geometric verification, which the other methods do in the SfM stage), and image pairs "
        "matched per second.",
        "",
        core.markdown_table(COLUMNS, table_rows(results)),
        *core.outcome_lines(results),
        *scenes.failed_images_lines(results),
    ]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Grouped bar charts (one group per scene, one bar per method; failed runs hatched)."""
    import numpy as np

    plt = core.pyplot()
    names = scenes.scene_order(results)
    if not names:
        return None
    methods = [m for m, entry in results["methods"].items() if entry.get("scenes")]
    panels = [
        ("registered images (%)", lambda r: 100 * r["registered_images"] / max(1, r["total_images"])),
        ("3D points", lambda r: r["num_points3D"]),
        ("median centre error (cm)", lambda r: None if not r.get("gt") or r["gt"]["median_center_error_m"] is None
         else 100 * r["gt"]["median_center_error_m"]),
        ("median rotation error (deg)", lambda r: None if not r.get("gt") else r["gt"]["median_rotation_error_deg"]),
        ("total time (s)", lambda r: r["timings"]["extract_s"] + r["timings"]["match_s"] + sfm_seconds(r["timings"])),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8))
    x = np.arange(len(names))
    width = 0.8 / len(methods)
    for ax, (title, get) in zip(axes, panels):
        for k, method in enumerate(methods):
            values, failed = [], []
            for scene in names:
                r = results["methods"][method]["scenes"].get(scene)
                v = get(r) if r is not None else None
                values.append(np.nan if v is None else v)
                failed.append(r is not None and status(r) != "ok")
            bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, values, width, label=method)
            for bar, bad in zip(bars, failed):
                if bad:
                    bar.set_hatch("xx")
                    bar.set_edgecolor("red")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=20, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(methods), 8), fontsize=9, frameon=False)
    fig.text(0.99, 0.01, "hatched red: FAILED", ha="right", fontsize=8, color="red")
    fig.tight_layout(rect=(0, 0.03, 1, 0.88))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path


def save(results: dict[str, Any], output: Path) -> None:
    """results.json, results.md and results.png."""
    core.save(output, results, markdown_report(results))
    plot(results, output / "results.png")


def run(
    configs: Sequence[str | Path],
    methods: Sequence[str] = DEFAULT_METHODS,
    output: str | Path = "outputs/reconstruction_benchmark",
    overrides: Sequence[str] = (),
    work: str | Path | None = None,
) -> dict[str, Any]:
    """Run every config x method; returns the results (also written under ``output``).

    ``work``: where the per-run folders (cached features and matches, models) go, default
    ``output``; several benchmarks (self-calibrated, GT intrinsics, pose) can share one."""
    output = Path(output)
    plans = scenes.plan(configs, methods, Path(work) if work else output, overrides)
    restore_sigterm()  # pycolmap's import (by the validation) replaced the CLI's SIGTERM handler
    results = core.new_results(PROTOCOL, scenes.settings(configs, methods, overrides))

    def evaluate(scene: str, method: str, cfg: dict[str, Any]):
        r = summary(run_scene(cfg, label=method))
        return r, [row(r)]

    scenes.run(results, plans, evaluate, lambda r: save(r, output))  # saves at the end too
    return results


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/reconstruction_benchmark",
         overrides: Sequence[str] = (), work: str | None = None) -> dict[str, Any]:
    """The CLI's body: run and print the table (exit status: :func:`..core.exit_code`)."""
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, work)
    print((Path(output) / "results.md").read_text())
    return results
