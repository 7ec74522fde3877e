"""The finished images of a label step, kept across interruptions.

A label step takes minutes to hours (seconds per image). While it runs, the labels of finished
images are written every ``flush_s`` seconds, and once more when the step is interrupted, into
small part files beside the step's label file (``labels/round{r}_{name}.parts/``), each written
atomically (a kill never leaves half a part). ``--resume`` reads them back and labels only the
images that are missing; because every image's labels depend only on the network and its own
seeded generator, the step's labels equal those of an uninterrupted run. Parts carry the
fingerprint of the network that made them: parts of another network are ignored, never mixed.
When the step's label file is written the parts are removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .files import LabelFileError, Labels, read_labels_with_sizes, write_labels

logger = logging.getLogger("sekd_plugin.train")


def network_fingerprint(net: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of the parameters and buffers: which network made a part."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class PartialLabels:
    """Part files of one label step: :meth:`load` what earlier attempts finished, :meth:`add`
    each new image, :meth:`flush` (timed, and on interruption), :meth:`clear` when done."""

    def __init__(self, folder: Path, fingerprint: str, rank: int = 0, flush_s: float = 10.0):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.rank = rank
        self.flush_s = flush_s
        self.pending: Labels = {}
        self.pending_sizes: dict[str, tuple[int, int]] = {}
        self.pending_stats: dict[str, np.ndarray] = {}
        self.saved = 0  # images of this step in part files (earlier attempts + this one)
        self.last_flush = time.monotonic()

    def load(self) -> tuple[Labels, dict[str, tuple[int, int]], dict[str, np.ndarray]]:
        """Labels, sizes and NMS statistics of every part of this network (all ranks' parts)."""
        labels: Labels = {}
        sizes: dict[str, tuple[int, int]] = {}
        stats: dict[str, np.ndarray] = {}
        for path in sorted(self.folder.glob("part-*.h5")) if self.folder.is_dir() else []:
            try:
                lab, sz, attrs = read_labels_with_sizes(path, stats)
            except LabelFileError as e:  # written atomically, so only outside damage: relabel those images
                logger.warning("[sekd-train] %s; its images are labelled again", e)
                continue
            if attrs.get("network") != self.fingerprint:
                logger.warning("[sekd-train] %s was made by another network; its images are labelled again", path)
                continue
            labels.update(lab)
            sizes.update(sz)
        self.saved = len(labels)
        return labels, sizes, stats

    def add(self, key: str, label: tuple[np.ndarray, np.ndarray], size: tuple[int, int], stats: np.ndarray | None) -> None:
        self.pending[key] = label
        self.pending_sizes[key] = size
        if stats is not None:
            self.pending_stats[key] = stats
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the images finished since the last flush into a new part (atomic)."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # rank, process and a clock in the name: parts of restarts and of other ranks never collide
        path = self.folder / f"part-{self.rank}-{os.getpid()}-{time.time_ns()}.h5"
        write_labels(path, self.pending, self.pending_sizes, self.pending_stats, network=self.fingerprint)
        self.saved += len(self.pending)
        self.pending, self.pending_sizes, self.pending_stats = {}, {}, {}

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
