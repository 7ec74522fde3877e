"""Work split across processes started by ``torchrun`` (one or many nodes).

``torchrun --nproc_per_node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m
sekd_plugin.extract_features ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; this module
reads them, joins a ``gloo`` process group (CPU tensors only: it carries barriers and small
Python objects, never features), splits work deterministically and balanced, and lets rank 0
merge what the ranks wrote (:mod:`sekd_plugin.sharded`). Without ``torchrun`` everything degrades to one process.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import heapq
import os
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

# A rank may wait for the slowest one for as long as its share takes.
BARRIER_TIMEOUT = datetime.timedelta(hours=int(os.environ.get("SEKD_PLUGIN_DIST_TIMEOUT_H", "72")))

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the run: ``rank`` of ``world``, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a picklable object), on every rank; ``[obj]`` alone."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 only; every rank returns its result or raises its exception
        (a rank that raised alone would leave the others waiting at the next barrier)."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - raised below, on every rank
                error = exc
        result, error = self.gather((result, error))[0]
        if error is not None:
            raise error
        return result

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items`` (every ``world``-th, starting at ``rank``)."""
        return list(items[self.rank :: self.world]) if self.active else list(items)

    def gather_list(self, items: list[T]) -> list[T]:
        """The concatenation of every rank's list (rank order), identical on all ranks."""
        return [x for part in self.gather(items) for x in part]

    def gather_dict(self, d: dict) -> dict:
        """The union of every rank's dict, identical on all ranks."""
        out: dict = {}
        for part in self.gather(d):
            out.update(part)
        return out

    def reduce_mean(self, values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
        """Float values averaged over ranks (same keys on every rank); ``device``: where the
        collective runs (CUDA for an NCCL group)."""
        if not self.active:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= self.world
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def close(self) -> None:
        """Leave the process group (the trainer does at the end of a run)."""
        _shutdown()

    def device(self, requested: str | torch.device | None) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA is used, else the request."""
        from ..common.device import pick_device

        device = pick_device(requested)
        if self.active and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return device


def context(backend: str = "gloo") -> Context:
    """The context of this process; joins a process group on first use under torchrun.

    ``gloo`` (the default) carries barriers and small objects; the trainer asks for ``nccl``
    on CUDA for its gradients. Both commands read torchrun's environment here, nowhere else.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if not dist.is_initialized():
        if backend == "nccl":  # NCCL binds each rank to its GPU before the group is made
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
        # tear the group down before the interpreter exits: a gloo group left to the C++
        # destructors can abort the process at exit ("terminate called without an active exception")
        atexit.register(_shutdown)
    return Context(dist.get_rank(), dist.get_world_size(), local_rank)


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def balanced_split(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Indices of ``costs`` in ``parts`` groups of about equal total cost, deterministically.

    Longest-processing-time rule: items by decreasing cost (ties by index) go to the part
    with the least total so far (ties by part number). Each part's indices are ascending.
    """
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    heap = [(0.0, p) for p in range(parts)]
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in order:
        load, p = heapq.heappop(heap)
        out[p].append(i)
        heapq.heappush(heap, (load + float(costs[i]), p))
    return [sorted(o) for o in out]
