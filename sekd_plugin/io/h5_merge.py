"""Merging .h5 files of one kind into one, atomically: how finished parts are published."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..common.files import ensure_free_space, write_atomic
from .h5_open import list_entries, open_h5
from .provenance import CONF_ATTR

REPLACES_ATTR = "sekd_plugin_replaces"  # keys an entry replaces in the merged file (a pair's other orders)


def merge_files(parts: list[str | os.PathLike], dest: str | os.PathLike, kind: str,
                conf: dict[str, Any] | None = None) -> int:
    """Merge the complete entries of ``parts`` (and of ``dest`` if it exists) into ``dest``, atomically.

    The merged file is built next to ``dest`` and moved into place (``os.replace``), so a
    reader sees the old file or the whole new one, never a mix. Entries of later parts
    replace those of earlier ones; ``conf`` is recorded as the provenance. A 0-byte ``dest``
    counts as missing. Returns the number of entries copied from the parts.
    """
    dest = Path(dest)
    exists = dest.is_file() and dest.stat().st_size > 0
    copied = 0
    # the merged copy is built beside the destination: room for both, and the margin
    ensure_free_space(dest, sum(Path(p).stat().st_size for p in [*parts, dest] if Path(p).is_file()))
    if exists:
        with open_h5(dest, "r", kind):
            pass  # a foreign or damaged destination fails here, before anything moves

    def build(tmp: Path) -> None:
        nonlocal copied
        if exists:
            shutil.copyfile(dest, tmp)
        with open_h5(tmp, "a", kind) as out:
            for part in parts:
                with open_h5(part, "r", kind) as src:
                    for name in list_entries(src, complete_only=True):
                        for old in (name, *src[name].attrs.get(REPLACES_ATTR, ())):
                            if old in out:
                                del out[old]
                        parent, _, leaf = name.rpartition("/")
                        target = out.require_group(parent) if parent else out
                        src.copy(src[name], target, name=leaf)
                        if REPLACES_ATTR in out[name].attrs:
                            del out[name].attrs[REPLACES_ATTR]
                        copied += 1
            if conf is not None:
                out.attrs[CONF_ATTR] = json.dumps(conf, sort_keys=True)
            out.flush()

    write_atomic(dest, build)
    return copied
