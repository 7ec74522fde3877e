"""Floating-point operations of a network, counted from its layers.

:func:`count_flops` runs a callable once under ``torch.utils.flop_counter.FlopCounterMode``,
which adds up the operations of every convolution and matrix product that actually runs
(``aten.convolution``, ``mm``, ``addmm``, ``bmm``, attention ...), whether called through an
``nn.Module`` or functionally, and for every scale a multi-scale extractor visits. One
multiply-add counts as 2 FLOP; element-wise work (activations, normalisation, pooling,
interpolation, NMS) is not counted, as usual. Papers often report multiply-adds as "FLOPs"
(e.g. ALIKE's table, made with thop): that is :func:`count_flops` / 2, given as ``gmac``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOP (2 per multiply-add) of the convolutions / matrix products run by ``fn(*args, **kwargs)``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def has_parameters(model: nn.Module) -> bool:
    """Whether ``model`` holds learned weights (a learned method), as opposed to SIFT/ORB/..."""
    return any(True for _ in model.parameters())


def model_gflops(model: nn.Module, inputs: Any) -> dict[str, float] | None:
    """``{"gflop", "gmac"}`` of one call ``model(inputs)`` (in 1e9), or None for a model
    without learned weights (its work is not convolutions)."""
    if not has_parameters(model):
        return None
    flops = count_flops(model, inputs)
    return {"gflop": flops / 1e9, "gmac": flops / 2e9}
