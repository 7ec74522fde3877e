"""The one loader of options: a structured default < a YAML file < ``key=value`` overrides.

The trainer (``train.config``), the scene configs (``benchmark.sfm.config``) and every command's
extractor / matcher overrides (``model.max_keypoints=2000``, ``LABEL.model.KEY=VALUE``) read
their layers here, so the syntax (OmegaConf's dotlist, YAML-typed values) and the error lines are
the same everywhere. What OmegaConf would otherwise report as a traceback, or silently copy into
results, is one line naming the file or the overrides and the key:

* a missing file, a YAML syntax error (line, column), a file that is not a mapping;
* an override that is not ``KEY=VALUE``, a value of the wrong type for its key;
* nesting deeper than :data:`MAX_DEPTH` (10 000 levels ran Python out of stack);
* a resolver call (``${oc.env:PATH}``): its value would come from the environment and be copied
  into the results; only ``${other.key}`` interpolations are allowed (unless a caller allows them);
* an interpolation of a missing key, or of itself.

Unknown keys are refused by :func:`sekd_plugin.common.conf.check_keys`, the one key check.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .conf import check_keys
from .errors import ConfigError

MAX_DEPTH = 32  # levels of nested mappings / lists in one config
_RESOLVER = re.compile(r"\$\{\s*[\w.\-]+\s*:")  # ${name:...}: a resolver call, not a key reference
Layer = tuple[Any, str]  # (DictConfig, where it comes from: a file name or "the overrides")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "msg", None) or error)
    return text.splitlines()[0] if text else type(error).__name__


def _shown(items: Sequence[str], width: int = 80) -> list[str]:
    """Overrides as named in an error line (each cut to ``width`` characters)."""
    return [o if len(o) <= width else o[: width - 3] + "..." for o in items]


def guarded(load, where: str, error: type[Exception] = ConfigError):
    """``load()`` (an OmegaConf load / dot-list parse) with a too-deep nesting as one line."""
    try:
        return load()
    except RecursionError:
        raise error(f"{where}: nested too deeply (more than {MAX_DEPTH} levels are not supported)") from None


load_text_guarded = guarded  # the former name


def read_yaml(path: str | Path, error: type[Exception] = ConfigError) -> DictConfig:
    """One YAML file as a config layer; anything unreadable is one ``error`` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"config file not found: {path}")
    try:
        cfg = guarded(lambda: OmegaConf.load(path), str(path), error)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}: YAML syntax error{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read config {path}: {e}") from None
    except OmegaConfBaseException as e:
        raise error(f"{path}: not a readable YAML config ({_first_line(e)})") from None
    if not isinstance(cfg, DictConfig):
        raise error(f"{path} must hold a mapping of config keys")
    return cfg


def read_dotlist(items: Iterable[str], where: str = "the overrides",
                 error: type[Exception] = ConfigError) -> DictConfig:
    """``["a.b=1", "c=[1,2]"]`` as a config layer (OmegaConf's dotlist: YAML-typed values)."""
    items = [str(o) for o in items]
    bad = [o for o in items if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise error(f"{where}: each must be key=value (KEY=VALUE), got {_shown(bad)}")
    try:
        return guarded(lambda: OmegaConf.from_dotlist(items), where, error)
    except OmegaConfBaseException as e:
        raise error(f"invalid override in {where} {_shown(items)}: {_first_line(e)}") from None
    except yaml.YAMLError as e:  # a value OmegaConf parses as YAML
        raise error(f"invalid override value in {where} {_shown(items)}: {_first_line(e)}") from None


def check_layer(layer: DictConfig | ListConfig, where: str, resolvers: bool = False,
                error: type[Exception] = ConfigError) -> None:
    """Refuse a layer nesting deeper than :data:`MAX_DEPTH` or (unless ``resolvers``) calling a
    resolver, naming ``where`` and the key (the walk is iterative: the user's nesting is no stack)."""
    try:
        plain = OmegaConf.to_container(layer, resolve=False)
    except RecursionError:
        raise error(f"{where}: nested too deeply (more than {MAX_DEPTH} levels are not supported)") from None
    stack: list[tuple[Any, str, int]] = [(plain, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise error(f"{where}: key '{key}' is nested more than {MAX_DEPTH} levels deep")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, f"{key}.{name}" if key else str(name), depth + 1) for name, child in items)
        elif not resolvers and isinstance(node, str) and _RESOLVER.search(node):
            raise error(f"{where}: key '{key}' calls a resolver ({node}); resolvers such as ${{oc.env:...}} "
                        "are not allowed (their values would be copied into the results): write the value")


def flat_keys(node: Any, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``["a.b", "c"]`` (a DictConfig's leaves, interpolations unresolved)."""
    keys = []
    if isinstance(node, DictConfig):
        for k, v in node.items_ex(resolve=False):
            name = f"{prefix}{k}"
            keys.extend(flat_keys(v, name + ".") if isinstance(v, DictConfig) else [name])
    return keys


def read_layers(path: str | Path | None = None, overrides: Sequence[str] = (), resolvers: bool = False,
                error: type[Exception] = ConfigError) -> list[Layer]:
    """The layers of a command: its YAML file (if any), then its ``key=value`` overrides (if any),
    each checked by :func:`check_layer`."""
    layers: list[Layer] = []
    if path is not None:
        layers.append((read_yaml(path, error), str(path)))
    if overrides:
        layers.append((read_dotlist(overrides, "the overrides", error), "the overrides"))
    for layer, where in layers:
        check_layer(layer, where, resolvers, error)
    return layers


def merge(base: DictConfig, layers: Sequence[Layer], error: type[Exception] = ConfigError) -> DictConfig:
    """``base`` < each layer in turn; a value of the wrong type (or an unknown key of a struct
    config) is one line naming the layer and the key."""
    for layer, where in layers:
        try:
            base = OmegaConf.merge(base, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or ""
            raise error(f"{where}: invalid value for key '{key}': {_first_line(e)}") from None
    return base


def resolve(cfg: DictConfig, layers: Sequence[Layer] = (), error: type[Exception] = ConfigError,
            in_place: bool = False) -> dict[str, Any] | None:
    """``cfg`` as a plain dict with its interpolations resolved (or resolved in place); a missing
    key or a circular interpolation is one ``error`` line naming the key and the layers."""
    try:
        if in_place:
            OmegaConf.resolve(cfg)
            return None
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        places = " or ".join(where for _, where in layers if len(_)) or "the config"
        raise error(f"{places}: key '{key}': cannot resolve its interpolation: {_first_line(e)}") from None
    except RecursionError:
        raise error("the config: interpolations nested too deeply (a key refers to itself?)") from None


def parse_dotlist(items: Iterable[str], where: str = "the overrides") -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``: command-line overrides as a
    plain dict, checked and with interpolations resolved."""
    layer = read_dotlist(items, where)
    check_layer(layer, where)
    return resolve(layer, [(layer, where)])


# ---------------------------------------------------------------- extractor / matcher confs


def split_by_label(overrides: Mapping[str, Any], labels: Iterable[str], where: str = "the overrides"
                   ) -> dict[str, dict[str, Any]]:
    """``{"model": {...}, "LABEL": {"model": {...}}}`` -> ``{label: {"model": {...}}}``: keys that
    are not a label apply to every method, a label's own keys win over them."""
    labels = list(labels)
    every = {k: v for k, v in overrides.items() if k not in labels}
    out = {}
    for label in labels:
        mine = overrides.get(label, {})
        if not isinstance(mine, dict):
            raise ConfigError(f"{where}: {label}={mine!r}: write {label}.model.KEY=VALUE")
        out[label] = {k: _merged(every.get(k), mine.get(k)) for k in {*every, *mine}}
    return out


def _merged(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {**a, **b}
    return a if b is None else b


def apply_overrides(conf: dict[str, Any], overrides: Mapping[str, Any], valid: Mapping[str, Iterable[str]],
                    where: str) -> dict[str, Any]:
    """A copy of ``conf`` (``{"model": {...}, "preprocessing": {...}}``) with ``overrides``
    (the same shape) merged into its sections; a section or key not in ``valid`` is refused
    with one line naming it and every valid key, and ``model.name`` cannot change."""
    conf = copy.deepcopy(conf)
    check_keys(overrides, valid, "override", where=where)
    for section, values in overrides.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: {section}={values!r}: write {section}.KEY=VALUE")
        name = (conf.get(section) or {}).get("name")
        check_keys(values, valid[section], f"{name or section} option", where=where)
        if name is not None and values.get("name", name) != name:
            raise ConfigError(f"{where}: an override cannot change {section}.name ({name})")
        conf[section] = {**(conf.get(section) or {}), **values}
    return conf
