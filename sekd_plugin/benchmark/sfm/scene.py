"""Config-driven reconstruction of one scene: extract -> pairs -> match -> SfM -> GT evaluation.

    python -m sekd_plugin.benchmark scene benchmark_configs/reconstruction/fountain-P11.yaml \\
        extractor=sekd-sfm [matcher=NN-mutual] [intrinsics=gt] [resize_max=1024] \\
        [pipeline=colmap] [data_root=/path/to/scenes] [output=DIR] [mapper.ba_global_max_num_iterations=20]

The YAML file and the ``key=value`` overrides (OmegaConf dot-list syntax) set the keys of
:class:`~.config.SceneConfig` (:mod:`.config`: an unknown key or a wrong value is one error line
before any work starts). Paths of ``images``, ``gt_cameras`` and ``image_list`` are relative to
``data_root`` (a ``data_root=`` override, else ``$SEKD_PLUGIN_SCENES``, else the file's own, relative
to the file). The extractor's and matcher's options: ``model.KEY=VALUE`` and ``matcher.KEY=VALUE``
(e.g. ``model.max_keypoints=2000``), recorded in ``stats.json`` with the config.
``matcher: null`` (the default) takes the extractor's matcher (``NN-ratio`` for SIFT,
``NN-superpoint`` for SuperPoint, ``NN-mutual`` for SEKD and D2-Net). ``pipeline=colmap`` runs
COLMAP's own SIFT extraction and matching instead (``extractor``/``matcher`` unused); both
pipelines (:mod:`.pipelines`) give the same stats keys. Outputs,
under ``output`` (default ``outputs/reconstruction/<scene>/<extractor>``):

* ``feats-<extractor>[-fp16].h5`` (+ ``.json`` with the extraction time),
  ``pairs-<mode>.txt``, ``matches-<matcher>-<features stem>-<pairs stem>.h5`` (+ ``.json``):
  reused by the next run unless ``overwrite=true``; features whose recorded conf or weights
  sha256 (the h5 provenance) differ from this run's are extracted again;
* ``sfm/``: the COLMAP database, the largest model (``cameras.bin``, ``images.bin``,
  ``points3D.bin``...), every model under ``sfm/models/<i>`` and ``sfm/stats.json``;
* ``stats.json``: config, model statistics, GT errors and the failure verdict (when
  ``gt_cameras`` is set) and the time of each stage (``timings``: extract, match, import,
  verification, mapping; a reused stage reports the time it took when run; a stage the
  pipeline does not run is null).
"""

from __future__ import annotations

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from ...common import run_cli, write_json
from .config import SceneConfig, load_config, resolve_scene, validate
from .pipelines import pipeline_of, removed_pairs

PROG = "python -m sekd_plugin.benchmark scene"


