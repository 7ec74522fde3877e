"""hloc-compatible extractor base class and the registry of extractors.

An extractor is one module in ``sekd_plugin.extractors`` defining one subclass of
:class:`BaseExtractor` (hloc's ``BaseModel`` contract): ``default_conf``,
``required_inputs``, ``_init(conf)`` and ``_forward(data) -> dict`` returning, for a batch
of one image,

* ``keypoints``   1 x N x 2 float32, (x, y) in pixels of the input image, the centre of the
  top-left pixel is (0, 0);
* ``scores``      1 x N float32;
* ``descriptors`` 1 x D x N (float32, L2-normalised; uint8 for binary descriptors).
"""

from __future__ import annotations

import importlib
import inspect
from copy import deepcopy
from typing import Any

import torch
from torch import nn

# name used in conf["model"]["name"] -> module in sekd_plugin.extractors
EXTRACTOR_MODULES = {
    "sekd": "sekd_plugin.extractors.sekd",
    "sift": "sekd_plugin.extractors.sift",
    "superpoint": "sekd_plugin.extractors.superpoint",
    "d2net": "sekd_plugin.extractors.d2net",
    "orb": "sekd_plugin.extractors.opencv",
    "akaze": "sekd_plugin.extractors.opencv",
    "brisk": "sekd_plugin.extractors.opencv",
}


class ConfigError(ValueError):
    """A configuration key or value is invalid (the message names it)."""


class BaseExtractor(nn.Module):
    """hloc-style extractor: ``default_conf`` merged under the user conf."""

    default_conf: dict[str, Any] = {}
    required_inputs: list[str] = ["image"]
    # hloc stores ``uncertainty = detection_noise * mean(scale)`` with the keypoints.
    detection_noise: float = 1.0

    def __init__(self, conf: dict[str, Any] | None = None):
        super().__init__()
        conf = dict(conf or {})
        conf.pop("name", None)
        unknown = sorted(set(conf) - set(self.default_conf))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}: unknown conf key(s) {unknown}; "
                f"valid keys: {sorted(self.default_conf)}"
            )
        self.conf = {**deepcopy(self.default_conf), **conf}
        self._init(self.conf)

    def _init(self, conf: dict[str, Any]) -> None:
        raise NotImplementedError

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key in self.required_inputs:
            if key not in data:
                raise ConfigError(f"{type(self).__name__}: missing input '{key}'")
        return self._forward(data)


def gray_batch_of_one(image: torch.Tensor, who: str) -> torch.Tensor:
    """Check a ``1 x C x H x W`` input (C = 1 or 3) and return it as ``1 x 1 x H x W`` gray.

    Colour uses the ITU-R 601 weights (0.299, 0.587, 0.114), as OpenCV's RGB -> gray.
    """
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
        raise ValueError(f"{who} expects a 1 x C x H x W image (C = 1 or 3), got {tuple(image.shape)}")
    if image.shape[1] == 3:
        weights = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        image = (image * weights).sum(1, keepdim=True)
    return image


def register_extractor(name: str, module: str) -> None:
    """Make ``conf["model"]["name"] == name`` load the extractor defined in ``module``."""
    EXTRACTOR_MODULES[name] = module


def get_extractor(name: str) -> type[BaseExtractor]:
    """Return the extractor class registered under ``name``."""
    if name not in EXTRACTOR_MODULES:
        raise ConfigError(
            f"unknown extractor '{name}'; registered: {sorted(EXTRACTOR_MODULES)}"
        )
    module = importlib.import_module(EXTRACTOR_MODULES[name])
    classes = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, BaseExtractor) and c is not BaseExtractor and c.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ConfigError(f"module {module.__name__} must define exactly one extractor class")
    return classes[0]


def load_extractor(model_conf: dict[str, Any], device: str | torch.device = "cpu") -> BaseExtractor:
    """Build the extractor named by ``model_conf["name"]`` in eval mode on ``device``."""
    if "name" not in model_conf:
        raise ConfigError("model conf needs a 'name' key (e.g. {'name': 'sekd'})")
    cls = get_extractor(model_conf["name"])
    if getattr(cls, "name_is_algorithm", False) and "algorithm" not in model_conf:
        # one class serving several registry names (e.g. orb / akaze / brisk)
        model_conf = {**model_conf, "algorithm": model_conf["name"]}
    return cls(model_conf).eval().to(device)
