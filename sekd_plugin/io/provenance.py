"""What produced the entries of an .h5 file (its provenance), and the weights fingerprint.

A features or matches file records, as the JSON root attribute ``sekd_plugin_conf``, what
makes its entries comparable (the effective conf and the weights' sha256 for features; the
matcher conf and the fingerprint of the features' provenance for matches). A run that
would add entries of another conf compares records with :func:`conf_differences`, so a
cache is never silently mixed. :func:`file_sha256` is the one weights fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .h5_open import open_h5

CONF_ATTR = "sekd_plugin_conf"  # JSON of what produced the entries (conf + weights fingerprint)

_SHA256: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> hex digest


def read_conf(path: str | os.PathLike, kind: str = "features") -> dict[str, Any] | None:
    """The conf recorded in ``path`` by :func:`~sekd_plugin.io.h5_parts.record_conf`, or None (none recorded / no file)."""
    if not Path(path).exists():
        return None
    with open_h5(path, "r", kind) as fd:
        text = fd.attrs.get(CONF_ATTR)
    if text is None:
        return None
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def conf_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["key: old -> new", ...]`` for every differing (nested) key."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += conf_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, e.g. weights; computed once per (path, size, mtime) in
    this process, so checking a cache again costs a ``stat``."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def features_fingerprint(path: str | os.PathLike) -> str | None:
    """Hash of the provenance recorded in a features file (conf + weights), None if it has none."""
    conf = read_conf(path, "features")
    if conf is None:
        return None
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]
