"""Helpers around the extractor registry for callers that must decide what can run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import ConfigError, get_extractor


def missing_weights_reason(model_conf: dict[str, Any]) -> str | None:
    """Why the extractor of ``model_conf`` cannot run for lack of weights, or None if it can.

    Extractors whose (default-merged) conf has a ``checkpoint`` asset name have their
    weights resolved like the extractor does (``weights`` path, else
    ``$SEKD_PLUGIN_WEIGHTS_DIR`` / cache, never downloading). When nothing is found the
    reason reads ``"<name> skipped: weights not found at <path> (see third_party/<checkpoint>.toml)"``.
    Extractors without weights (SIFT, ORB, ...) always give None. An unknown extractor name
    or asset name raises (a configuration error, not a missing file).
    """
    if "name" not in model_conf:
        raise ConfigError("model conf needs a 'name' key (e.g. {'name': 'superpoint'})")
    name = model_conf["name"]
    cls = get_extractor(name)
    conf = {**cls.default_conf, **model_conf}
    if "checkpoint" not in conf:
        return None
    from .. import assets

    asset = assets.load_manifest(conf["checkpoint"])
    try:
        assets.resolve(asset, conf.get("weights"))
    except assets.AssetNotFoundError:
        pass
    else:
        return None
    if conf.get("weights") is not None:
        places = [Path(conf["weights"]).expanduser()]
    else:
        env = assets.DIR_ENV[asset.kind]
        places = [Path(os.environ[env]).expanduser() / asset.local_name] if os.environ.get(env) else []
        places.append(assets.cache_dir() / asset.local_name)
    where = " or ".join(str(p) for p in places)
    manifest = f"third_party/{asset.manifest.name}" if asset.manifest else f"third_party/{asset.name}.toml"
    return f"{name} skipped: weights not found at {where} (see {manifest}; get them with: {asset.fetch_command})"


def weights_fingerprint(model_conf: dict[str, Any]) -> dict[str, Any] | None:
    """Which checkpoint file ``model_conf`` resolves to, with its size and mtime, so caches
    of features notice a replaced file (a retrained ``model.pth``, another weights folder).
    None for extractors without weights or when the weights are missing."""
    cls = get_extractor(model_conf["name"])
    conf = {**cls.default_conf, **model_conf}
    if "checkpoint" not in conf:
        return None
    from .. import assets

    try:
        path = assets.resolve(conf["checkpoint"], conf.get("weights")).resolve()
    except assets.AssetNotFoundError:
        return None
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
