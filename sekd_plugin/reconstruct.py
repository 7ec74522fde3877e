"""Config-driven reconstruction of one scene: extract -> pairs -> match -> SfM -> GT evaluation.

    python -m sekd_plugin.reconstruct benchmark_configs/reconstruction/fountain-P11.yaml \\
        extractor=sekd [matcher=mutual_nn] [intrinsics=gt] [resize_max=1024] \\
        [data_root=/path/to/scenes] [output=DIR] [mapper.ba_global_max_num_iterations=20]

The YAML file and the ``key=value`` overrides (OmegaConf dot-list syntax) set the keys of
:data:`DEFAULTS`; an unknown key is an error listing the valid ones. Paths of ``images``,
``gt_cameras`` and ``image_list`` are relative to ``data_root`` (default: ``$SEKD_PLUGIN_SCENES``,
else ``../shared/scenes`` next to the repository). Outputs, under ``output`` (default
``outputs/reconstruction/<scene>/<extractor>``):

* ``feats-<extractor>-<hash>.h5`` (+ ``.json`` with the exact extraction conf and time),
  ``pairs-<mode>.txt``, ``matches-<matcher>-<features stem>-<pairs stem>.h5`` (+ ``.json``):
  reused by the next run unless ``overwrite=true`` (the hash changes with the conf);
* ``sfm/``: the COLMAP database, the largest model (``cameras.bin``, ``images.bin``,
  ``points3D.bin``...), every model under ``sfm/models/<i>`` and ``sfm/stats.json``;
* ``stats.json``: config, model statistics, GT errors (when ``gt_cameras`` is set) and the
  time of each stage (extract, match, sfm; a reused stage reports the time it took when run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .extractors.base import ConfigError
from .extractors.base import weights_fingerprint

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENES_ENV = "SEKD_PLUGIN_SCENES"
INTRINSICS = ("self-calibrated", "gt")
PAIR_MODES = ("exhaustive", "sequential")

DEFAULTS: dict[str, Any] = {
    "scene": None,  # name, used for the default output folder
    "data_root": None,  # default: $SEKD_PLUGIN_SCENES, else <repo>/../shared/scenes
    "images": None,  # image folder, relative to data_root (or absolute)
    "gt_cameras": None,  # folder of Strecha .camera files, relative to data_root, or null
    "image_list": None,  # optional text file of image names (relative to data_root)
    "pairs": "exhaustive",  # exhaustive | sequential
    "window": 5,  # sequential: pair each image with the next N
    "loop": False,  # sequential: also pair the end of the sequence with its start
    "extractor": "sekd",  # any name of sekd_plugin.extractors.confs
    "extractor_options": {},  # per conf name, model overrides: {sekd: {max_keypoints: 2000}}
    "resize_max": None,  # override of the conf's preprocessing.resize_max
    "as_half": False,  # store float16 features (loses keypoint precision: off for SfM)
    "matcher": "mutual_nn",  # mutual_nn | nn-ratio | nn-distance
    "min_match_score": None,
    "camera_mode": "AUTO",  # AUTO | SINGLE | PER_FOLDER | PER_IMAGE
    "camera_model": "SIMPLE_RADIAL",  # when self-calibrated
    "intrinsics": "self-calibrated",  # self-calibrated | gt (PINHOLE fixed to the GT K)
    "skip_geometric_verification": False,
    "mapper": {},  # IncrementalPipelineOptions overrides (nested: mapper.mapper.init_min_num_inliers)
    "seed": 0,
    "num_threads": None,  # COLMAP threads (default: all cores, at most 16)
    "device": None,  # extraction/matching device (default: cuda when available)
    "output": None,  # default: outputs/reconstruction/<scene>/<extractor>
    "overwrite": False,  # redo extraction and matching
    "verbose": False,  # COLMAP's log on stderr
}
FREE_FORM = ("extractor_options", "mapper")  # keys whose sub-keys are not checked here


# --------------------------------------------------------------------------- config


def _check_keys(cfg: DictConfig | dict, where: str) -> None:
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} in {where}; valid keys: {sorted(DEFAULTS)}")


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """DEFAULTS <- YAML file <- ``key=value`` overrides, validated; returns a plain dict."""
    layers = [OmegaConf.create(deepcopy(DEFAULTS))]
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            file_cfg = OmegaConf.load(path)
            if not isinstance(file_cfg, DictConfig):
                raise ConfigError(f"{path} must hold a mapping of config keys")
            _check_keys(file_cfg, str(path))
            layers.append(file_cfg)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must be key=value, got {bad}")
        cli_cfg = OmegaConf.from_dotlist(list(overrides))
        _check_keys(cli_cfg, "the overrides")
        layers.append(cli_cfg)
        cfg = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid config: {error}") from None
    validate(cfg)
    return cfg


def validate(cfg: dict[str, Any]) -> None:
    """Check values; raise ConfigError naming the key."""
    from .extractors.confs import get_conf
    from .match_features import get_conf as get_matcher_conf
    from .reconstruction import CAMERA_MODES

    if not cfg.get("images"):
        raise ConfigError("config key 'images' (image folder, relative to data_root) is required")
    if cfg["pairs"] not in PAIR_MODES:
        raise ConfigError(f"pairs must be one of {list(PAIR_MODES)}, got {cfg['pairs']!r}")
    if cfg["pairs"] == "sequential" and (not isinstance(cfg["window"], int) or cfg["window"] < 1):
        raise ConfigError(f"window must be a positive integer, got {cfg['window']!r}")
    if cfg["intrinsics"] not in INTRINSICS:
        raise ConfigError(f"intrinsics must be one of {list(INTRINSICS)}, got {cfg['intrinsics']!r}")
    if cfg["intrinsics"] == "gt" and not cfg["gt_cameras"]:
        raise ConfigError("intrinsics=gt needs gt_cameras (a folder of .camera files)")
    if str(cfg["camera_mode"]).upper() not in CAMERA_MODES:
        raise ConfigError(f"camera_mode must be one of {list(CAMERA_MODES)}, got {cfg['camera_mode']!r}")
    if cfg["resize_max"] is not None and (not isinstance(cfg["resize_max"], int) or cfg["resize_max"] <= 0):
        raise ConfigError(f"resize_max must be a positive integer or null, got {cfg['resize_max']!r}")
    for key in FREE_FORM:
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{key} must be a mapping, got {cfg[key]!r}")
    conf = get_conf(cfg["extractor"])
    get_matcher_conf(cfg["matcher"])
    for name, options in cfg["extractor_options"].items():
        if not isinstance(options, dict):
            raise ConfigError(f"extractor_options.{name} must be a mapping of model options, got {options!r} "
                              f"(write extractor_options.{name}.<option>=<value>)")
    options = cfg["extractor_options"].get(cfg["extractor"], {})
    if options:
        from .extractors.base import get_extractor

        valid = set(get_extractor(conf["model"]["name"]).default_conf)
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} in extractor_options.{cfg['extractor']}; "
                              f"valid: {sorted(valid)}")


def data_root(cfg: dict[str, Any]) -> Path:
    """``data_root``, else ``$SEKD_PLUGIN_SCENES``, else ``<repo>/../shared/scenes``; must exist."""
    if cfg.get("data_root"):
        root, origin = Path(cfg["data_root"]).expanduser(), "data_root"
    elif os.environ.get(SCENES_ENV):
        root, origin = Path(os.environ[SCENES_ENV]).expanduser(), f"${SCENES_ENV}"
    else:
        root, origin = (REPO_ROOT / ".." / "shared" / "scenes").resolve(), "the default"
    if not root.is_dir():
        raise FileNotFoundError(
            f"scenes folder not found: {root} (from {origin}); set data_root=... or ${SCENES_ENV}")
    return root


def _resolve(root: Path, rel: str | None, what: str, must_be_dir: bool = True) -> Path | None:
    if rel is None:
        return None
    path = Path(rel).expanduser()
    path = path if path.is_absolute() else root / path
    if must_be_dir and not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    if not must_be_dir and not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def extraction_conf(cfg: dict[str, Any]) -> dict[str, Any]:
    """The extractor's named conf with the config's model options and resize override."""
    from .extractors.confs import get_conf

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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from .common import write_json

    write_json(path, data)


# --------------------------------------------------------------------------- run


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configured reconstruction; returns (and writes to ``<output>/stats.json``) the stats."""
    from . import match_features, pairs as pairs_mod, reconstruction
    from .eval_sfm import evaluate_reconstruction, intrinsics_from_gt, load_gt_cameras
    from .extract_features import extract
    from .io.images import list_images, parse_image_list

    validate(cfg)
    root = data_root(cfg)
    image_dir = _resolve(root, cfg["images"], "image")
    gt_dir = _resolve(root, cfg["gt_cameras"], "GT camera")
    image_list_path = _resolve(root, cfg["image_list"], "image list", must_be_dir=False)
    names = parse_image_list(image_list_path) if image_list_path else list_images(image_dir)
    if not names:
        raise FileNotFoundError(f"no images in {image_dir}")
    scene = cfg["scene"] or image_dir.parent.name
    output = Path(cfg["output"] or Path("outputs", "reconstruction", scene, cfg["extractor"]))
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    cached: dict[str, bool] = {}

    # extract
    conf = extraction_conf(cfg)
    feat_id = {"conf": conf, "as_half": cfg["as_half"], "images": str(image_dir),
               "checkpoint": weights_fingerprint(conf["model"])}
    features = output / f"feats-{cfg['extractor']}-{_short_hash(feat_id)}.h5"
    feat_meta_path = features.with_suffix(".json")
    feat_meta = {} if cfg["overwrite"] else _read_json(feat_meta_path)
    start = time.perf_counter()
    result = extract(conf, image_dir, image_list=names, feature_path=features, overwrite=cfg["overwrite"],
                     as_half=cfg["as_half"], device=cfg["device"])
    if result.failed:  # reconstruct the others; the failed ones count as not registered
        print(f"warning: {len(result.failed)} image(s) left out, feature extraction failed: "
              + "; ".join(f"{n}: {e}" for n, e in result.failed.items()), file=sys.stderr)
    all_names = list(names)  # totals and GT evaluation count the failed images as not registered
    names = [n for n in names if n not in result.failed]
    elapsed = time.perf_counter() - start
    cached["extract"] = not result.extracted
    if result.extracted:  # plus the time of the images done by an earlier (interrupted) run
        timings["extract_s"] = elapsed + (feat_meta.get("extract_s", 0.0) if result.skipped else 0.0)
    else:
        timings["extract_s"] = feat_meta.get("extract_s", elapsed)
    if result.extracted:
        feat_meta = {"conf": conf, "as_half": cfg["as_half"], "extract_s": timings["extract_s"],
                     "ms_per_image": {**feat_meta.get("ms_per_image", {}), **result.timings}}
        _write_json(feat_meta_path, feat_meta)

    # pairs
    if cfg["pairs"] == "exhaustive":
        pairs_path = pairs_mod.main(output / "pairs-exhaustive.txt", image_list=names)
    else:
        pairs_path = pairs_mod.main(output / f"pairs-sequential-w{cfg['window']}{'-loop' if cfg['loop'] else ''}.txt",
                                    image_list=names, mode="sequential", window=cfg["window"], loop=cfg["loop"])

    # match
    mconf = match_features.get_conf(cfg["matcher"])
    matches = output / f"{mconf['output']}-{features.stem}-{pairs_path.stem}.h5"
    match_meta_path = matches.with_suffix(".json")
    if cfg["overwrite"] or result.extracted:  # new features invalidate old matches
        matches.unlink(missing_ok=True)
    match_meta = _read_json(match_meta_path) if matches.exists() else {}
    start = time.perf_counter()
    counts = match_features.match_from_paths(mconf, pairs_path, matches, features, features, device=cfg["device"])
    elapsed = time.perf_counter() - start
    cached["match"] = counts["matched"] == 0
    if counts["matched"]:
        timings["match_s"] = elapsed + (match_meta.get("match_s", 0.0) if counts["skipped"] else 0.0)
    else:
        timings["match_s"] = match_meta.get("match_s", elapsed)
    if counts["matched"]:
        _write_json(match_meta_path, {"conf": mconf, "match_s": timings["match_s"], "pairs": counts["pairs"]})

    # sfm
    fixed = None
    gt = None
    if gt_dir is not None:
        gt = load_gt_cameras(gt_dir, names)
        if cfg["intrinsics"] == "gt":
            fixed = intrinsics_from_gt(gt)
    start = time.perf_counter()
    rec = reconstruction.main(
        output / "sfm", image_dir, pairs_path, features, matches, camera_mode=cfg["camera_mode"],
        camera_model=cfg["camera_model"], fixed_intrinsics=fixed,
        skip_geometric_verification=cfg["skip_geometric_verification"], min_match_score=cfg["min_match_score"],
        image_list=names, mapper_options=cfg["mapper"], verbose=cfg["verbose"], num_threads=cfg["num_threads"],
        seed=cfg["seed"])
    timings["sfm_s"] = time.perf_counter() - start
    sfm_stats = _read_json(output / "sfm" / "stats.json")
    timings.update({f"sfm_{k}": v for k, v in sfm_stats.pop("timings", {}).items()})

    num_kp = [n for _, _, n in result.summary]
    if not num_kp or result.skipped:
        from .io.h5 import get_keypoints

        num_kp = [len(get_keypoints(features, n)) for n in names]
    stats: dict[str, Any] = {
        "scene": scene,
        "extractor": cfg["extractor"],
        "matcher": cfg["matcher"],
        "intrinsics": cfg["intrinsics"],
        "total_images": len(all_names),
        "mean_keypoints_per_image": sum(num_kp) / len(num_kp),
        **sfm_stats,
        "timings": timings,
        "cached": cached,
        "paths": {"output": str(output), "features": str(features), "pairs": str(pairs_path),
                  "matches": str(matches), "sfm": str(output / "sfm")},
        "config": cfg,
    }
    if gt is not None:
        evaluation = evaluate_reconstruction(rec, gt_dir, all_names)
        stats["gt"] = evaluation
    _write_json(output / "stats.json", stats)
    return stats


