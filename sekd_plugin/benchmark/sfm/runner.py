"""Config-driven reconstruction of one scene: extract -> pairs -> match -> SfM -> GT evaluation.

    python -m sekd_plugin.reconstruct benchmark_configs/reconstruction/fountain-P11.yaml \\
        extractor=sekd-sfm [matcher=NN-mutual] [intrinsics=gt] [resize_max=1024] \\
        [pipeline=colmap] [data_root=/path/to/scenes] [output=DIR] [mapper.ba_global_max_num_iterations=20]

The YAML file and the ``key=value`` overrides (OmegaConf dot-list syntax) set the keys of
:class:`SceneConfig` (an OmegaConf structured config in struct mode); an unknown key (the
``mapper.*``, ``verification.*`` and ``extractor_options.*`` keys included), a value of the
wrong type or a YAML syntax error is one error line naming the file and key, before any work
starts. Paths of ``images``, ``gt_cameras`` and ``image_list`` are relative to ``data_root``
(default: ``$SEKD_PLUGIN_SCENES``, else ``../shared/scenes`` next to the repository).
``matcher: null`` (the default) takes the extractor's matcher (``NN-ratio`` for SIFT,
``NN-superpoint`` for SuperPoint, ``NN-mutual`` for SEKD and D2-Net). ``pipeline=colmap`` runs
COLMAP's own SIFT extraction and matching instead (``extractor``/``matcher`` unused). Outputs,
under ``output`` (default ``outputs/reconstruction/<scene>/<extractor>``):

* ``feats-<extractor>-<hash>.h5`` (+ ``.json`` with the exact extraction conf and time),
  ``pairs-<mode>.txt``, ``matches-<matcher>-<features stem>-<pairs stem>.h5`` (+ ``.json``):
  reused by the next run unless ``overwrite=true`` (the hash changes with the conf);
* ``sfm/``: the COLMAP database, the largest model (``cameras.bin``, ``images.bin``,
  ``points3D.bin``...), every model under ``sfm/models/<i>`` and ``sfm/stats.json``;
* ``stats.json``: config, model statistics, GT errors and the failure verdict (when
  ``gt_cameras`` is set) and the time of each stage (extract, match, sfm; a reused stage
  reports the time it took when run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ...common import ConfigError, InputError, PartialFailure, run_cli, write_json
from ..methods import COLMAP, default_matcher

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
SCENES_ENV = "SEKD_PLUGIN_SCENES"
INTRINSICS = ("self-calibrated", "gt")
PAIR_MODES = ("exhaustive", "sequential")
PIPELINES = ("hloc", COLMAP)


@dataclass
class SceneConfig:
    scene: Optional[str] = None  # name, used for the default output folder
    data_root: Optional[str] = None  # default: $SEKD_PLUGIN_SCENES, else <repo>/../shared/scenes
    images: Optional[str] = None  # image folder, relative to data_root (or absolute); required
    gt_cameras: Optional[str] = None  # folder of Strecha .camera files, relative to data_root, or null
    image_list: Optional[str] = None  # optional text file of image names (relative to data_root)
    pairs: str = "exhaustive"  # exhaustive | sequential
    window: int = 5  # sequential: pair each image with the next N
    loop: bool = False  # sequential: also pair the end of the sequence with its start
    pipeline: str = "hloc"  # hloc (our extraction + matching) | colmap (COLMAP's SIFT + matching)
    extractor: str = "sekd"  # any name of sekd_plugin.extractors.confs
    extractor_options: Dict[str, Any] = field(default_factory=dict)  # per conf name: {sekd: {max_keypoints: 2000}}
    resize_max: Optional[int] = None  # override of the conf's preprocessing.resize_max
    as_half: bool = False  # store float16 features (loses keypoint precision: off for SfM)
    matcher: Optional[str] = None  # NN-mutual | NN-ratio | NN-superpoint; null: the extractor's
    min_match_score: Optional[float] = None
    camera_mode: str = "AUTO"  # AUTO | SINGLE | PER_FOLDER | PER_IMAGE
    camera_model: str = "SIMPLE_RADIAL"  # when self-calibrated
    intrinsics: str = "self-calibrated"  # self-calibrated | gt (PINHOLE fixed to the GT K)
    skip_geometric_verification: bool = False
    verification: Dict[str, Any] = field(default_factory=dict)  # TwoViewGeometryOptions overrides
    mapper: Dict[str, Any] = field(default_factory=dict)  # IncrementalPipelineOptions (mapper.mapper.init_...)
    colmap_extraction: Dict[str, Any] = field(default_factory=dict)  # pipeline=colmap: FeatureExtractionOptions
    colmap_matching: Dict[str, Any] = field(default_factory=dict)  # pipeline=colmap: FeatureMatchingOptions
    seed: Optional[int] = 0
    num_threads: Optional[int] = None  # COLMAP threads (default: all cores, at most 16)
    device: Optional[str] = None  # extraction/matching device (default: cuda when available)
    output: Optional[str] = None  # default: outputs/reconstruction/<scene>/<extractor>
    overwrite: bool = False  # redo extraction and matching
    verbose: bool = False  # COLMAP's log on stderr


KEYS = tuple(SceneConfig.__dataclass_fields__)


# --------------------------------------------------------------------------- config


def _check_keys(cfg: DictConfig, where: str) -> None:
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} in {where}; valid keys: {sorted(KEYS)}")


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return cfg


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """SceneConfig <- YAML file <- ``key=value`` overrides, validated; returns a plain dict."""
    cfg = OmegaConf.structured(SceneConfig)
    layers: list[tuple[DictConfig, str]] = []
    if path is not None:
        path = Path(path)
        layers.append((_load_yaml(path), str(path)))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must be key=value, got {bad}")
    try:
        layers.append((OmegaConf.from_dotlist(list(overrides)), "the overrides"))
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid override in {list(overrides)}: {error.msg.splitlines()[0]}") from None
    for layer, where in layers:
        _check_keys(layer, where)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None) or ""
            raise ConfigError(f"{where}: invalid value for key '{key}': {error.msg.splitlines()[0]}") from None
    plain = OmegaConf.to_container(cfg, resolve=True)
    validate(plain)
    return plain


def validate(cfg: dict[str, Any]) -> None:
    """Check values (everything a run needs, before it starts); raise ConfigError naming the key."""
    from ... import reconstruction as R
    from ...extractors.confs import get_conf
    from ...match_features import get_conf as get_matcher_conf
    from . import colmap

    if not cfg.get("images"):
        raise ConfigError("config key 'images' (image folder, relative to data_root) is required")
    for key, valid in (("pairs", PAIR_MODES), ("intrinsics", INTRINSICS), ("pipeline", PIPELINES)):
        if cfg[key] not in valid:
            raise ConfigError(f"{key} must be one of {list(valid)}, got {cfg[key]!r}")
    if cfg["pairs"] == "sequential" and cfg["window"] < 1:
        raise ConfigError(f"window must be a positive integer, got {cfg['window']!r}")
    if cfg["intrinsics"] == "gt" and not cfg["gt_cameras"]:
        raise ConfigError("intrinsics=gt needs gt_cameras (a folder of .camera files)")
    if str(cfg["camera_mode"]).upper() not in R.CAMERA_MODES:
        raise ConfigError(f"camera_mode must be one of {list(R.CAMERA_MODES)}, got {cfg['camera_mode']!r}")
    if cfg["resize_max"] is not None and cfg["resize_max"] <= 0:
        raise ConfigError(f"resize_max must be a positive integer or null, got {cfg['resize_max']!r}")
    try:
        R.mapping_options(cfg["mapper"], fixed=cfg["intrinsics"] == "gt", seed=None)
        if cfg["pipeline"] == COLMAP:
            colmap.extraction_options(cfg["colmap_extraction"], None)
            colmap.matching_options(cfg["colmap_matching"], None)
            colmap.two_view_options(cfg["verification"])
        else:
            R.verification_options(cfg["verification"])
    except R.ReconstructionError as error:
        raise ConfigError(str(error).replace("unknown mapper option '", "unknown config key 'mapper.")
                          .replace("unknown verification option '", "unknown config key 'verification.")) from None
    if cfg["device"] is not None:
        from ...common import pick_device

        pick_device(cfg["device"])  # 'cuda' without CUDA: a config error now, not a crash later
    conf = get_conf(cfg["extractor"])
    if cfg["matcher"] is not None:
        get_matcher_conf(cfg["matcher"])
    for name, options in cfg["extractor_options"].items():
        if not isinstance(options, dict):
            raise ConfigError(f"extractor_options.{name} must be a mapping of model options, got {options!r} "
                              f"(write extractor_options.{name}.<option>=<value>)")
    options = cfg["extractor_options"].get(cfg["extractor"], {})
    if options:
        from ...extractors.base import get_extractor

        valid = set(get_extractor(conf["model"]["name"]).default_conf)
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} in extractor_options.{cfg['extractor']}; "
                              f"valid: {sorted(valid)}")
    if cfg["pipeline"] != COLMAP:
        _check_checkpoint(cfg)


def _check_checkpoint(cfg: dict[str, Any]) -> None:
    """An unknown checkpoint asset name is a config error (missing weights are checked by run)."""
    from ...assets import AssetError, load_manifest
    from ...extractors.base import get_extractor

    model = extraction_conf(cfg)["model"]
    merged = {**get_extractor(model["name"]).default_conf, **model}
    if "checkpoint" in merged and merged.get("weights") is None:
        try:
            load_manifest(merged["checkpoint"])
        except AssetError as error:
            raise ConfigError(f"extractor_options.{cfg['extractor']}.checkpoint: {error}") from None


def matcher_name(cfg: dict[str, Any]) -> str:
    """The matcher conf of a config: ``matcher``, else the extractor's default."""
    return cfg["matcher"] or default_matcher(cfg["extractor"])


