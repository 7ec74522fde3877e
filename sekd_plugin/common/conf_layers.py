"""Checks of an OmegaConf config layer (a YAML file or ``key=value`` overrides) before it is merged
and resolved: what OmegaConf would otherwise report as a traceback, or silently copy into results.

* nesting deeper than :data:`MAX_DEPTH` (10 000 levels ran Python out of stack);
* a resolver call (``${oc.env:PATH}``, ``${oc.decode:...}``): its value would come from the
  environment and be copied into the results; only ``${other.key}`` interpolations are allowed;
* :func:`resolve`: an interpolation of a missing key, or of itself, is one line naming the key.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

MAX_DEPTH = 32  # levels of nested mappings / lists in one config
_RESOLVER = re.compile(r"\$\{\s*[\w.\-]+\s*:")  # ${name:...}: a resolver call, not a key reference


def check_layer(layer: DictConfig | ListConfig, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the key when ``layer`` nests deeper than
    :data:`MAX_DEPTH` or calls a resolver (the walk is iterative: the user's nesting is no stack)."""
    try:
        plain = OmegaConf.to_container(layer, resolve=False)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply (more than {MAX_DEPTH} levels are not supported)") from None
    stack: list[tuple[Any, str, int]] = [(plain, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}: key '{key}' is nested more than {MAX_DEPTH} levels deep")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, f"{key}.{name}" if key else str(name), depth + 1) for name, child in items)
        elif isinstance(node, str) and _RESOLVER.search(node):
            raise ConfigError(f"{where}: key '{key}' calls a resolver ({node}); resolvers such as ${{oc.env:...}} "
                              "are not allowed (their values would be copied into the results): write the value")


def load_text_guarded(load, where: str):
    """``load()`` (an OmegaConf load / dot-list parse) with a too-deep nesting as one line."""
    try:
        return load()
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply (more than {MAX_DEPTH} levels are not supported)") from None


def resolve(cfg: DictConfig, layers: Sequence[tuple[Any, str]] = ()) -> dict[str, Any]:
    """``cfg`` as a plain dict with its interpolations resolved; a missing key or a circular
    interpolation is a :class:`ConfigError` naming the key (and the layers it may come from)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        msg = str(getattr(error, "msg", error)).splitlines()[0]
        places = " or ".join(where for _, where in layers) or "the config"
        raise ConfigError(f"{places}: key '{key}': cannot resolve its interpolation: {msg}") from None
    except RecursionError:
        raise ConfigError("the config: interpolations nested too deeply") from None
