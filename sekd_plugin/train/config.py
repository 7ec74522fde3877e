"""Training configuration: an OmegaConf structured config with documented defaults.

The defaults are the paper's schedule (``benchmark_configs/train/paper.yaml`` spells them out);
``benchmark_configs/train/cpu-small.yaml`` is a tiny variant for a laptop CPU. A config is
built from the defaults, then an optional YAML file, then ``key=value`` overrides (a dotlist);
any key that is not part of the schema is refused with the list of valid keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class TrainConfigError(ValueError):
    """Invalid training configuration (the message is meant for the command line)."""


@dataclass
class DataConf:
    max_images: Optional[int] = None  # cap on training images (seeded random pick); None = all
    max_side: Optional[int] = None  # downscale images whose longer side exceeds this (INTER_AREA)
    crop_size: int = 512  # square training crops (multiple of 4), zero-padded when the image is smaller
    context: float = 1.5  # crops are cut with this much context so warped views have fewer empty borders
    sub_set: int = 5  # round r trains on images[r % sub_set :: sub_set]
    val_images: int = 16  # held-out images for validation (never trained on)
    cache: bool = False  # keep decoded gray images in memory
    num_workers: int = 0


@dataclass
class WarpConf:
    degrees: float = 40.0  # rotation +-degrees
    translate: float = 0.04  # translation +- fraction of the image size
    scale: List[float] = field(default_factory=lambda: [0.7, 1.4])
    shear: float = 40.0  # x-shear +-degrees (torchvision RandomAffine convention)
    perspective: float = 0.0  # 0 = affine; > 0 adds a random projective part of this strength
    brightness: List[float] = field(default_factory=lambda: [0.6, 1.4])
    contrast: List[float] = field(default_factory=lambda: [0.6, 1.4])


def _pair_warp() -> WarpConf:
    # the release's pair generator (datasets/local_feature_pair.py) uses milder warps
    return WarpConf(degrees=20.0, scale=[0.8, 1.2], shear=20.0)


@dataclass
class DetectConf:
    """Step 1: keypoints from the detector with affine adaptation."""

    num_refs: int = 12
    ref_border: int = 28  # border of every warped copy that is ignored
    nms_radius: int = 3
    threshold: float = 0.46
    max_keypoints: int = 2000
    border: int = 3  # keypoints this close to the image edge are dropped
    random_keypoints: int = 1000  # per image when the round starts from random keypoints
    ref_chunk: int = 12  # references run through the network together (memory bound)


@dataclass
class ReliabilityConf:
    """Step 3: keypoints from descriptor reliability."""

    num_refs: int = 12
    radius: int = 3  # neighbourhood of (2r+1)^2 cells ...
    stride: int = 2  # ... spaced this many pixels apart
    eps: float = 0.03  # ratio = distinctiveness / (repeatability + eps)
    use_descriptor: bool = True  # the 1/4-resolution descriptor (upsampled)
    use_low_level: bool = True  # the full-resolution 32-channel feature u0
    # "full": the descriptor term is evaluated at every pixel of the upsampled map (the release);
    # "coarse": at the 1/4-resolution cell centres, its ratio map then upsampled (16x cheaper)
    desc_resolution: str = "full"
    # where the 7x7 neighbourhood lies: "reference": on the reference's pixel grid around the
    # correspondence, each neighbour sampled bilinearly (the release); "target": on the target's
    # grid, read from the reference features warped into the target once (several times
    # cheaper on CPU; the neighbourhood is the warp's affine image of the release's)
    neighbours: str = "reference"
    nms_radius: int = 3
    threshold: float = 0.85
    max_keypoints: int = 2000
    border: int = 12  # 4 NMS radii, as the release
    ref_chunk: int = 4  # references processed together (memory bound)


@dataclass
class OptimConf:
    lr: float = 1e-4
    weight_decay: float = 1e-8
    patience: int = 1  # ReduceLROnPlateau on the epoch loss
    batch_size: int = 2


@dataclass
class ScheduleConf:
    rounds: int = 5
    epochs_descriptor: int = 10
    epochs_detector: int = 10
    # round 0: "auto" = random keypoints, or the detector when --init-weights is given;
    # "random" / "detector" force one; "skip" skips steps 1-2 in round 0 (the release)
    first_round: str = "auto"
    max_batches_per_epoch: Optional[int] = None  # cut epochs short (smoke runs)


@dataclass
class LossConf:
    triplet: str = "ratio_test"  # or "margin" (HardNet)
    ratio_threshold: float = 0.85
    margin: float = 1.0
    detector_preserve: float = 1.0  # step 2: weight of 0.5 * MSE(logits, frozen logits)
    detector_preserve_first_round: float = 0.0  # the release's weight for round 0
    focal_gamma: float = 1.0
    repeatability: float = 1.0  # step 4: symmetric KL weight
    descriptor_preserve: float = 0.1  # step 4: weight of 0.5 * MSE(desc, frozen desc)


@dataclass
class ValConf:
    height: int = 240
    width: int = 320
    seed: int = 0
    corner_shift: float = 0.15  # random homographies: corners move up to this fraction of the size
    degrees: float = 20.0
    nms_radius: int = 4
    threshold: float = 0.0  # fixed budget: the strongest max_keypoints NMS peaks
    max_keypoints: int = 500
    pixel_threshold: float = 3.0


@dataclass
class TrainConfig:
    images: List[str] = field(default_factory=list)  # set by --images
    init_weights: Optional[str] = None  # set by --init-weights
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConf = field(default_factory=DataConf)
    ref_warp: WarpConf = field(default_factory=WarpConf)  # references of steps 1 and 3
    pair_warp: WarpConf = field(default_factory=_pair_warp)  # training pairs of steps 2 and 4
    detect: DetectConf = field(default_factory=DetectConf)
    reliability: ReliabilityConf = field(default_factory=ReliabilityConf)
    optim: OptimConf = field(default_factory=OptimConf)
    schedule: ScheduleConf = field(default_factory=ScheduleConf)
    loss: LossConf = field(default_factory=LossConf)
    val: ValConf = field(default_factory=ValConf)


# keys that may differ when a run is resumed (they do not change the schedule)
RESUME_MUTABLE = {"device", "data.num_workers", "data.cache"}


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        items = node.items_ex(resolve=False) if hasattr(node, "items_ex") else node.items()
        for k, v in items:
            name = f"{prefix}{k}"
            if isinstance(v, DictConfig):
                keys.extend(_flat_keys(v, name + "."))
            else:
                keys.append(name)
    return keys


def valid_keys() -> list[str]:
    return _flat_keys(OmegaConf.structured(TrainConfig))


def _check_keys(keys: list[str], source: str) -> None:
    valid = set(valid_keys())
    sections = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    unknown = [k for k in keys if k not in valid and k not in sections]
    if unknown:
        raise TrainConfigError(
            f"unknown config key(s) {unknown} in {source}; valid keys: {', '.join(sorted(valid))}"
        )


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: DictConfig | None = None
) -> DictConfig:
    """Defaults (or ``base``) < YAML file < dotlist overrides.

    Unknown keys and ill-typed values raise :class:`TrainConfigError`.
    """
    conf = OmegaConf.structured(TrainConfig) if base is None else base.copy()
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"config file not found: {path}")
        try:
            file_conf = OmegaConf.load(path)
        except Exception as e:  # noqa: BLE001 - YAML errors of any kind
            raise TrainConfigError(f"{path}: not a readable YAML config ({e})") from None
        _check_keys(_flat_keys(file_conf), str(path))
        layers.append(file_conf)
    overrides = list(overrides or [])
    for item in overrides:
        if "=" not in item:
            raise TrainConfigError(f"override '{item}' is not of the form key=value")
    if overrides:
        _check_keys([o.split("=", 1)[0].strip() for o in overrides], "overrides")
        try:
            layers.append(OmegaConf.from_dotlist(overrides))
        except OmegaConfBaseException as e:
            raise TrainConfigError(f"bad override: {e}") from None
    try:
        conf = OmegaConf.merge(conf, *layers)
    except OmegaConfBaseException as e:
        raise TrainConfigError(f"invalid config value: {str(e).splitlines()[0]}") from None
    validate(conf)
    return conf


def validate(conf: DictConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise TrainConfigError(msg)

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
    need(conf.reliability.desc_resolution in ("full", "coarse"), "reliability.desc_resolution must be full or coarse")
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
        need(len(w.brightness) == 2 and len(w.contrast) == 2, f"{name}.brightness/contrast must be [min, max]")


def to_yaml(conf: DictConfig) -> str:
    return OmegaConf.to_yaml(conf)


def from_yaml(text: str) -> DictConfig:
    conf = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(text))
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
