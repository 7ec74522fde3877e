"""The one policy of every ``python -m sekd_plugin.*`` command.

* a :class:`~sekd_plugin.common.errors.UserError` (or a missing / unreadable file, or a file
  where an output folder must be made) prints ``error: <message>`` on one line and exits 2;
* :class:`~sekd_plugin.common.errors.PartialFailure` ("some inputs failed") exits 1;
* an error of the machine rather than of the program (disk full or over quota, a file name
  too long, a read-only file system...) is one line naming the file and the cause, exit 2;
* Ctrl-C exits 130 and SIGTERM exits 143, each after the command's resume hint;
* anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import math
import re
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from .errors import PartialFailure, UserError
from .files import is_disk_full
from .memory import retain_freed_memory

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

# OS errors that say something about the machine or the paths given, not about the program.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EROFS, errno.EFBIG,
                                errno.ELOOP, errno.EMFILE, errno.ENFILE, errno.EXDEV, errno.ENOTEMPTY})


def environment_error_line(error: BaseException) -> str | None:
    """``<file>: <cause>`` for an error of the machine (full disk, name too long...), else None."""
    if is_disk_full(error):
        if getattr(error, "path", None) is not None:  # a DiskFullError says it all
            return str(error)
        filename = getattr(error, "filename", None)
        if filename is None:  # h5py: "... filename = '/x/m.h5', ..."
            found = re.search(r"filename = '([^']*)'", str(error))
            filename = found.group(1) if found else None
        where = f"{filename}: " if filename else ""
        return (f"{where}no space left on device (what was written before is kept; "
                "free space and run the same command again)")
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        cause = error.strerror or errno.errorcode.get(error.errno, str(error.errno))
        filename = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        return f"{filename}: {cause.lower()}" if filename else cause.lower()
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C (saving first)."""


def _raise_terminated(signum, frame):  # noqa: ARG001
    raise Terminated()


_depth = 0  # sigterm_as_interrupt blocks entered (main thread)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` so files are closed cleanly.

    Long loops enter it after their imports: pycolmap's logging library replaces the SIGTERM
    handler with a crash dump when it is imported (see :func:`restore_sigterm`). The previous
    handler is restored.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------- argparse types (checked at parse time)
# A bad value is argparse's usage error naming the option and the value (exit 2, no traceback).


def number(kind: type = float, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], Any]:
    """The one argparse type of every numeric option of every command: an ``int`` (``kind=int``) or
    a *finite* ``float`` (never nan or inf), optionally within ``[low, high]`` (``low_open``:
    above ``low``). A bad value is argparse's usage error naming the option and the value."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is not int and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if low is not None and (value <= low if low_open else value < low):
            bound = (f"a finite number above {low:g}" if low_open else "0 or more" if low == 0
                     else f"at least {low:g}")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_int = number(int, low=1)  # an integer >= 1
non_negative_int = number(int, low=0)  # an integer >= 0
finite_float = number(float)  # any finite float
finite_positive_float = number(float, low=0, low_open=True)  # a finite float > 0
non_negative_float = number(float, low=0)  # a finite float >= 0


def comma_list(text: str) -> str:
    """A non-empty comma-separated list, returned with empty items and spaces removed."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return ",".join(items)


def restore_sigterm() -> None:
    """Inside a :func:`sigterm_as_interrupt` block, install its SIGTERM handler again.

    glog (inside pycolmap) installs its failure-signal handler when pycolmap is imported, behind
    Python's back: a SIGTERM then prints a stack dump and kills the process by the signal, with
    no resume hint. Every COLMAP stage calls this first (``reconstruction.mapping.colmap_output``), so
    a SIGTERM there ends as elsewhere: the hint and exit status 143. Outside a block: nothing.
    """
    if _depth and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def quiet_colmap(verbose: bool = False) -> Iterator[None]:
    """COLMAP's glog lines (INFO chatter, ERROR lines such as "Failed to create any sparse
    model" that our own one-line messages already explain) kept off the terminal unless
    ``verbose``; the previous settings come back afterwards."""
    import pycolmap

    log = pycolmap.logging
    previous = (log.alsologtostderr, log.minloglevel, log.stderrthreshold)
    if not verbose:
        log.alsologtostderr, log.minloglevel, log.stderrthreshold = False, max(previous[1], 1), 3
    try:
        yield
    finally:
        log.alsologtostderr, log.minloglevel, log.stderrthreshold = previous


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(message)s")


def run_cli(
    main: Callable[..., Any],
    /,
    *,
    resume_hint: str | Callable[[], str | None] | None = None,
    on_success: Callable[[Any], int | None] | None = None,
    quiet: bool = False,
    **kwargs: Any,
) -> int:
    """Call ``main(**kwargs)`` under the CLI policy and return the exit status.

    ``resume_hint``: printed after an interruption (or a function returning it, for hints
    that depend on what was saved). ``on_success(result)`` prints the summary and may return
    the exit status (default 0).
    """
    setup_logging(quiet)
    retain_freed_memory()  # large CPU tensors reuse freed blocks instead of fresh pages (common/memory.py)
    try:
        with sigterm_as_interrupt():
            result = main(**kwargs)
        code = on_success(result) if on_success is not None else None
        return EXIT_OK if code is None else int(code)
    except PartialFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FileExistsError as error:  # mkdir of an output folder whose name a file holds
        where = error.filename if error.filename2 is None else error.filename2
        print(f"error: {where}: exists and is not a folder (an output folder is needed there; "
              "give another --output or move the file)", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        text = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RuntimeError) as error:
        line = environment_error_line(error)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        hint = resume_hint() if callable(resume_hint) else resume_hint
        what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"\n{what}" + (f": {hint}" if hint else ""), file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
