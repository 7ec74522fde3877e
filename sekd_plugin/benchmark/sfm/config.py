"""The scene config of every SfM-family benchmark: keys, loading, validation, paths.

A scene config (``benchmark_configs/reconstruction/*.yaml``) and ``key=value`` overrides
(OmegaConf dot-list syntax) set the keys of :class:`SceneConfig` (an OmegaConf structured config
in struct mode); an unknown key (the ``mapper.*``, ``verification.*`` and ``extractor_options.*``
keys included), a value of the wrong type or a YAML syntax error is one error line naming the
file and key, before any work starts. Paths of ``images``, ``gt_cameras`` and ``image_list`` are
relative to ``data_root`` (default: ``$SEKD_PLUGIN_SCENES``, else ``../shared/scenes`` next to the
repository). The pipeline's own options are checked by its :mod:`.pipelines` entry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ...common import ConfigError, InputError
from ...common.conf_layers import check_layer, load_text_guarded, resolve
from ..methods import COLMAP, default_matcher

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
        cfg = load_text_guarded(lambda: OmegaConf.load(path), str(path))
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


def _shown(overrides: Sequence[str], width: int = 80) -> list[str]:
    """The overrides as named in an error line (each cut to ``width`` characters)."""
    return [o if len(o) <= width else o[: width - 3] + "..." for o in overrides]


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
        layers.append((load_text_guarded(lambda: OmegaConf.from_dotlist(list(overrides)), "the overrides"),
                       "the overrides"))
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid override in {_shown(overrides)}: {error.msg.splitlines()[0]}") from None
    except yaml.YAMLError as error:  # a value OmegaConf parses as YAML
        raise ConfigError(f"invalid override value in {_shown(overrides)}: {str(error).splitlines()[0]}") from None
    for layer, where in layers:
        _check_keys(layer, where)
        check_layer(layer, where)  # depth and resolvers (no ${oc.env:...} value into the results)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", None) or ""
            raise ConfigError(f"{where}: invalid value for key '{key}': {error.msg.splitlines()[0]}") from None
    plain = resolve(cfg, [(layer, where) for layer, where in layers if len(layer)])  # a missing or circular interpolation: one line naming the key
    validate(plain)
    return plain


def validate(cfg: dict[str, Any]) -> None:
    """Check values (everything a run needs, before it starts); raise ConfigError naming the key."""
    from ... import reconstruction as R
    from ...extractors.confs import get_conf
    from ...match_features import get_conf as get_matcher_conf
    from .pipelines import pipeline_of

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
    from ...io.colmap_model import camera_num_params

    if camera_num_params(cfg["camera_model"]) is None:
        raise ConfigError(f"camera_model must be a COLMAP camera model (e.g. SIMPLE_RADIAL), got {cfg['camera_model']!r}")
    if cfg["resize_max"] is not None and cfg["resize_max"] <= 0:
        raise ConfigError(f"resize_max must be a positive integer or null, got {cfg['resize_max']!r}")
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
    try:
        R.mapping_options(cfg["mapper"], fixed=cfg["intrinsics"] == "gt", seed=None)
        pipeline_of(cfg).validate(cfg)
    except R.ReconstructionError as error:
        raise ConfigError(str(error).replace("unknown mapper option '", "unknown config key 'mapper.")
                          .replace("unknown verification option '", "unknown config key 'verification.")) from None


def check_checkpoint(cfg: dict[str, Any]) -> None:
    """An unknown checkpoint asset name is a config error (missing weights are checked by run)."""
    from ...assets import AssetError, load_manifest
    from ...extractors.base import get_extractor

    model = extraction_conf(cfg)["model"]
    cls = get_extractor(model["name"])
    merged = {**cls.default_conf, **model}
    if "checkpoint" in merged and merged.get("weights") is None:
        try:
            load_manifest(cls.checkpoint_name(merged))  # e.g. alike: named after its size
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


def resolve_path(root: Path, rel: str | None, what: str, must_be_dir: bool = True) -> Path | None:
    """``rel`` under ``root`` (or absolute), which must exist; None stays None."""
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


def read_json(path: Path) -> dict[str, Any]:
    """A cache's metadata, or ``{}`` when absent or unreadable (the stage then runs again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Scene:
    """The resolved inputs of a config."""

    name: str
    image_dir: Path
    gt_dir: Path | None
    names: list[str]
    output: Path


def resolve_scene(cfg: dict[str, Any], label: str | None = None) -> Scene:
    """The scene's folders and images; ``output`` defaults to ``outputs/reconstruction/<scene>/<label>``."""
    from ...io.images import list_images, parse_image_list
    from .pipelines import pipeline_of

    root = data_root(cfg)
    image_dir = resolve_path(root, cfg["images"], "image")
    gt_dir = resolve_path(root, cfg["gt_cameras"], "GT camera")
    image_list_path = resolve_path(root, cfg["image_list"], "image list", must_be_dir=False)
    names = parse_image_list(image_list_path) if image_list_path else list_images(image_dir)
    if not names:
        raise InputError(f"no images in {image_dir}")
    scene = cfg["scene"] or image_dir.parent.name
    label = label or pipeline_of(cfg).default_label(cfg)
    output = Path(cfg["output"] or Path("outputs", "reconstruction", scene, label))
    return Scene(scene, image_dir, gt_dir, names, output)

