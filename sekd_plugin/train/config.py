"""Training configuration: an OmegaConf structured config with documented defaults.

The defaults are the paper's schedule (``benchmark_configs/train/paper.yaml`` spells them out);
``benchmark_configs/train/cpu-small.yaml`` is a tiny variant for a laptop CPU. A config is
built from the defaults, then an optional YAML file, then ``key=value`` overrides (a dotlist);
any key that is not part of the schema is refused with the list of valid keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..common.conf import check_keys
from ..common.conf_layers import flat_keys, merge, read_layers, resolve


# the schema lives in .schema; its names are part of this module's interface
from .schema import (VAL_GROUPS, WARP_PRESETS, DataConf, DetectConf, DistConf, LossConf, OptimConf,  # noqa: F401
                     ReliabilityConf, ScheduleConf, TrainConfig, TrainConfigError, ValConf, WarpConf)


# keys that may differ when a run is resumed (they do not change the schedule)
RESUME_MUTABLE = {"device", "data.num_workers", "data.cache", "data.pin_memory", "optim.compile", "val.dev_datasets",
                  "val.official_weights"}


def valid_keys() -> list[str]:
    return flat_keys(OmegaConf.structured(TrainConfig))


def _check_keys(keys: list[str], source: str) -> None:
    valid = set(valid_keys())
    sections = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    check_keys(keys, valid | sections, "config", where=source, error=TrainConfigError)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: DictConfig | None = None
) -> DictConfig:
    """Defaults (or ``base``) < YAML file < dotlist overrides, read by the package's one loader
    (:mod:`sekd_plugin.common.conf_layers`). Unknown keys and ill-typed values raise
    :class:`TrainConfigError`. Interpolations (``${oc.env:...}`` included) are resolved once, here:
    the run config records values, not the environment it was started in."""
    conf = OmegaConf.structured(TrainConfig) if base is None else base.copy()
    layers = read_layers(path, list(overrides or []), resolvers=True, error=TrainConfigError)
    for layer, where in layers:
        _check_keys(flat_keys(layer), where)
    conf = merge(conf, layers, error=TrainConfigError)
    resolve(conf, layers, error=TrainConfigError, in_place=True)
    apply_presets(conf)
    validate(conf)
    return conf


def apply_presets(conf: DictConfig) -> None:
    """Replace the warp numbers of a section whose ``preset`` names one of :data:`WARP_PRESETS`."""
    for name in ("ref_warp", "pair_warp"):
        preset = conf[name].preset
        if preset == "custom":
            continue
        if preset not in WARP_PRESETS:
            raise TrainConfigError(f"{name}.preset must be one of custom, {', '.join(WARP_PRESETS)}; got {preset!r}")
        for k, v in WARP_PRESETS[preset].items():
            conf[name][k] = v


# numeric ranges: key -> (lower bound, lower bound allowed, upper bound or None); None values
# (optional keys) are not checked. Every float must also be finite.
_POS, _NONNEG = (0, False, None), (0, True, None)
RANGES = {
    "data.max_images": (1, True, None), "data.max_side": (16, True, None), "data.num_workers": _NONNEG,
    "detect.ref_border": _NONNEG, "detect.nms_radius": _NONNEG, "detect.threshold": (0, True, 1),
    "detect.max_keypoints": (1, True, None), "detect.border": _NONNEG, "detect.random_keypoints": (1, True, None),
    "detect.ref_chunk": (1, True, None),
    "reliability.radius": (1, True, None), "reliability.stride": (1, True, None), "reliability.eps": _POS,
    "reliability.nms_radius": _NONNEG, "reliability.threshold": _NONNEG, "reliability.max_keypoints": (1, True, None),
    "reliability.border": _NONNEG, "reliability.ref_chunk": (1, True, None),
    "optim.lr": _POS, "optim.weight_decay": _NONNEG, "optim.patience": _NONNEG, "optim.warmup_steps": _NONNEG,
    "optim.min_lr_factor": (0, True, 1),
    "schedule.max_batches_per_epoch": (1, True, None),
    "loss.ratio_threshold": (0, False, 1), "loss.margin": _POS, "loss.negative_radius": _NONNEG,
    "loss.detector_preserve": _NONNEG, "loss.detector_preserve_first_round": _NONNEG, "loss.focal_gamma": _NONNEG,
    "loss.repeatability": _NONNEG, "loss.descriptor_preserve": _NONNEG,
    "val.height": (16, True, None), "val.width": (16, True, None), "val.corner_shift": _NONNEG, "val.degrees": _NONNEG,
    "val.nms_radius": _NONNEG, "val.max_keypoints": (1, True, None), "val.deploy_threshold": (0, True, 1),
    "val.pixel_threshold": _POS, "val.min_keypoints": _NONNEG,
    **{f"{w}.{k}": _NONNEG for w in ("ref_warp", "pair_warp") for k in ("degrees", "translate", "shear", "perspective")},
}


def _check_numbers(conf: DictConfig) -> None:
    """Every float finite, every :data:`RANGES` key in its range: one line naming key and value."""
    import math

    for key in valid_keys():
        v = OmegaConf.select(conf, key)
        values = list(v) if OmegaConf.is_list(v) else [v]
        for x in values:
            if isinstance(x, float) and not math.isfinite(x):
                raise TrainConfigError(f"{key}={v}: not a finite number")
        if key in RANGES and v is not None:
            lo, inclusive, hi = RANGES[key]
            if v < lo or (v == lo and not inclusive) or (hi is not None and v > hi):
                want = f"{'>=' if inclusive else '>'} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise TrainConfigError(f"{key}={v}: must be {want}")


def validate(conf: DictConfig) -> None:
    """Refuse an invalid config with one line naming the key (before anything is written)."""

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise TrainConfigError(msg)

    _check_numbers(conf)
    from .validate import setting_of

    for name in [conf.val.conf, *conf.val.report_confs]:
        try:
            setting_of(name)
        except ValueError as e:
            raise TrainConfigError(f"val.conf / val.report_confs: {e}") from None

    need(conf.data.crop_size % 4 == 0 and conf.data.crop_size >= 16, "data.crop_size must be a multiple of 4, >= 16")
    need(conf.data.context >= 1.0, "data.context must be >= 1")
    need(conf.data.sub_set >= 1, "data.sub_set must be >= 1")
    need(conf.data.val_images >= 0, "data.val_images must be >= 0")
    need(conf.val.height % 4 == 0 and conf.val.width % 4 == 0, "val.height and val.width must be multiples of 4")
    need(conf.optim.batch_size >= 1, "optim.batch_size must be >= 1")
    need(conf.schedule.rounds >= 1, "schedule.rounds must be >= 1")
    need(conf.schedule.epochs_descriptor >= 0 and conf.schedule.epochs_detector >= 0, "epochs must be >= 0")
    need(
        conf.schedule.first_round in ("auto", "random", "detector", "skip"),
        "schedule.first_round must be one of auto, random, detector, skip",
    )
    need(conf.data.crop_mode in ("inside", "pad"), "data.crop_mode must be inside or pad")
    need(conf.reliability.desc_mode in ("native", "upsampled"), "reliability.desc_mode must be native or upsampled")
    need(conf.optim.schedule in ("plateau", "cosine", "constant"), "optim.schedule must be plateau, cosine or constant")
    need(conf.optim.amp in ("none", "bf16"), "optim.amp must be none or bf16")
    need(conf.loss.frozen_bn in ("train", "eval"), "loss.frozen_bn must be train or eval")
    need(conf.detect.budget_area >= 0 and conf.reliability.budget_area >= 0, "budget_area must be >= 0")
    need(conf.val.pairs_per_group >= 1, "val.pairs_per_group must be >= 1")
    bad = [g for g in conf.val.groups if g not in VAL_GROUPS]
    need(not bad, f"val.groups: unknown group(s) {bad}; valid: {', '.join(VAL_GROUPS)}")
    need(conf.reliability.neighbours in ("reference", "target"), "reliability.neighbours must be reference or target")
    need(conf.loss.triplet in ("ratio_test", "margin"), "loss.triplet must be ratio_test or margin")
    need(conf.detect.num_refs >= 0 and conf.reliability.num_refs >= 1, "num_refs: detect >= 0, reliability >= 1")
    need(
        conf.reliability.use_descriptor or conf.reliability.use_low_level,
        "reliability: use_descriptor and use_low_level cannot both be false",
    )
    for name in ("ref_warp", "pair_warp"):
        w = conf[name]
        need(len(w.scale) == 2 and 0 < w.scale[0] <= w.scale[1], f"{name}.scale must be [min, max] > 0")
        need(
            len(w.brightness) == 2 and len(w.contrast) == 2 and len(w.saturation) == 2,
            f"{name}.brightness/contrast/saturation must be [min, max]",
        )
        need(0.0 <= w.hue <= 0.5, f"{name}.hue must be in [0, 0.5]")
        need(w.warped_views in (1, 2), f"{name}.warped_views must be 1 or 2")
        need(w.form in ("release", "legacy"), f"{name}.form must be release or legacy")
        need(0.0 <= w.strong_fraction <= 1.0, f"{name}.strong_fraction must be in [0, 1]")
        need(len(w.strong_scale) == 2 and 0 < w.strong_scale[0] <= w.strong_scale[1], f"{name}.strong_scale must be [min, max] > 0")


def to_yaml(conf: DictConfig) -> str:
    return OmegaConf.to_yaml(conf)


def from_yaml(text: str, source: str = "config.yaml") -> DictConfig:
    """A saved run config; anything unreadable is a :class:`TrainConfigError` naming ``source``."""
    try:
        data = OmegaConf.create(text)
        if not isinstance(data, DictConfig):
            raise TrainConfigError(f"{source}: not a mapping of config keys")
        _check_keys(flat_keys(data), source)
        conf = OmegaConf.merge(OmegaConf.structured(TrainConfig), data)
        if "val" in data and "conf" not in data.val:
            # saved by the trainer before val.conf existed: it measured the paper's setting only
            conf.val.conf, conf.val.report_confs = "sekd", []
    except TrainConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - YAML / schema errors of any kind
        raise TrainConfigError(f"{source}: not a readable run config ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    resolve(conf, [(data, source)], error=TrainConfigError, in_place=True)
    apply_presets(conf)
    validate(conf)
    return conf


def diff(a: DictConfig, b: DictConfig) -> list[str]:
    """Flat keys whose values differ between two configs."""
    fa = {k: OmegaConf.select(a, k) for k in valid_keys()}
    fb = {k: OmegaConf.select(b, k) for k in valid_keys()}
    return [k for k in fa if _plain(fa[k]) != _plain(fb[k])]


def _plain(v: Any) -> Any:
    if isinstance(v, (DictConfig,)) or OmegaConf.is_list(v):
        return OmegaConf.to_container(v)
    return v
