"""Safe checkpoint loading shared by every network of the package.

Always ``weights_only=True`` (a pickle that would execute code is refused, never run) and
``map_location`` to the target device (the official SEKD files were saved on CUDA).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..common.errors import CheckpointError  # noqa: F401  (the package's one checkpoint error)


def load_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint and return its state dict.

    Accepts a bare state dict or the common wrappers ``{"state_dict": ...}`` /
    ``{"model": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load (weights_only=True only allows tensors and plain "
            f"containers; this file holds other Python objects, nothing was executed): {first}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    return dict(obj)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatch {shapes}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(problems)
        )


def load_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load ``path`` into ``model`` with ``strict=True`` after a readable key/shape check."""
    state = load_state_dict(path, map_location)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model
