"""The pairs file (hloc's ``name0 name1`` per line): reading, writing, and the one rule that
keeps a pair list clean (no self-pair, no pair twice in either order).

File format: hloc's ``name0 name1`` per line for plain names. A name that hloc's
whitespace split cannot carry (it holds whitespace, or starts with ``"`` or ``#``) is
written as a JSON string, e.g. ``"my photo.jpg" b.jpg``; such a line starts with ``"`` or
has ``"`` after the first token and is read back exactly. Plain lines stay readable by
hloc and any reader that splits on whitespace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..common.errors import InputError
from ..common.files import write_atomic

Pair = tuple[str, str]


class PairsError(InputError):
    """Invalid pairs input (bad file line, unknown name, empty set of images...)."""


def unique_pairs(pairs: Iterable[Sequence[str]]) -> list[Pair]:
    """Drop self-pairs and repeated pairs (in either order), keeping the first occurrence."""
    seen: set[frozenset] = set()
    out: list[Pair] = []
    for name0, name1 in pairs:
        if name0 == name1:
            continue
        key = frozenset((name0, name1))
        if key in seen:
            continue
        seen.add(key)
        out.append((name0, name1))
    return out


def _needs_quotes(name: str) -> bool:
    return not name or name[0] in '"#' or any(c.isspace() for c in name)


def format_name(name: str) -> str:
    """A name as written in a pairs file: as is when plain, else as a JSON string."""
    return json.dumps(name, ensure_ascii=False) if _needs_quotes(name) else name


def _parse_line(line: str) -> list[str]:
    """The names of one line: whitespace-separated tokens, JSON strings where quoted."""
    decoder, names, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(line) and line[i].isspace():
            i += 1
        if i >= len(line):
            return names
        if line[i] == '"':
            name, i = decoder.raw_decode(line, i)
        else:
            j = i
            while j < len(line) and not line[j].isspace():
                j += 1
            name, i = line[i:j], j
        names.append(name)


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Pairs of a pairs file as written (first two names of each line; ``#`` comments and
    blank lines skipped). A line with fewer than two names is an error naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise PairsError(f"{path} is not a text pairs file (not UTF-8 at byte {error.start})") from None
    except OSError as error:
        raise FileNotFoundError(f"cannot read pairs file {path}: {error}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            names = _parse_line(line)
        except json.JSONDecodeError as error:
            raise PairsError(f"{path}:{number}: bad quoted name ({error.msg}) in {line!r}") from None
        if len(names) < 2:
            raise PairsError(f"{path}:{number}: expected 'name0 name1', got {line!r}")
        pairs.append((names[0], names[1]))
    return pairs


def write_pairs(path: str | os.PathLike, pairs: Iterable[Sequence[str]]) -> Path:
    """Write one pair per line (atomically); names that need it are quoted (see module doc)."""
    return write_atomic(path, "".join(f"{format_name(a)} {format_name(b)}\n" for a, b in pairs))
