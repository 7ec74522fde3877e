"""The one device choice of every command."""

from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else CPU.

    Asking for CUDA on a machine without it is a :class:`ConfigError`, not a crash later.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"invalid device '{device}': {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available on this machine")
    return device
