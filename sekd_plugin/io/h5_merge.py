"""Merging .h5 files of one kind into one, atomically (the parts of a sharded run)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..common.files import ensure_free_space, write_atomic
from .h5_open import list_entries, open_h5
from .provenance import CONF_ATTR


def merge_files(parts: list[str | os.PathLike], dest: str | os.PathLike, kind: str,
                conf: dict[str, Any] | None = None) -> int:
    """Merge the complete entries of ``parts`` (and of ``dest`` if it exists) into ``dest``, atomically.

    The merged file is built next to ``dest`` and moved into place (``os.replace``), so a
    reader sees the old file or the whole new one, never a mix. Entries of later parts
    replace those of earlier ones; ``conf`` is recorded as the provenance. Returns the
    number of entries copied from the parts.
    """
    dest = Path(dest)
    copied = 0
    # the merged copy is built beside the destination: room for both, and the margin
    ensure_free_space(dest, sum(Path(p).stat().st_size for p in [*parts, dest] if Path(p).is_file()))

    def build(tmp: Path) -> None:
        nonlocal copied
        if dest.exists():
            with open_h5(dest, "r", kind):
                pass  # a foreign or damaged destination fails here, before anything moves
            shutil.copyfile(dest, tmp)
        with open_h5(tmp, "a", kind, backup=False) as out:
            for part in parts:
                with open_h5(part, "r", kind) as src:
                    for name in list_entries(src, complete_only=True):
                        if name in out:
                            del out[name]
                        parent, _, leaf = name.rpartition("/")
                        target = out.require_group(parent) if parent else out
                        src.copy(src[name], target, name=leaf)
                        copied += 1
            if conf is not None:
                out.attrs[CONF_ATTR] = json.dumps(conf, sort_keys=True)
            out.flush()

    write_atomic(dest, build)
    return copied