def data_root(cfg: dict[str, Any]) -> Path:
    """``data_root``, else ``$SEKD_PLUGIN_SCENES``, else ``<repo>/../shared/scenes``; must exist."""
    if cfg.get("data_root"):
        root, origin = Path(cfg["data_root"]).expanduser(), "data_root"
    elif os.environ.get(SCENES_ENV):
        root, origin = Path(os.environ[SCENES_ENV]).expanduser(), f"${SCENES_ENV}"
    else:
        root, origin = (REPO_ROOT / ".." / "shared" / "scenes").resolve(), "the default"
    if not root.is_dir():
        raise InputError(f"scenes folder not found: {root} (from {origin}); set data_root=... or ${SCENES_ENV}")
    return root


def _resolve(root: Path, rel: str | None, what: str, must_be_dir: bool = True) -> Path | None:
    if rel is None:
        return None
    path = Path(rel).expanduser()
    path = path if path.is_absolute() else root / path
    if must_be_dir and not path.is_dir():
        raise InputError(f"{what} folder not found: {path}")
    if not must_be_dir and not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path


def extraction_conf(cfg: dict[str, Any]) -> dict[str, Any]:
    """The extractor's named conf with the config's model options and resize override."""
    from ...extractors.confs import get_conf

    conf = get_conf(cfg["extractor"])
    conf["model"].update(cfg["extractor_options"].get(cfg["extractor"], {}))
    if cfg["resize_max"] is not None:
        conf.setdefault("preprocessing", {})["resize_max"] = cfg["resize_max"]
    return conf


