"""What a validated scene config gives a pipeline: the effective extractor and matcher confs
(the named confs with the config's ``extractor_options`` / ``matcher_options``), the resolved
:class:`Scene` and the cache metadata reader. Below both :mod:`.config` and :mod:`.pipelines`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...common import ConfigError
from ..methods import default_matcher


def check_checkpoint(cfg: dict[str, Any]) -> None:
    """An unknown checkpoint asset name is a config error (missing weights are checked by run)."""
    from ...infra.assets import AssetError, load_manifest
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


def matcher_conf(cfg: dict[str, Any]) -> dict[str, Any]:
    """The matcher's named conf with the config's ``matcher_options`` (e.g. ``ratio_threshold``)."""
    from ...matchers.base import override_conf
    from ...matchers.confs import get_conf

    conf = get_conf(matcher_name(cfg))
    options = cfg.get("matcher_options") or {}
    return override_conf(conf, {"model": options}, "matcher_options") if options else conf


def extraction_conf(cfg: dict[str, Any]) -> dict[str, Any]:
    """The extractor's named conf with the config's model options (an unknown one is refused,
    naming every valid one) and resize override."""
    from ...extractors.base import override_conf
    from ...extractors.confs import get_conf

    conf = get_conf(cfg["extractor"])
    options = cfg["extractor_options"].get(cfg["extractor"]) or {}
    if options:
        conf = override_conf(conf, {"model": options}, f"extractor_options.{cfg['extractor']}", sections=("model",))
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
