"""What every benchmark shares: one results envelope, one run loop over methods, one writer.

A benchmark is a small task module that builds its ``settings``, evaluates one method at a
time and renders its markdown; this module does the rest the same way for all of them::

    results = new_results("hpatches", settings)
    run_methods(results, labels, evaluate, skip_reason=..., save=lambda r: save(output, r, render(r)))
    return results                      # exit code: exit_code(results)

The envelope (``results.json``), the same top-level keys in every benchmark:

* ``protocol``: the benchmark (and its protocol);
* ``settings``: everything that decides the numbers (datasets, configs, thresholds, overrides);
* ``environment``: versions and device;
* ``methods``: ``{label: summary}`` of the methods that ran;
* ``rows``: per-item rows (a pair, a scene, an image), each naming its ``method``;
* ``skipped``: ``{label: reason}`` (missing weights, a method the scene cannot run);
* ``failed``: ``{label: "Error: message"}`` -- one failing method never loses the others.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import __version__
from ..common import write_atomic, write_json
from ..common.files import pyplot  # noqa: F401 - core.pyplot: the benchmarks' plots
from ..common.errors import DiskFullError
from ..common.locks import FolderLockedError
from ..common.text import first_line, fmt  # noqa: F401 - fmt: the table cell of every benchmark

logger = logging.getLogger(__name__)

ENVELOPE_KEYS = ("protocol", "settings", "environment", "methods", "rows", "skipped", "failed")


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of what produced the numbers, and the device (``None``: not applicable)."""
    import cv2
    import torch

    env = {"sekd_plugin": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "opencv": cv2.__version__, "machine": platform.machine()}
    try:
        import pycolmap

        env["pycolmap"] = pycolmap.__version__
    except ImportError:  # optional for the homography and speed benchmarks
        pass
    if device is not None:
        env["device"] = device
    return env


def new_results(protocol: str, settings: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """An empty envelope (see the module docstring)."""
    return {"protocol": protocol, "settings": dict(settings), "environment": environment(device),
            "methods": {}, "rows": [], "skipped": {}, "failed": {}}


class MethodFailed(Exception):
    """Raised by ``evaluate`` for a method that failed on some items but may have finished others
    (a scene of several): it goes into ``failed`` with this message, and what it finished
    (``summary``, None when nothing) into ``methods`` and ``rows``."""

    def __init__(self, message: str, summary: dict[str, Any] | None, rows: list[dict[str, Any]]):
        super().__init__(message)
        self.summary, self.rows = summary, rows


def run_methods(
    results: dict[str, Any],
    labels: Iterable[str],
    evaluate: Callable[[str], tuple[dict[str, Any], list[dict[str, Any]]]],
    skip_reason: Callable[[str], str | None] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every method into ``results``, isolating failures.

    ``evaluate(label) -> (summary, rows)``; ``skip_reason(label)`` says why a method cannot run
    (``None``: it can). An exception other than an interrupt or a held work folder
    (:class:`~sekd_plugin.common.locks.FolderLockedError`: the command stops, naming the holder)
    or a full disk (:class:`~sekd_plugin.common.errors.DiskFullError`) is
    recorded in ``failed`` with its one-line message and the loop goes on (:class:`MethodFailed`
    keeps what the method finished); ``save(results)`` runs after every method so that an
    interrupted run keeps what it finished.
    """
    for label in labels:
        reason = skip_reason(label) if skip_reason else None
        if reason:
            logger.warning(reason)
            results["skipped"][label] = reason
        else:
            try:
                summary, rows = evaluate(label)
            except (KeyboardInterrupt, FolderLockedError, DiskFullError):  # the command stops, saying why
                raise
            except MethodFailed as error:
                logger.error("%s failed: %s", label, error)
                results["failed"][label] = str(error)
                if error.summary is not None:
                    results["methods"][label] = error.summary
                results["rows"].extend({"method": label, **r} for r in error.rows)
            except Exception as error:  # noqa: BLE001 - one failing method must not lose the others
                message = f"{type(error).__name__}: {first_line(error)}"
                logger.error("%s failed: %s", label, message)
                results["failed"][label] = message
            else:
                results["methods"][label] = summary
                results["rows"].extend({"method": label, **r} for r in rows)
        if save:
            save(results)
    if save:  # also when there was no method at all
        save(results)
    return results


def exit_code(results: dict[str, Any]) -> int:
    """1 when a method failed (its reason is in ``failed``), else 0."""
    return 1 if results.get("failed") else 0


def save(output: str | Path, results: dict[str, Any], markdown: str) -> None:
    """``results.json`` and ``results.md`` into ``output``, each written atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "results.json", results)
    write_atomic(output / "results.md", markdown)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (cells already formatted, see :func:`fmt`)."""
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def outcome_lines(results: dict[str, Any]) -> list[str]:
    """Markdown lines naming the skipped and failed methods with their reasons."""
    lines = []
    for key, title in (("skipped", "Skipped"), ("failed", "Failed")):
        if results.get(key):
            # a reason that already names its method (the weights' message) is not prefixed twice
            lines += ["", f"{title}:"] + [f"- {v}" if str(v).startswith(f"{k} ") else f"- {k}: {v}"
                                          for k, v in results[key].items()]
    return lines
