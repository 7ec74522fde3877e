"""The run's files: ``state.pth`` (progress, model, optimizer, RNG states, history), checked on
load, and the helpers that make them portable (CPU tensors, RNG states as tensors).

``state.pth`` is written atomically after every epoch and every step; it is loaded with
``weights_only=True`` and any damage is a one-line :class:`StateFileError`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..common import write_atomic
from ..common.errors import CheckpointError, InputError
from ..models.checkpoint import safe_torch_load

STEPS = ("detect", "descriptor", "reliability", "detector", "validate")
STATE_FORMAT = "sekd_plugin.train/2"
STATE_KEYS = ("format", "progress", "model", "rng", "history", "images", "config")


class RunError(InputError):
    """A run cannot start or continue (one line for the command line; also a ValueError)."""


class StateFileError(CheckpointError):
    """``state.pth`` is unreadable or not a state of this trainer (the message names it)."""


def atomic_torch_save(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def rng_state() -> dict:
    """Every RNG state as tensors / ints (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": torch.tensor(list(py_state[1]), dtype=torch.int64),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_cpu(obj):
    """Move every tensor of a nested container to the CPU (portable checkpoints)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def images_fingerprint(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def load_state(path: Path) -> dict:
    """``state.pth`` as a dict, checked; any damage is a one-line :class:`StateFileError`.

    Loaded by :func:`~sekd_plugin.models.checkpoint.safe_torch_load` (plain containers and
    tensors only; torch's advice to retry unsafely is not passed on).
    """
    try:
        state = safe_torch_load(path, "cpu")
    except CheckpointError as e:
        raise StateFileError(f"{e} (the file is damaged; start a new run or restore it)") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise StateFileError(f"{path}: not a state file of this trainer (format {fmt!r}, expected {STATE_FORMAT!r})")
    missing = [k for k in STATE_KEYS if k not in state]
    prog = state.get("progress")
    ok = (
        not missing
        and isinstance(prog, dict)
        and {"round", "step", "epoch"} <= set(prog)
        and str(prog["step"]) in STEPS
        and isinstance(state["model"], dict)
        and isinstance(state["history"], str)
    )
    if not ok:
        raise StateFileError(f"{path}: malformed state file (missing or wrong entries: {missing or 'progress/model/history'})")
    try:
        json.loads(state["history"])
    except ValueError:
        raise StateFileError(f"{path}: malformed state file (history is not JSON)") from None
    return state
