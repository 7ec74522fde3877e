"""The one check of conf keys: an unknown key is an error naming it and every valid key.

Extractor / matcher confs, preprocessing confs and config files all go through it, so a typo
reads the same everywhere and is never silently ignored. The layers themselves (YAML files,
``key=value`` overrides) are read by :mod:`.conf_layers`.
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

