"""Matcher contract and registry (hloc's ``BaseModel`` for matchers).

A matcher is one module in ``sekd_plugin.matchers`` defining one :class:`BaseMatcher`
subclass: ``default_conf``, ``required_inputs``, ``_init(conf)`` and ``_forward(data)``.
Inputs are batched: ``descriptors0`` ``B x D x N0`` and ``descriptors1`` ``B x D x N1``
(float unit vectors or uint8 packed bits; matchers that need more, e.g. keypoints, list them
in ``required_inputs``). Outputs:

* ``matches0``         ``B x N0`` long, index into image 1 or -1 where unmatched;
* ``matching_scores0`` ``B x N0`` float in [0, 1], 0 where unmatched.

Adding a matcher (say LightGlue) is one module plus one entry in :data:`MATCHERS` and one
named conf in :mod:`sekd_plugin.matchers.confs`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..common.registry import BaseModel, Registry


class BaseMatcher(BaseModel):
    """hloc-style matcher: ``default_conf`` merged under the user conf (unknown keys rejected)."""

    required_inputs: list[str] = ["descriptors0", "descriptors1"]


MATCHERS = Registry("matcher", BaseMatcher, {"nearest_neighbor": "sekd_plugin.matchers.nearest_neighbor"})


def register_matcher(name: str, module: str) -> None:
    """Make ``conf["model"]["name"] == name`` load the matcher defined in ``module``."""
    MATCHERS.register(name, module)


def get_matcher(name: str) -> type[BaseMatcher]:
    """The matcher class registered under ``name``."""
    return MATCHERS.get(name)


def load_matcher(model_conf: dict[str, Any], device: str | torch.device = "cpu") -> BaseMatcher:
    """Build the matcher named by ``model_conf["name"]`` in eval mode on ``device``."""
    return MATCHERS.load(model_conf, device)


def override_conf(conf: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of the matcher ``conf`` with command-line ``overrides`` (``{"model": {...}}``, from
    ``model.ratio_threshold=0.8``) merged in; an unknown option is one line naming every valid one."""
    from ..common.conf_layers import apply_overrides

    valid = {"model": ("name", *get_matcher(conf["model"]["name"]).default_conf)}
    return apply_overrides(conf, overrides, valid, where)