def _short_hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- run


@dataclass
class Scene:
    """The resolved inputs of a config."""

    name: str
    image_dir: Path
    gt_dir: Path | None
    names: list[str]
    output: Path


def resolve_scene(cfg: dict[str, Any], label: str | None = None) -> Scene:
    from ...io.images import list_images, parse_image_list

    root = data_root(cfg)
    image_dir = _resolve(root, cfg["images"], "image")
    gt_dir = _resolve(root, cfg["gt_cameras"], "GT camera")
    image_list_path = _resolve(root, cfg["image_list"], "image list", must_be_dir=False)
    names = parse_image_list(image_list_path) if image_list_path else list_images(image_dir)
    if not names:
        raise InputError(f"no images in {image_dir}")
    scene = cfg["scene"] or image_dir.parent.name
    label = label or ("colmap-sift" if cfg["pipeline"] == COLMAP else cfg["extractor"])
    output = Path(cfg["output"] or Path("outputs", "reconstruction", scene, label))
    return Scene(scene, image_dir, gt_dir, names, output)


def extract_and_match(cfg: dict[str, Any], scene: Scene, names: Sequence[str],
                      make_pairs: Callable[[list[str]], Path]) -> dict[str, Any]:
    """Features and matches of a config (cached under ``scene.output``); used by the SfM runner
    and the pose benchmark. ``make_pairs(names)`` writes the pairs of the images whose
    extraction succeeded. Returns paths, timings, what was cached and what failed."""
    from ... import match_features
    from ...extract_features import extract
    from ...extractors.base import missing_weights_reason, weights_fingerprint

    output = scene.output
    conf = extraction_conf(cfg)
    reason = missing_weights_reason(conf["model"])
    if reason:
        raise InputError(reason)
    feat_id = {"conf": conf, "as_half": cfg["as_half"], "images": str(scene.image_dir),
               "checkpoint": weights_fingerprint(conf["model"])}
    features = output / f"feats-{cfg['extractor']}-{_short_hash(feat_id)}.h5"
    feat_meta_path = features.with_suffix(".json")
    feat_meta = {} if cfg["overwrite"] else _read_json(feat_meta_path)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    result = extract(conf, scene.image_dir, image_list=list(names), feature_path=features,
                     overwrite=cfg["overwrite"], as_half=cfg["as_half"], device=cfg["device"])
    elapsed = time.perf_counter() - start
    if result.extracted:  # plus the time of the images done by an earlier (interrupted) run
        timings["extract_s"] = elapsed + (feat_meta.get("extract_s", 0.0) if result.skipped else 0.0)
        write_json(feat_meta_path, {"conf": conf, "as_half": cfg["as_half"], "extract_s": timings["extract_s"],
                                    "ms_per_image": {**feat_meta.get("ms_per_image", {}), **result.timings}})
    else:
        timings["extract_s"] = feat_meta.get("extract_s", elapsed)
    pairs_path = make_pairs([n for n in names if n not in result.failed])
    mname = matcher_name(cfg)
    mconf = match_features.get_conf(mname)
    matches = output / f"{mconf['output']}-{features.stem}-{pairs_path.stem}.h5"
    match_meta_path = matches.with_suffix(".json")
    if cfg["overwrite"] or result.extracted:  # new features invalidate old matches
        matches.unlink(missing_ok=True)
    match_meta = _read_json(match_meta_path) if matches.exists() else {}
    start = time.perf_counter()
    counts = match_features.match_from_paths(mconf, pairs_path, matches, features, features, device=cfg["device"])
    elapsed = time.perf_counter() - start
    if counts["matched"]:
        timings["match_s"] = elapsed + (match_meta.get("match_s", 0.0) if counts["skipped"] else 0.0)
        write_json(match_meta_path, {"conf": mconf, "match_s": timings["match_s"], "pairs": counts["pairs"]})
    else:
        timings["match_s"] = match_meta.get("match_s", elapsed)
    return {"features": features, "matches": matches, "pairs": pairs_path, "timings": timings, "failed": result.failed,
            "cached": {"extract": not result.extracted, "match": counts["matched"] == 0},
            "matcher": mname, "result": result}


