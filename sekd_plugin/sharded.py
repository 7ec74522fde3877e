"""One .h5 output written by every rank of a ``torchrun``: shard -> per-rank part -> merge.

Under torchrun each rank writes its share into ``<output>.parts/rank<r>-of<N>.h5`` and rank 0
merges the parts into the output atomically (:func:`sekd_plugin.io.h5.merge_files`); alone,
the process writes the output itself. Parts left by an interrupted run are checked like the
output and merged into it before anything is read, so a resumed run (with any number of
ranks) skips what they hold. Extraction and matching both go through :class:`ShardedFile`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from . import distributed
from .io.h5 import merge_files


class ShardedFile:
    """The output ``path`` (a ``kind`` .h5 file) as seen by this rank of ``ctx``."""

    def __init__(self, path: str | Path, kind: str, ctx: distributed.Context | None = None):
        self.path, self.kind = Path(path), kind
        self.ctx = ctx if ctx is not None else distributed.context()
        self.parts_dir = self.path.with_name(self.path.name + ".parts")

    def parts(self) -> list[Path]:
        """The part files there are now (sorted)."""
        return sorted(self.parts_dir.glob("*.h5")) if self.parts_dir.is_dir() else []

    def prepare(self, check: Callable[[Path], bool], conf: dict[str, Any], overwrite: bool) -> None:
        """Rank 0 checks the output and any parts with ``check(path)`` (raises on entries of
        another conf; True: rebuild, the output is deleted), then merges the parts into the
        output (dropped instead with ``overwrite``) recording ``conf``. Every rank raises
        rank 0's error and, after it returns, reads the same output."""

        def run() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            parts = self.parts()
            rebuild = False
            for path in [self.path, *parts]:  # e.g. the part of an NN-mutual run in an NN-ratio run
                rebuild |= check(path)
            if rebuild:
                self.path.unlink(missing_ok=True)
            if self.parts_dir.is_dir():  # parts of an interrupted torchrun: keep what they hold
                if parts and not overwrite:
                    merge_files(parts, self.path, self.kind, conf=conf)
                shutil.rmtree(self.parts_dir, ignore_errors=True)

        self.ctx.on_main(run)

    def share(self, costs: Sequence[float]) -> list[int]:
        """Indices of the items this rank does (all of them alone), balanced by ``costs``."""
        if not self.ctx.active:
            return list(range(len(costs)))
        return distributed.balanced_split(costs, self.ctx.world)[self.ctx.rank]

    def rank_path(self) -> Path:
        """The file this rank writes: its part under torchrun (folder created), else the output."""
        if not self.ctx.active:
            return self.path
        path = self.parts_dir / f"rank{self.ctx.rank}-of{self.ctx.world}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def finish(self, conf: dict[str, Any], mine: Any = None) -> list[Any]:
        """Every rank's ``mine`` (also the barrier: every part is written), after rank 0 has
        merged the parts into the output recording ``conf`` and removed them."""
        everyone = self.ctx.gather(mine)
        if self.ctx.active or self.parts_dir.is_dir():

            def merge() -> None:
                parts = self.parts()
                if parts:
                    merge_files(parts, self.path, self.kind, conf=conf)
                shutil.rmtree(self.parts_dir, ignore_errors=True)

            self.ctx.on_main(merge)
        return everyone
