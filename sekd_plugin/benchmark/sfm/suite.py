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
skipped with the reason; a run that fails is reported and the others go on. Writes
``DIR/results.json``, ``DIR/results.md`` and ``DIR/results.png`` (bar charts), updated after
every run. A reconstruction judged failed against the GT (see
:mod:`~sekd_plugin.benchmark.sfm.metrics`) reads ``FAILED`` in the table and
``gt.failed: true`` in the JSON.
"""

from __future__ import annotations

import logging
import platform
import traceback
from pathlib import Path
from typing import Any, Sequence

from ... import __version__
from ...common import PartialFailure, write_atomic, write_json
from ...common.cli import restore_sigterm
from ...common.files import save_figure
from ...common.locks import FolderLockedError
from ..methods import COLMAP, DEFAULT_METHODS, method_entry
from .runner import extraction_conf, load_config, run as run_scene

logger = logging.getLogger(__name__)

COLUMNS = ("scene", "method", "matcher", "status", "reg/total", "#kpts/img", "#3D pts", "track len", "reproj (px)",
           "verified pairs", "med centre err (cm)", "<1/3/10 cm (%)", "med rot err (deg)",
           "extract/match/sfm (s)", "match (pairs/s)")


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("total_images", "registered_images", "num_points3D", "mean_track_length",
            "mean_observations_per_image", "mean_reprojection_error_px", "num_pairs", "num_verified_pairs",
            "verification_min_inliers", "max_pair_inliers", "init_min_num_inliers", "num_pairs_above_init_min_inliers",
            "num_models", "mean_keypoints_per_image", "mean_matches_per_pair", "pipeline", "extractor", "matcher",
            "intrinsics", "failure_hint", "timings", "cached", "paths", "failed_images", "removed_pairs")
    out = {k: stats.get(k) for k in keys}
    if "gt" in stats:
        out["gt"] = {k: v for k, v in stats["gt"].items() if k != "per_image"}
        out["gt_per_image"] = stats["gt"].get("per_image", {})
    return out


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


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
    for scene, methods in results["scenes"].items():
        for method, r in methods.items():
            gt = r.get("gt") or {}
            t = r["timings"]
            within = "-" if gt.get("median_center_error_m") is None else "/".join(
                f"{gt[f'pct_center_within_{c}cm']:.0f}" for c in (1, 3, 10))
            err = _fmt(gt.get("median_center_error_m"), ".2f", 100)
            rows.append([
                scene, method, str(r["matcher"]), status(r), f"{r['registered_images']}/{r['total_images']}",
                _fmt(r.get("mean_keypoints_per_image"), ".0f"), str(r["num_points3D"]),
                _fmt(r["mean_track_length"], ".2f"), _fmt(r["mean_reprojection_error_px"], ".3f"),
                f"{r['num_verified_pairs']}/{r['num_pairs']}",
                f"**{err}** FAILED" if gt.get("failed") and err != "-" else err, within,
                _fmt(gt.get("median_rotation_error_deg"), ".3f"),
                f"{t['extract_s']:.1f}/{t['match_s']:.1f}/{t['sfm_s']:.1f}", _fmt(t.get("pairs_per_s"), ".1f"),
            ])
    return rows


def markdown_report(results: dict[str, Any]) -> str:
    out = [
        "# Reconstruction benchmark",
        "",
        f"Overrides: `{' '.join(results['overrides']) or 'none'}`. Per scene and method: the matcher, the status "
        "(FAILED: no model, or cameras the GT evaluation rejects: median centre error above 10 % of the scene "
        "extent or fewer than half of the cameras fitting the similarity alignment), registered / total images, "
        "keypoints per image, 3D points, mean track length, COLMAP's mean reprojection error, geometrically "
        "verified / matched pairs; with GT cameras, after a robust similarity alignment of the camera centres: "
        "median camera-centre error, percentage of **all** images with a centre error below 1/3/10 cm, median "
        "rotation error. Times: wall-clock seconds of extraction, matching and SfM (a stage reused from an "
        "earlier run reports the time it took then; for colmap-sift, matching includes COLMAP's geometric "
        "verification, which the other methods do in the SfM stage), and image pairs matched per second.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---" * len(COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    out.append("")
    for key, reason in results.get("skipped", {}).items():
        out.append(f"- skipped {key}: {reason}")
    for key, error in results.get("failed", {}).items():
        out.append(f"- FAILED {key}: {error.splitlines()[-1] if error else ''}")
    out += failed_images_lines(results)
    return "\n".join(out) + "\n"


def failed_images_lines(results: dict[str, Any], what: str = "left out") -> list[str]:
    """One line per scene / method with images that could not be read, and the pairs they removed."""
    out = []
    for scene, methods in results["scenes"].items():
        for method, r in methods.items():
            failed, removed = r.get("failed_images") or {}, r.get("removed_pairs") or []
            if failed:
                pairs = ", ".join(f"{a}-{b}" for a, b in removed[:10]) + (", ..." if len(removed) > 10 else "")
                out.append(f"- {scene}/{method}: {len(failed)} image(s) failed ("
                           + "; ".join(f"{n}: {e}" for n, e in failed.items())
                           + f"); {len(removed)} pair(s) {what}" + (f": {pairs}" if pairs else ""))
    return out


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Grouped bar charts (one group per scene, one bar per method; failed runs hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenes = [s for s, m in results["scenes"].items() if m]
    if not scenes:
        return None
    methods = list(dict.fromkeys(m for s in scenes for m in results["scenes"][s]))
    panels = [
        ("registered images (%)", lambda r: 100 * r["registered_images"] / max(1, r["total_images"])),
        ("3D points", lambda r: r["num_points3D"]),
        ("median centre error (cm)", lambda r: None if not r.get("gt") or r["gt"]["median_center_error_m"] is None
         else 100 * r["gt"]["median_center_error_m"]),
        ("median rotation error (deg)", lambda r: None if not r.get("gt") else r["gt"]["median_rotation_error_deg"]),
        ("total time (s)", lambda r: r["timings"]["extract_s"] + r["timings"]["match_s"] + r["timings"]["sfm_s"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8))
    x = np.arange(len(scenes))
    width = 0.8 / len(methods)
    for ax, (title, get) in zip(axes, panels):
        for k, method in enumerate(methods):
            values, failed = [], []
            for scene in scenes:
                r = results["scenes"][scene].get(method)
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
        ax.set_xticklabels(scenes, rotation=20, fontsize=8)
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


def _write(results: dict[str, Any], output: Path) -> None:
    write_json(output / "results.json", results)
    write_atomic(output / "results.md", markdown_report(results))
    plot(results, output / "results.png")


def skip_reason(method: str, cfg: dict[str, Any]) -> str | None:
    """Why a method cannot run (its weights are absent), or None."""
    from ...extractors.base import missing_weights_reason

    if cfg["pipeline"] == COLMAP:
        return None
    return missing_weights_reason(extraction_conf(cfg)["model"], label=method)


def plan(configs: Sequence[str | Path], methods: Sequence[str], output: Path,
         overrides: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(scene, method, config)`` of every run, each validated (before any work starts); the
    features, matches and models of a run go to ``output/<scene>/<method>``."""
    overrides = [o for o in overrides if not o.startswith(("extractor=", "output=", "pipeline="))]
    user_matcher = any(o.startswith("matcher=") for o in overrides)
    plans = []
    for config in configs:
        base = load_config(config, overrides)
        scene = base["scene"] or Path(base["images"]).parent.name
        for method in methods:
            entry = method_entry(method)
            extra = [f"output={output / scene / method}", f"pipeline={entry['pipeline']}"]
            if entry["pipeline"] != COLMAP:
                extra.append(f"extractor={entry['extractor']}")
                if not user_matcher:
                    extra.append(f"matcher={entry['matcher']}")
            plans.append((scene, method, load_config(config, [*overrides, *extra])))
    return plans


