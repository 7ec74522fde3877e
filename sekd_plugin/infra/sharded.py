"""One .h5 output written by one process or by every rank of a ``torchrun``: parts -> publish.

Every writing process (each rank under torchrun, or the process alone) writes finished parts
``<output>.parts/*.h5`` through a :class:`~sekd_plugin.io.h5.PartWriter`; the entries reach the
output only when rank 0 publishes them atomically (:func:`sekd_plugin.io.h5.publish`): at the
end, at an interruption of a process alone, and, for what an interrupted run left, before
anything is read, so a resumed run (with any number of ranks) skips what they hold.
Extraction and matching both go through :class:`ShardedFile`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from . import distributed
from ..common.errors import DiskFullError
from ..io.h5 import PartWriter, finished_parts, publish

logger = logging.getLogger(__name__)


class ShardedFile:
    """The output ``path`` (a ``kind`` .h5 file) as seen by this rank of ``ctx``."""

    def __init__(self, path: str | Path, kind: str, ctx: distributed.Context | None = None, unit: str = "entries"):
        self.path, self.kind, self.unit = Path(path), kind, unit
        self.ctx = ctx if ctx is not None else distributed.context()
        self.written = 0  # entries this process's writer wrote into parts
        self._writer: PartWriter | None = None

    def _publish(self, conf: dict[str, Any] | None, drop: bool = False) -> None:
        """Publish; a full disk says how many entries were written (kept in the parts)."""
        try:
            publish(self.path, self.kind, conf, drop=drop)
        except DiskFullError:
            raise DiskFullError(self.path, written=self.written, unit=self.unit) from None

    def parts(self) -> list[Path]:
        """The finished parts there are now (sorted)."""
        return finished_parts(self.path)

    def prepare(self, check: Callable[[Path], bool], conf: dict[str, Any], overwrite: bool) -> None:
        """Rank 0 checks the output and any parts with ``check(path)`` (raises on entries of
        another conf; True: rebuild, the output is deleted), then publishes the parts into the
        output (dropped instead with ``overwrite``) recording ``conf``. Every rank raises
        rank 0's error and, after it returns, reads the same output."""

        def run() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            rebuild = False
            for path in [self.path, *self.parts()]:  # e.g. the part of an NN-mutual run in an NN-ratio run
                rebuild |= check(path)
            if rebuild:
                self.path.unlink(missing_ok=True)
            self._publish(conf, drop=overwrite)  # what an interrupted run finished

        self.ctx.on_main(run)

    def share(self, costs: Sequence[float]) -> list[int]:
        """Indices of the items this rank does (all of them alone), balanced by ``costs``."""
        if not self.ctx.active:
            return list(range(len(costs)))
        return distributed.balanced_split(costs, self.ctx.world)[self.ctx.rank]

    def writer(self, conf: dict[str, Any] | None, depth: int) -> PartWriter:
        """This process's writer of finished parts (``conf`` recorded in each part); close it
        before :meth:`finish`."""
        self._writer = PartWriter(self.path, self.kind, conf, depth=depth, unit=self.unit)
        return self._writer

    def finish(self, conf: dict[str, Any] | None, mine: Any = None) -> list[Any]:
        """Every rank's ``mine`` (also the barrier: every part is written), after rank 0 has
        published the parts into the output recording ``conf`` (None: the output's own)."""
        self.written = self._writer.written if self._writer is not None else 0
        everyone = self.ctx.gather(mine)
        self.ctx.on_main(lambda: self._publish(conf))
        return everyone

    def publish_interrupted(self, conf: dict[str, Any] | None) -> None:
        """A process alone that is being interrupted publishes what it finished (best effort:
        on a full disk the parts stay for the next run); under torchrun the next run does."""
        if self.ctx.active:
            return
        try:
            publish(self.path, self.kind, conf)
        except Exception as error:  # noqa: BLE001 - the interruption is what is reported
            logger.debug("parts of %s left for the next run: %s", self.path, error)
