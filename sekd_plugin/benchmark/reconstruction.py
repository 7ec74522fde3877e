"""Reconstruction benchmark: every scene config x every extractor through the SfM pipeline.

    python -m sekd_plugin.benchmark reconstruction \\
        --config benchmark_configs/reconstruction/fountain-P11.yaml [--config ...] \\
        --extractors sekd,sift[,superpoint,d2net] --output DIR [key=value ...]

The ``key=value`` overrides (``sekd_plugin.reconstruct`` config keys, e.g. ``intrinsics=gt``
``resize_max=1024`` ``matcher=nn-ratio``) apply to every config; ``extractor`` and ``output``
are set per run (``DIR/<scene>/<extractor>``, where features and matches are cached for the
next run). Methods whose weights are absent are skipped with the reason; a run that fails is
reported and the others go on. Writes ``DIR/results.json``, ``DIR/results.md`` and
``DIR/results.png`` (bar charts), updated after every run.
"""

from __future__ import annotations

import logging
import platform
import traceback
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..extractors.confs import confs
from ..reconstruct import extraction_conf, load_config, run as run_reconstruction
from ..common import write_atomic, write_json

logger = logging.getLogger(__name__)

DEFAULT_EXTRACTORS = ("sekd", "sekd-selftrained", "sift")
ALIASES = {"d2net": "d2net-ss"}  # benchmark method names -> conf names, when not a conf themselves

COLUMNS = ("scene", "method", "reg/total", "#3D pts", "track len", "obs/img", "reproj (px)", "verified pairs",
           "med centre err (cm)", "<1/3/10 cm (%)", "med rot err (deg)", "extract/match/sfm (s)")


def conf_name(method: str) -> str:
    """The extraction conf used for a benchmark method name."""
    if method not in confs and method in ALIASES:
        return ALIASES[method]
    return method


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("total_images", "registered_images", "num_points3D", "mean_track_length",
            "mean_observations_per_image", "mean_reprojection_error_px", "num_pairs", "num_verified_pairs",
            "num_models", "mean_keypoints_per_image", "mean_matches_per_pair", "matcher", "intrinsics",
            "timings", "cached", "paths")
    out = {k: stats.get(k) for k in keys}
    if "gt" in stats:
        out["gt"] = {k: v for k, v in stats["gt"].items() if k != "per_image"}
        out["gt_per_image"] = stats["gt"].get("per_image", {})
    return out


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for scene, methods in results["scenes"].items():
        for method, r in methods.items():
            gt = r.get("gt") or {}
            t = r["timings"]
            within = "-" if gt.get("median_center_error_m") is None else "/".join(
                f"{gt[f'pct_center_within_{c}cm']:.0f}" for c in (1, 3, 10))
            rows.append([
                scene, method, f"{r['registered_images']}/{r['total_images']}", str(r["num_points3D"]),
                _fmt(r["mean_track_length"], ".2f"), _fmt(r["mean_observations_per_image"], ".0f"),
                _fmt(r["mean_reprojection_error_px"], ".3f"), f"{r['num_verified_pairs']}/{r['num_pairs']}",
                _fmt(gt.get("median_center_error_m"), ".2f", 100), within,
                _fmt(gt.get("median_rotation_error_deg"), ".3f"),
                f"{t['extract_s']:.1f}/{t['match_s']:.1f}/{t['sfm_s']:.1f}",
            ])
    return rows


def markdown_report(results: dict[str, Any]) -> str:
    out = [
        "# Reconstruction benchmark",
        "",
        f"Overrides: `{' '.join(results['overrides']) or 'none'}`. Per scene and method: registered / total images, "
        "3D points, mean track length, mean observations per registered image, COLMAP's mean reprojection error, "
        "geometrically verified / matched pairs; with GT cameras, after a robust similarity alignment of the camera "
        "centres: median camera-centre error, percentage of **all** images with a centre error below 1/3/10 cm, "
        "median rotation error. Times: wall-clock seconds of extraction, matching and SfM (a stage reused from "
        "an earlier run reports the time it took then).",
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
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Grouped bar charts (one group per scene, one bar per method); None when nothing ran."""
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
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    x = np.arange(len(scenes))
    width = 0.8 / len(methods)
    for ax, (title, get) in zip(axes, panels):
        for k, method in enumerate(methods):
            values = []
            for scene in scenes:
                r = results["scenes"][scene].get(method)
                v = get(r) if r is not None else None
                values.append(np.nan if v is None else v)
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, values, width, label=method)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(scenes, rotation=20, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(methods), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _write(results: dict[str, Any], output: Path) -> None:
    write_json(output / "results.json", results)
    write_atomic(output / "results.md", markdown_report(results))
    plot(results, output / "results.png")


def run(
    configs: Sequence[str | Path],
    extractors: Sequence[str] = DEFAULT_EXTRACTORS,
    output: str | Path = "outputs/reconstruction_benchmark",
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every config x extractor; returns the results dict (also written under ``output``)."""
    from ..extractors.base import missing_weights_reason

    output = Path(output)
    overrides = [o for o in overrides if not o.startswith(("extractor=", "output="))]
    # validate every config and method before the first long run
    plans = []
    for config in configs:
        base = load_config(config, overrides)
        scene = base["scene"] or Path(base["images"]).parent.name
        for method in extractors:
            name = conf_name(method)
            cfg = load_config(config, [*overrides, f"extractor={name}", f"output={output / scene / method}"])
            plans.append((scene, method, cfg))
    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "configs": [str(c) for c in configs], "extractors": list(extractors), "overrides": list(overrides),
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
        reason = missing_weights_reason(extraction_conf(cfg)["model"], label=method)
        if reason:
            logger.warning(reason)
            results["skipped"][f"{scene}/{method}"] = reason
            continue
        logger.warning("reconstruction benchmark: %s / %s", scene, method)
        try:
            stats = run_reconstruction(cfg)
        except KeyboardInterrupt:
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