def format_summary(stats: dict[str, Any]) -> str:
    """A few human-readable lines of a :func:`run` result."""
    t = stats["timings"]
    lines = [
        f"{stats['scene']} / {stats['extractor']} ({stats['matcher']}, {stats['intrinsics']}): "
        f"{stats['registered_images']}/{stats['total_images']} images registered, "
        f"{stats['num_points3D']} points, track length {stats['mean_track_length'] or 0:.2f}, "
        f"reprojection error {stats['mean_reprojection_error_px'] or 0:.3f} px, "
        f"{stats['num_verified_pairs']}/{stats['num_pairs']} verified pairs",
        f"time: extract {t['extract_s']:.1f} s, match {t['match_s']:.1f} s, sfm {t['sfm_s']:.1f} s",
    ]
    gt = stats.get("gt")
    if gt and gt["median_center_error_m"] is not None:
        lines.append(
            f"GT: median centre error {100 * gt['median_center_error_m']:.2f} cm, "
            f"within 1/3/10 cm {gt['pct_center_within_1cm']:.0f}/{gt['pct_center_within_3cm']:.0f}/"
            f"{gt['pct_center_within_10cm']:.0f} %, median rotation error {gt['median_rotation_error_deg']:.3f} deg")
    lines.append(f"output: {stats['paths']['output']}")
    return "\n".join(lines)


def cli(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nkeys (default):")
        for key, value in DEFAULTS.items():
            print(f"  {key} ({value!r})")
        return 0 if argv else 2
    config, overrides = (argv[0], argv[1:]) if "=" not in argv[0] else (None, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stats = run(load_config(config, overrides))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: features and matches written so far are kept", file=sys.stderr)
        return 130
    print(format_summary(stats))
    return 0 if stats["registered_images"] else 1


if __name__ == "__main__":
    sys.exit(cli())