def run(cfg: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """Run one configured reconstruction; returns (and writes to ``<output>/stats.json``) the stats.

    The output folder is held for the run (:func:`~sekd_plugin.common.locks.folder_lock`): a
    second run into it (another benchmark sharing ``--work``) waits for this one."""
    from ...common.locks import folder_lock

    validate(cfg)
    scene = resolve_scene(cfg, label)
    with folder_lock(scene.output, f"{scene.name}/{label or scene.output.name}"):
        return _run(cfg, label, scene)


def _run(cfg: dict[str, Any], label: str | None, scene) -> dict[str, Any]:
    from ...datasets.strecha import intrinsics_from_gt, load_gt_cameras
    from ...metrics.sfm import evaluate_reconstruction

    all_names = list(scene.names)  # totals and GT evaluation count failed images as not registered
    gt = load_gt_cameras(scene.gt_dir, all_names, image_dir=scene.image_dir) if scene.gt_dir is not None else None
    fixed = intrinsics_from_gt(gt) if gt is not None and cfg["intrinsics"] == "gt" else None
    scene.output.mkdir(parents=True, exist_ok=True)
    rec, sfm_stats = pipeline_of(cfg).reconstruct(cfg, scene, fixed)
    timings = sfm_stats.pop("timings")
    timings["pairs_per_s"] = sfm_stats["num_pairs"] / timings["match_s"] if timings["match_s"] else None
    stats: dict[str, Any] = {
        "scene": scene.name,
        "method": label or sfm_stats["extractor"],
        "intrinsics": cfg["intrinsics"],
        "total_images": len(all_names),
        **sfm_stats,  # pipeline, extractor, matcher, cached, paths, failed_images (left out, and their pairs)...
        "removed_pairs": removed_pairs(cfg, all_names, sfm_stats["failed_images"]),
        "timings": timings,
        "config": cfg,
    }
    if gt is not None:
        stats["gt"] = evaluate_reconstruction(rec, gt)
    write_json(scene.output / "stats.json", stats)
    return stats


def sfm_seconds(timings: dict[str, Any]) -> float:
    """The SfM stage's seconds: import + verification + mapping (None: not run in this stage)."""
    return sum(timings.get(k) or 0.0 for k in ("import_s", "verification_s", "mapping_s"))


def verification_summary(stats: dict[str, Any]) -> str:
    """``"55/55 pairs verified (>= 15 inliers each; best pair 1203; 47 pairs with >= 100, the mapper's
    init_min_num_inliers to start a model)"``."""
    return (f"{stats['num_verified_pairs']}/{stats['num_pairs']} pairs verified "
            f"(>= {stats.get('verification_min_inliers')} inliers each; best pair {stats.get('max_pair_inliers')}; "
            f"{stats.get('num_pairs_above_init_min_inliers')} pairs with >= {stats.get('init_min_num_inliers')}, "
            "the mapper's init_min_num_inliers to start a model)")


def format_summary(stats: dict[str, Any]) -> str:
    """A few human-readable lines of a :func:`run` result."""
    t = stats["timings"]
    lines = [
        f"{stats['scene']} / {stats['method']} ({stats['matcher']}, {stats['intrinsics']}): "
        f"{stats['registered_images']}/{stats['total_images']} images registered, "
        f"{stats['num_points3D']} points, track length {stats['mean_track_length'] or 0:.2f}, "
        f"reprojection error {stats['mean_reprojection_error_px'] or 0:.3f} px",
        verification_summary(stats),
        f"time: extract {t['extract_s']:.1f} s, match {t['match_s']:.1f} s, sfm {sfm_seconds(t):.1f} s",
    ]
    if stats.get("failure_hint"):
        lines.append(f"no model: {stats['failure_hint']}")
    gt = stats.get("gt")
    if gt and gt["median_center_error_m"] is not None:
        lines.append(
            f"GT: median centre error {100 * gt['median_center_error_m']:.2f} cm, "
            f"within 1/3/10 cm {gt['pct_center_within_1cm']:.0f}/{gt['pct_center_within_3cm']:.0f}/"
            f"{gt['pct_center_within_10cm']:.0f} %, median rotation error {gt['median_rotation_error_deg']:.3f} deg")
    if gt and gt["failed"]:
        lines.append(f"GT: FAILED: {gt['failure']}")
    lines.append(f"output: {stats['paths']['output']}")
    return "\n".join(lines)


def main(config: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Load, validate and run a scene config (the CLI's body); ``model.KEY=VALUE`` /
    ``matcher.KEY=VALUE`` set the extractor's / matcher's options (``extractor_options``,
    ``matcher_options`` of the config)."""
    from ...common.conf_layers import parse_dotlist
    from ..scenes import as_scene_overrides, split_method_overrides

    overrides, method_items = split_method_overrides([str(o) for o in overrides], [])
    if method_items:
        cfg = load_config(config, overrides)
        options = parse_dotlist(method_items, "the overrides")
        overrides = [*overrides, *as_scene_overrides(cfg["extractor"], cfg, options)]
    return run(load_config(config, overrides))


def _done(stats: dict[str, Any]) -> int:
    print(format_summary(stats))
    if not stats["registered_images"] or (stats.get("gt") or {}).get("failed"):
        return 1
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``python -m sekd_plugin.benchmark scene CONFIG [key=value ...]``: exit 0, 1 (no model or a
    model the GT rejects) or 2 (bad config or inputs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nkeys (default):")
        for key, value in SceneConfig.__dataclass_fields__.items():
            default = value.default_factory() if callable(value.default_factory) else value.default
            print(f"  {key} ({default!r})")
        return 0 if argv else 2
    config, overrides = (argv[0], argv[1:]) if "=" not in argv[0] else (None, argv)
    return run_cli(main, config=config, overrides=overrides, on_success=_done,
                   resume_hint="features and matches written so far are kept; run the same command to resume")