def run(
    configs: Sequence[str | Path],
    methods: Sequence[str] = DEFAULT_METHODS,
    output: str | Path = "outputs/reconstruction_benchmark",
    overrides: Sequence[str] = (),
    work: str | Path | None = None,
) -> dict[str, Any]:
    """Run every config x method; returns the results dict (also written under ``output``).

    ``work``: where the per-run folders (cached features and matches, models) go, default
    ``output``; several benchmarks (self-calibrated, GT intrinsics, pose) can share one."""
    output = Path(output)
    plans = plan(configs, methods, Path(work) if work else output, overrides)
    restore_sigterm()  # pycolmap's import (by the validation) replaced the CLI's SIGTERM handler
    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "configs": [str(c) for c in configs], "methods": list(methods),
        "overrides": [o for o in overrides if not o.startswith(("extractor=", "output=", "pipeline="))],
        "scenes": {}, "skipped": {}, "failed": {},
        "environment": {"sekd_plugin": __version__, "python": platform.python_version()},
    }
    try:
        import pycolmap
        import torch

        results["environment"].update(pycolmap=pycolmap.__version__, torch=torch.__version__)
    except ImportError:
        pass
    for scene, method, cfg in plans:
        results["scenes"].setdefault(scene, {})
        reason = skip_reason(method, cfg)
        if reason:
            logger.warning(reason)
            results["skipped"][f"{scene}/{method}"] = reason
            continue
        logger.warning("reconstruction benchmark: %s / %s", scene, method)
        try:
            stats = run_scene(cfg, label=method)
        except (KeyboardInterrupt, FolderLockedError):  # a held work folder stops the command
            raise
        except Exception as error:  # noqa: BLE001 - one failing run must not lose the others
            logger.error("%s / %s failed: %s", scene, method, error)
            results["failed"][f"{scene}/{method}"] = "".join(traceback.format_exception_only(type(error), error)).strip()
            _write(results, output)
            continue
        results["scenes"][scene][method] = _summary(stats)
        _write(results, output)
    _write(results, output)
    return results


def main(configs: Sequence[str], methods: Sequence[str] | None = None, output: str = "outputs/reconstruction_benchmark",
         overrides: Sequence[str] = (), work: str | None = None) -> dict[str, Any]:
    """The CLI's body: run, print the table; every run failing is a :class:`PartialFailure`."""
    results = run(configs, list(methods or DEFAULT_METHODS), output, overrides, work)
    print((Path(output) / "results.md").read_text())
    if results["failed"] and not any(results["scenes"].values()):
        raise PartialFailure(f"every run failed: {sorted(results['failed'])}", results["failed"])
    return results
