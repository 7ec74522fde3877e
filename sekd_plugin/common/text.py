"""Short texts for users: an error as one line, a number as one table cell.

One copy each, so that every command shortens torch / h5py errors and prints missing or
non-finite values the same way.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any


def first_line(error: BaseException, limit: int | None = 200, sentence: bool = False) -> str:
    """The first line of ``error``'s message (quotes of a ``KeyError`` stripped), at most
    ``limit`` characters; with ``sentence`` only up to its first ``". "`` (drops torch's advice).
    The error's type name when the message is empty."""
    text = str(error).strip("'\" \t\r\n")
    if not text:
        return type(error).__name__
    line = text.splitlines()[0]
    if sentence:
        line = line.split(". ")[0]
    return line[:limit] if limit is not None else line


def fmt(value: Any, spec: str = ".4f", scale: float = 1.0) -> str:
    """A table cell: ``-`` for None or a non-finite number, ``format(value * scale, spec)`` for
    other numbers (a count, an unscaled int, as it is), ``str(value)`` for anything else."""
    if value is None:
        return "-"
    if isinstance(value, Integral) and scale == 1:
        return str(value)
    if isinstance(value, Real) and not isinstance(value, bool):
        return format(value * scale, spec) if math.isfinite(value) else "-"
    return str(value)
