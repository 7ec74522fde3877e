"""The trainer's process group: torchrun's environment read once by :mod:`sekd_plugin.infra.distributed`
(its :class:`~sekd_plugin.infra.distributed.Context` carries rank, barriers and collectives), with
NCCL on CUDA and Gloo on CPU. A single process is the default; every collective is then the
identity."""

from __future__ import annotations

import os

import torch

from ..common.device import pick_device
from ..infra.distributed import Context, context


def setup(device_pref: str = "auto") -> tuple[Context, torch.device]:
    """This process's context and device (``cuda:LOCAL_RANK`` under torchrun on GPUs)."""
    device = pick_device(device_pref)
    ctx = context(backend="nccl" if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else "gloo")
    return ctx, ctx.device(device_pref)
