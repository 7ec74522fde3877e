"""Safe checkpoint loading shared by every network of the package.

Always ``weights_only=True`` (a pickle that would execute code is refused, never run) and
``map_location`` to the target device (the official SEKD files were saved on CUDA).
:func:`safe_torch_load` is the package's one ``torch.load``, with its failures translated
into one-line :class:`CheckpointError` s; state dicts and state files are read through it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..common.errors import CheckpointError  # noqa: F401  (the package's one checkpoint error)
from ..common.text import first_line


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2 = b"\x80\x02"  # legacy torch.save files (e.g. the official SEKD checkpoints)


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or Inf, naming the tensors (they would give 0 keypoints silently)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN or Inf) in {len(bad)} tensor(s): {bad[:10]}")


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure one :class:`CheckpointError`
    naming the file (missing, a folder, not a torch file, damaged, or holding Python objects
    that ``weights_only`` refuses: nothing is executed, torch's advice to retry unsafely is dropped)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"expected a checkpoint file, got a directory: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL_2)):
        # text, random bytes...: torch.load would fail with a KeyError or IndexError, or with
        # advice to retry with weights_only=False, which must never be taken for such a file
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive "
                              "nor a legacy torch pickle)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e).strip()
        if "weights_only" not in text and "Unsupported" not in text and "global" not in text.lower():
            raise CheckpointError(f"{path}: damaged PyTorch checkpoint ({first_line(e, sentence=True)})") from None
        raise CheckpointError(
            f"{path}: refused to load (weights_only=True only allows tensors and plain "
            f"containers; this file holds other Python objects, nothing was executed)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError,
            AttributeError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged PyTorch checkpoint ({first_line(e, sentence=True)})") from None


def load_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint and return its state dict.

    Accepts a bare state dict or the common wrappers ``{"state_dict": ...}`` /
    ``{"model": ...}``.
    """
    path = Path(path)
    obj = safe_torch_load(path, map_location)
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
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)
    return model
