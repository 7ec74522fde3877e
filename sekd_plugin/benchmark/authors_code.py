"""The authors' SEKD code as a timing reference for ``benchmark speed --authors-code DIR``.

``DIR`` is a checkout of the authors' release (aliyun/Self-Evolving-Keypoint-Demo, the commit
the parity fixture names): nothing of it is shipped or copied here; its ``nets.SEKD`` class
is imported from ``DIR`` and called the way its own HPatches export does (a float gray image
in [0, 1], ``detectAndCompute``), single scale, on the CPU. Its loader calls ``torch.load``
without ``map_location`` on a checkpoint saved from CUDA, so that one call is mapped to the
CPU while the class is built.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..common.errors import ConfigError


@contextlib.contextmanager
def _cpu_torch_load() -> Iterator[None]:
    original = torch.load
    torch.load = functools.partial(original, map_location="cpu", weights_only=False)
    try:
        yield
    finally:
        torch.load = original


def load(folder: str | Path, weights: str | Path, confidence_threshold: float = 0.55, nms_radius: int = 4,
         max_keypoints: int = 500) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The authors' extractor from the checkout ``folder``: ``f(gray H x W float32 in [0, 1])
    -> (keypoints 3 x N, descriptors 128 x N)``, their defaults (single scale, no sub-pixel)."""
    folder = Path(folder).resolve()
    if not (folder / "nets" / "sekd.py").is_file():
        raise ConfigError(f"--authors-code {folder}: not a checkout of aliyun/Self-Evolving-Keypoint-Demo "
                          "(nets/sekd.py is missing)")
    if not Path(weights).is_file():
        raise ConfigError(f"{weights}: the official checkpoint is missing (python -m sekd_plugin.weights fetch sekd)")
    sys.path.insert(0, str(folder))
    try:
        nets = importlib.import_module("nets")
        with _cpu_torch_load():
            extractor = nets.SEKD(weights_path=str(weights), confidence_threshold=confidence_threshold,
                                  nms_radius=nms_radius, max_keypoints=max_keypoints, cuda=False)
    except ImportError as error:
        raise ConfigError(f"--authors-code {folder}: cannot import its nets package ({error})") from None
    finally:
        sys.path.remove(str(folder))
    return extractor.detectAndCompute