def _pairs(cfg: dict[str, Any], output: Path, names: Sequence[str]) -> Path:
    from ... import pairs as pairs_mod

    if cfg["pairs"] == "exhaustive":
        return pairs_mod.main(output / "pairs-exhaustive.txt", image_list=list(names))
    name = f"pairs-sequential-w{cfg['window']}{'-loop' if cfg['loop'] else ''}.txt"
    return pairs_mod.main(output / name, image_list=list(names), mode="sequential", window=cfg["window"],
                          loop=cfg["loop"])


def removed_pairs(cfg: dict[str, Any], names: Sequence[str], failed: Any) -> list[list[str]]:
    """The pairs of the config's pair mode over ``names`` that involve a failed image."""
    from ... import pairs as pairs_mod

    if not failed:
        return []
    every = (pairs_mod.exhaustive_pairs(names) if cfg["pairs"] == "exhaustive"
             else pairs_mod.sequential_pairs(names, cfg["window"], cfg["loop"]))
    return [list(p) for p in every if p[0] in failed or p[1] in failed]


def run(cfg: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """Run one configured reconstruction; returns (and writes to ``<output>/stats.json``) the stats.

    The output folder is held for the run (:func:`~sekd_plugin.common.locks.folder_lock`): a
    second run into it (another benchmark sharing ``--work``) waits for this one."""
    from ...common.locks import folder_lock

    validate(cfg)
    scene = resolve_scene(cfg, label)
    with folder_lock(scene.output, f"{scene.name}/{label or scene.output.name}"):
        return _run(cfg, label, scene)


def _run(cfg: dict[str, Any], label: str | None, scene: Scene) -> dict[str, Any]:
    from ... import reconstruction
    from ...datasets.strecha import intrinsics_from_gt, load_gt_cameras
    from ...io.h5 import get_keypoints
    from ...pairs import read_pairs
    from . import colmap
    from .metrics import evaluate_reconstruction

    output = scene.output
    all_names = list(scene.names)  # totals and GT evaluation count failed images as not registered
    gt = load_gt_cameras(scene.gt_dir, all_names, image_dir=scene.image_dir) if scene.gt_dir is not None else None
    fixed = intrinsics_from_gt(gt) if gt is not None and cfg["intrinsics"] == "gt" else None
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    if cfg["pipeline"] == COLMAP:
        names = all_names
        pair_list = None if cfg["pairs"] == "exhaustive" else read_pairs(_pairs(cfg, output, names))
        start = time.perf_counter()
        rec, sfm_stats = colmap.reconstruct(
            output / "sfm", scene.image_dir, names, pair_list, camera_mode=cfg["camera_mode"],
            camera_model=cfg["camera_model"], fixed_intrinsics=fixed, mapper_options=cfg["mapper"],
            extraction=cfg["colmap_extraction"], matching=cfg["colmap_matching"], verification=cfg["verification"],
            num_threads=cfg["num_threads"], seed=cfg["seed"], verbose=cfg["verbose"], overwrite=True)
        t = sfm_stats.pop("timings")
        timings.update(extract_s=t["extract_s"], match_s=t["match_s"], sfm_s=t["mapping_s"],
                       total_pipeline_s=time.perf_counter() - start)
        failed = sfm_stats.pop("failed_images", {})
        extractor, matcher, cached = "colmap-sift", "COLMAP SIFT matcher (ratio 0.8, distance 0.7, cross-check)", {}
        paths = {"output": str(output), "sfm": str(output / "sfm")}
    else:
        em = extract_and_match(cfg, scene, all_names, lambda names: _pairs(cfg, output, names))
        if em["failed"]:  # reconstruct the others; the failed ones count as not registered
            print(f"warning: {len(em['failed'])} image(s) left out, feature extraction failed: "
                  + "; ".join(f"{n}: {e}" for n, e in em["failed"].items()), file=sys.stderr)
        failed = em["failed"]
        names = [n for n in all_names if n not in failed]
        pairs_path = em["pairs"]
        timings.update(em["timings"])
        start = time.perf_counter()
        rec = reconstruction.main(
            output / "sfm", scene.image_dir, pairs_path, em["features"], em["matches"], camera_mode=cfg["camera_mode"],
            camera_model=cfg["camera_model"], fixed_intrinsics=fixed,
            skip_geometric_verification=cfg["skip_geometric_verification"], min_match_score=cfg["min_match_score"],
            image_list=names, mapper_options=cfg["mapper"], verbose=cfg["verbose"], num_threads=cfg["num_threads"],
            seed=cfg["seed"], overwrite=True, verification=cfg["verification"])
        timings["sfm_s"] = time.perf_counter() - start
        sfm_stats = _read_json(output / "sfm" / "stats.json")
        timings.update({f"sfm_{k}": v for k, v in sfm_stats.pop("timings", {}).items()})
        result = em["result"]
        num_kp = [n for _, _, n in result.summary]
        if not num_kp or result.skipped:
            num_kp = [len(get_keypoints(em["features"], n)) for n in names]
        sfm_stats["mean_keypoints_per_image"] = sum(num_kp) / len(num_kp)
        extractor, matcher, cached = cfg["extractor"], em["matcher"], em["cached"]
        paths = {"output": str(output), "features": str(em["features"]), "pairs": str(pairs_path),
                 "matches": str(em["matches"]), "sfm": str(output / "sfm")}
    timings["pairs_per_s"] = sfm_stats["num_pairs"] / timings["match_s"] if timings["match_s"] > 0 else None
    stats: dict[str, Any] = {
        "scene": scene.name,
        "method": label or extractor,
        "pipeline": cfg["pipeline"],
        "extractor": extractor,
        "matcher": matcher,
        "intrinsics": cfg["intrinsics"],
        "total_images": len(all_names),
        **sfm_stats,
        "failed_images": dict(failed),  # could not be read: left out, and so were their pairs
        "removed_pairs": removed_pairs(cfg, all_names, failed),
        "timings": timings,
        "cached": cached,
        "paths": paths,
        "config": cfg,
    }
    if gt is not None:
        stats["gt"] = evaluate_reconstruction(rec, scene.gt_dir, all_names)
    write_json(output / "stats.json", stats)
    return stats


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
        f"time: extract {t['extract_s']:.1f} s, match {t['match_s']:.1f} s, sfm {t['sfm_s']:.1f} s",
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
    """Load, validate and run a scene config (the CLI's body)."""
    return run(load_config(config, overrides))


def _done(stats: dict[str, Any]) -> int:
    print(format_summary(stats))
    if not stats["registered_images"] or (stats.get("gt") or {}).get("failed"):
        return 1
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
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


__all__ = ["SceneConfig", "KEYS", "SCENES_ENV", "INTRINSICS", "PAIR_MODES", "PIPELINES", "load_config", "validate",
           "data_root", "extraction_conf", "matcher_name", "resolve_scene", "extract_and_match", "run",
           "format_summary", "verification_summary", "main", "cli", "PartialFailure"]

if __name__ == "__main__":
    sys.exit(cli())
