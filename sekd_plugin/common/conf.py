"""The one check of conf keys: an unknown key is an error naming it and every valid key.

Extractor / matcher confs, preprocessing confs and config files all go through it, so a typo
reads the same everywhere and is never silently ignored.
"""

from __future__ import annotations

from typing import Iterable

from .errors import ConfigError


def check_keys(given: Iterable[str], valid: Iterable[str], what: str = "conf", where: str | None = None,
               prefix: str = "", error: type[Exception] = ConfigError) -> None:
    """Raise ``error("<prefix>unknown <what> key(s) [...] [in <where>]; valid keys: [...]")``
    when ``given`` holds a key that is not in ``valid``."""
    valid = set(valid)
    unknown = sorted(set(given) - valid)
    if unknown:
        place = f" in {where}" if where else ""
        raise error(f"{prefix}unknown {what} key(s) {unknown}{place}; valid keys: {sorted(valid)}")


def parse_dotlist(items: Iterable[str], where: str = "the overrides") -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``: command-line ``KEY=VALUE``
    overrides with YAML-typed values (OmegaConf's dotlist, the trainer's syntax), interpolations
    resolved; anything malformed is one ConfigError naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    items = list(items)
    bad = [o for o in items if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(f"{where} must be KEY=VALUE, got {bad}")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(items), resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid override in {where} {items}: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nesting too deep in {items[:3]}") from None
