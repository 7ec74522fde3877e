"""The scene config of every SfM-family benchmark: keys, loading, validation, paths.

A scene config (``benchmark_configs/reconstruction/*.yaml``) and ``key=value`` overrides
(OmegaConf dot-list syntax) set the keys of :class:`SceneConfig` (an OmegaConf structured config
in struct mode); an unknown key (the ``mapper.*``, ``verification.*`` and ``extractor_options.*``
keys included), a value of the wrong type or a YAML syntax error is one error line naming the
file and key, before any work starts. Paths of ``images``, ``gt_cameras`` and ``image_list`` are
relative to ``data_root``: a ``data_root=`` override (relative to the working folder), else
``$SEKD_PLUGIN_SCENES``, else the config file's ``data_root`` (relative to the file's folder: the
shipped configs name the scenes of the checkout); none of them is one error line. The
extractor's and matcher's options are ``extractor_options.<conf>.<key>`` and
``matcher_options.<key>`` (the benchmarks' ``[LABEL.]model.KEY=VALUE`` / ``[LABEL.]matcher.KEY=VALUE``
become these). The pipeline's own options are checked by its :mod:`.pipelines` entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from omegaconf import OmegaConf

from ...common import ConfigError, InputError
from ...common.conf import check_keys
from ...common.conf_layers import merge, read_layers, resolve
from ..methods import COLMAP
from .confs import (Scene, check_checkpoint, extraction_conf, matcher_conf,  # noqa: F401 (the config's names)
                    matcher_name, read_json)

SCENES_ENV = "SEKD_PLUGIN_SCENES"
INTRINSICS = ("self-calibrated", "gt")
PAIR_MODES = ("exhaustive", "sequential")
PIPELINES = ("hloc", COLMAP)

@dataclass
class SceneConfig:
    scene: Optional[str] = None  # name, used for the default output folder
    data_root: Optional[str] = None  # an override, else $SEKD_PLUGIN_SCENES, else the file's (relative to it)
    images: Optional[str] = None  # image folder, relative to data_root (or absolute); required
    gt_cameras: Optional[str] = None  # folder of Strecha .camera files, relative to data_root, or null
    image_list: Optional[str] = None  # optional text file of image names (relative to data_root)
    pairs: str = "exhaustive"  # exhaustive | sequential
    window: int = 5  # sequential: pair each image with the next N
    loop: bool = False  # sequential: also pair the end of the sequence with its start
    pipeline: str = "hloc"  # hloc (our extraction + matching) | colmap (COLMAP's SIFT + matching)
    extractor: str = "sekd"  # any name of sekd_plugin.extractors.confs
    extractor_options: Dict[str, Any] = field(default_factory=dict)  # per conf name: {sekd: {max_keypoints: 2000}}
    matcher_options: Dict[str, Any] = field(default_factory=dict)  # the matcher's model options: {ratio_threshold: 0.8}
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


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """SceneConfig <- YAML file <- ``key=value`` overrides (the one loader of
    :mod:`sekd_plugin.common.conf_layers`), validated; returns a plain dict. A relative
    ``data_root`` of the file is relative to the file's folder (see :func:`data_root`)."""
    layers = read_layers(path, [str(o) for o in overrides])
    for layer, where in layers:
        check_keys(layer, KEYS, "config", where=where)
    plain = resolve(merge(OmegaConf.structured(SceneConfig), layers), layers)
    by_override = any("data_root" in layer for layer, where in layers if where == "the overrides")
    if not by_override and os.environ.get(SCENES_ENV):
        plain["data_root"] = os.environ[SCENES_ENV]
    elif not by_override and plain["data_root"] and path is not None:
        plain["data_root"] = str((Path(path).parent / Path(plain["data_root"]).expanduser()).resolve())
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
    get_conf(cfg["extractor"])
    if cfg["matcher"] is not None:
        get_matcher_conf(cfg["matcher"])
    for name, options in cfg["extractor_options"].items():
        if not isinstance(options, dict):
            raise ConfigError(f"extractor_options.{name} must be a mapping of model options, got {options!r} "
                              f"(write extractor_options.{name}.<option>=<value>)")
    extraction_conf(cfg)  # an option the extractor / matcher lacks: one line naming the valid ones
    matcher_conf(cfg)
    try:
        R.mapping_options(cfg["mapper"], fixed=cfg["intrinsics"] == "gt", seed=None)
        pipeline_of(cfg).validate(cfg)
    except R.ReconstructionError as error:
        raise ConfigError(str(error).replace("unknown mapper option '", "unknown config key 'mapper.")
                          .replace("unknown verification option '", "unknown config key 'verification.")) from None


def data_root(cfg: dict[str, Any]) -> Path:
    """The scenes folder: ``data_root`` (as :func:`load_config` chose it), else
    ``$SEKD_PLUGIN_SCENES``; it must exist. Nothing outside the config and the environment is guessed."""
    if cfg.get("data_root"):
        root, origin = Path(cfg["data_root"]).expanduser(), "data_root"
    elif os.environ.get(SCENES_ENV):
        root, origin = Path(os.environ[SCENES_ENV]).expanduser(), f"${SCENES_ENV}"
    else:
        raise InputError(f"no scenes folder: set data_root=DIR (or data_root in the config file) or ${SCENES_ENV}")
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

