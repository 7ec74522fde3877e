"""The one model contract and registry shared by extractors and matchers (hloc's BaseModel).

A model is one module defining one :class:`BaseModel` subclass with ``default_conf`` (every
valid key and its default), ``required_inputs`` and ``_init`` / ``_forward``. A
:class:`Registry` maps ``conf["model"]["name"]`` to the module that defines it, so adding a
model is one module plus one registry entry (or a call to :meth:`Registry.register`).
"""

from __future__ import annotations

import importlib
import inspect
from copy import deepcopy
from typing import Any

import torch
from torch import nn

from .conf import check_keys
from .errors import ConfigError


class BaseModel(nn.Module):
    """``default_conf`` merged under the user conf; unknown keys are a ConfigError."""

    default_conf: dict[str, Any] = {}
    required_inputs: list[str] = []

    def __init__(self, conf: dict[str, Any] | None = None):
        super().__init__()
        conf = dict(conf or {})
        conf.pop("name", None)
        check_keys(conf, self.default_conf, "conf", prefix=f"{type(self).__name__}: ")
        self.conf = {**deepcopy(self.default_conf), **conf}
        self._init(self.conf)

    def _init(self, conf: dict[str, Any]) -> None:
        raise NotImplementedError

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [key for key in self.required_inputs if key not in data]
        if missing:
            raise ConfigError(f"{type(self).__name__}: missing input(s) {missing}")
        return self._forward(data)


class Registry:
    """``name -> module`` for one kind of model (``"extractor"``, ``"matcher"``)."""

    def __init__(self, kind: str, base: type[BaseModel], modules: dict[str, str]):
        self.kind, self.base, self.modules = kind, base, dict(modules)

    def register(self, name: str, module: str) -> None:
        """Make ``conf["model"]["name"] == name`` load the model defined in ``module``."""
        self.modules[name] = module

    def names(self) -> list[str]:
        return sorted(self.modules)

    def get(self, name: str) -> type[BaseModel]:
        """The class registered under ``name`` (exactly one subclass of ``base`` in its module)."""
        if name not in self.modules:
            raise ConfigError(f"unknown {self.kind} '{name}'; registered: {self.names()}")
        module = importlib.import_module(self.modules[name])
        classes = [
            c for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, self.base) and c is not self.base and c.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise ConfigError(f"module {module.__name__} must define exactly one {self.kind} class")
        return classes[0]

    def load(self, model_conf: dict[str, Any], device: str | torch.device = "cpu") -> BaseModel:
        """Build the model named by ``model_conf["name"]`` in eval mode on ``device``."""
        if "name" not in model_conf:
            raise ConfigError(f"{self.kind} conf needs a 'name' key, got keys {sorted(model_conf)}")
        cls = self.get(model_conf["name"])
        if getattr(cls, "name_is_algorithm", False) and "algorithm" not in model_conf:
            # one class serving several registry names (e.g. orb / akaze / brisk)
            model_conf = {**model_conf, "algorithm": model_conf["name"]}
        return cls(model_conf).eval().to(device)
