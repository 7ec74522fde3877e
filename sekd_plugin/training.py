"""``python -m sekd_plugin.train``: the train command, wired to the package's benchmarks.

    python -m sekd_plugin.train --images DIR --output runs/NAME [--config FILE.yaml] [--resume [auto]] [key=value ...]

The trainer (:mod:`sekd_plugin.train`) is a lower layer and never imports the benchmarks; this
top-level command gives it the DEV benchmark of ``val.dev_datasets`` (the homography
benchmark, ``--protocol sekd``) as a callback. Everything else is
:func:`sekd_plugin.train.command.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from .train import command


def dev_eval(weights: str, datasets: list[str], output: Path, label: str, device: torch.device, conf: str) -> dict:
    """The trainer's DEV callback: the HPatches benchmark of a checkpoint in extraction conf ``conf``."""
    from .benchmark.homography.dev import dev_benchmark  # imported when DEV sequences are used

    return dev_benchmark(weights, datasets, output, device.type, label=label, conf=conf)


def main(**kwargs) -> dict:
    """:func:`sekd_plugin.train.command.main` with the package's DEV benchmark."""
    kwargs.setdefault("dev_eval", dev_eval)
    return command.main(**kwargs)


def cli(argv: list[str] | None = None) -> int:
    return command.cli(argv, dev_eval=dev_eval)


if __name__ == "__main__":
    sys.exit(cli())
