"""hloc-compatible extractor base class, the registry of extractors and the weights helper.

An extractor is one module in ``sekd_plugin.extractors`` defining one subclass of
:class:`BaseExtractor` (hloc's ``BaseModel`` contract): ``default_conf``,
``required_inputs``, ``_init(conf)`` and ``_forward(data) -> dict`` returning, for a batch
of one image,

* ``keypoints``   1 x N x 2 float32, (x, y) in pixels of the input image, the centre of the
  top-left pixel is (0, 0);
* ``scores``      1 x N float32;
* ``descriptors`` 1 x D x N (float32, L2-normalised; uint8 for binary descriptors).

Extractors with weights have two conf keys, ``checkpoint`` (an asset name, see
``third_party/``) and ``weights`` (an explicit path that overrides it), and load them with
:meth:`BaseExtractor.load_checkpoint`; :func:`locate_weights` is the one lookup behind it,
also used by the benchmarks to say why a method is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..common.errors import ConfigError, ImageTooSmallError  # noqa: F401  (re-exported)
from ..common.registry import BaseModel, Registry
from ..ops.gray import rgb_to_gray


class BaseExtractor(BaseModel):
    """hloc-style extractor: ``default_conf`` merged under the user conf."""

    required_inputs: list[str] = ["image"]
    # hloc stores ``uncertainty = detection_noise * mean(scale)`` with the keypoints.
    detection_noise: float = 1.0
    # a licence users must be told about wherever the method is named (skip lines, reports)
    licence_note: str | None = None

    @classmethod
    def checkpoint_name(cls, conf: dict[str, Any]) -> str:
        """The asset a (full) conf loads; extractors whose asset follows another key override it."""
        return conf["checkpoint"]

    def load_checkpoint(self, net: nn.Module, loader: Callable[..., Any] | None = None) -> Path:
        """Load the weights named by ``conf["weights"]`` / ``conf["checkpoint"]`` into ``net``.

        ``loader(net, path, map_location="cpu")`` defaults to the safe strict loader of
        :mod:`sekd_plugin.models.checkpoint`. Returns the file that was loaded.
        """
        from ..infra import assets
        from ..models.checkpoint import load_weights

        located = assets.locate(self.checkpoint_name(self.conf), self.conf.get("weights"))
        if not located.found:
            raise assets.AssetNotFoundError(located.reason)
        (loader or load_weights)(net, located.path, map_location="cpu")
        return located.path


EXTRACTORS = Registry("extractor", BaseExtractor, {
    "sekd": "sekd_plugin.extractors.sekd",
    "sift": "sekd_plugin.extractors.sift",
    "superpoint": "sekd_plugin.extractors.superpoint",
    "d2net": "sekd_plugin.extractors.d2net",
    "alike": "sekd_plugin.extractors.alike",
    "r2d2": "sekd_plugin.extractors.r2d2",
    "orb": "sekd_plugin.extractors.opencv",
    "akaze": "sekd_plugin.extractors.opencv",
    "brisk": "sekd_plugin.extractors.opencv",
})
EXTRACTOR_MODULES = EXTRACTORS.modules  # name -> module (read-only view for callers)


def register_extractor(name: str, module: str) -> None:
    """Make ``conf["model"]["name"] == name`` load the extractor defined in ``module``."""
    EXTRACTORS.register(name, module)


def unregister_extractor(name: str) -> None:
    EXTRACTORS.modules.pop(name, None)


def get_extractor(name: str) -> type[BaseExtractor]:
    """Return the extractor class registered under ``name``."""
    return EXTRACTORS.get(name)


def load_extractor(model_conf: dict[str, Any], device: str | torch.device = "cpu") -> BaseExtractor:
    """Build the extractor named by ``model_conf["name"]`` in eval mode on ``device``."""
    return EXTRACTORS.load(model_conf, device)


def gray_batch(image: torch.Tensor, who: str = "sekd") -> torch.Tensor:
    """``B x C x H x W`` (C = 1 or 3) -> ``B x 1 x H x W`` gray (:func:`sekd_plugin.ops.gray.rgb_to_gray`)."""
    if image.ndim != 4 or image.shape[1] not in (1, 3) or image.shape[0] < 1:
        raise ValueError(f"{who} expects a B x C x H x W image batch (C = 1 or 3), got {tuple(image.shape)}")
    return rgb_to_gray(image)


def gray_batch_of_one(image: torch.Tensor, who: str) -> torch.Tensor:
    """Check a ``1 x C x H x W`` input (C = 1 or 3) and return it as ``1 x 1 x H x W`` gray.

    Colour uses the ITU-R 601 weights (0.299, 0.587, 0.114), as OpenCV's RGB -> gray.
    """
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
        raise ValueError(f"{who} expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
    return rgb_to_gray(image)


# --------------------------------------------------------------------------- weights lookup

def locate_weights(model_conf: dict[str, Any]):
    """Where the weights of ``model_conf`` are (an :class:`sekd_plugin.infra.assets.Located`), or
    None for extractors without weights (SIFT, ORB, ...). Never downloads. An unknown
    extractor or asset name raises (a configuration error, not a missing file)."""
    if "name" not in model_conf:
        raise ConfigError(f"model conf needs a 'name' key (e.g. {{'name': 'sekd'}}), got {sorted(model_conf)}")
    cls = get_extractor(model_conf["name"])
    conf = {**cls.default_conf, **model_conf}
    if "checkpoint" not in conf:
        return None
    from ..infra import assets

    return assets.locate(cls.checkpoint_name(conf), conf.get("weights"))


def missing_weights_reason(model_conf: dict[str, Any], label: str | None = None) -> str | None:
    """``"<label> skipped: weights not found at <where> (see <manifest>; get them with: ...)"``,
    or None when the extractor can run. ``label`` (e.g. a benchmark's method name) defaults
    to the extractor's name."""
    located = locate_weights(model_conf)
    if located is None or located.found:
        return None
    asset = located.asset
    manifest = f"third_party/{asset.manifest.name}" if asset.manifest else f"third_party/{asset.name}.toml"
    note = get_extractor(model_conf["name"]).licence_note
    return (f"{label or model_conf['name']} skipped: weights not found at {located.where} "
            f"(see {manifest}; get them with: {asset.fetch_command})" + (f"; {note}" if note else ""))


def weights_fingerprint(model_conf: dict[str, Any]) -> str | None:
    """The one weights fingerprint: sha256 of the file ``model_conf`` resolves to (computed once
    per path, size and mtime in a process), so caches of features notice a replaced file but
    not a moved checkout. None for extractors without weights or when the weights are missing."""
    from ..io.provenance import file_sha256

    located = locate_weights(model_conf)
    if located is None or not located.found:
        return None
    return file_sha256(located.path)


def override_conf(conf: dict[str, Any], overrides: dict[str, Any], where: str,
                  sections: tuple[str, ...] = ("model", "preprocessing")) -> dict[str, Any]:
    """A copy of the extraction ``conf`` with command-line ``overrides`` (``{"model": {...},
    "preprocessing": {...}}``, from ``model.max_keypoints=2000``) merged in; an option the
    extractor does not have is one line naming it and every valid one."""
    from ..common.conf_layers import apply_overrides
    from ..io.images import DEFAULT_PREPROCESSING

    valid = {"model": ("name", *get_extractor(conf["model"]["name"]).default_conf),
             "preprocessing": tuple(DEFAULT_PREPROCESSING)}
    return apply_overrides(conf, overrides, {k: valid[k] for k in sections}, where)
