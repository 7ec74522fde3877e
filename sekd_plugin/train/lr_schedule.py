"""Learning-rate schedules of the training steps (per epoch or per optimizer step)."""

from __future__ import annotations

import math

import torch


def make_scheduler(optimizer: torch.optim.Optimizer, conf, steps_total: int):
    """``(scheduler, per_step)``: ReduceLROnPlateau per epoch, or cosine / constant per step with warm-up."""
    oc = conf.optim
    if oc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=oc.patience), False
    warm = max(0, int(oc.warmup_steps))
    total = max(1, int(steps_total))
    floor = float(oc.min_lr_factor)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if oc.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
