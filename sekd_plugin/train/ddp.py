"""Optional torch.distributed support (``torchrun``): rank bookkeeping and collectives.

A single process is the default; when ``WORLD_SIZE > 1`` (as set by ``torchrun``) the
process group is created with NCCL on CUDA and Gloo on CPU. Every helper is a no-op (or the
identity) in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..common.device import pick_device


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_pref: str = "auto") -> DistInfo:
    """This process's rank and device (torchrun's environment, read by :mod:`sekd_plugin.distributed`);
    the process group uses NCCL on CUDA and Gloo on CPU."""
    from ..distributed import context

    device = pick_device(device_pref)
    ctx = context(backend="nccl" if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else "gloo")
    device = ctx.device(device_pref)
    return DistInfo(rank=ctx.rank, world=ctx.world, local_rank=ctx.local_rank, device=device)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of ``items`` (every ``world``-th, starting at ``rank``)."""
    return items[info.rank :: info.world] if info.enabled else list(items)


def gather_lists(items: list, info: DistInfo) -> list:
    """Concatenation of every rank's list (rank order), identical on all ranks."""
    if not info.enabled:
        return list(items)
    parts: list = [None] * info.world
    dist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


def gather_dicts(d: dict, info: DistInfo) -> dict:
    """Union of every rank's dict (``all_gather_object``), identical on all ranks."""
    if not info.enabled:
        return dict(d)
    parts: list = [None] * info.world
    dist.all_gather_object(parts, d)
    out: dict = {}
    for p in parts:
        out.update(p)
    return out


def reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average float values over ranks (same keys on every rank)."""
    if not info.enabled:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world
    return {k: float(v) for k, v in zip(keys, t.tolist())}
