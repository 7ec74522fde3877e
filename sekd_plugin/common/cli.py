"""The one policy of every ``python -m sekd_plugin.*`` command.

* a :class:`~sekd_plugin.common.errors.UserError` (or a missing / unreadable file) prints
  ``error: <message>`` on one line and exits 2;
* :class:`~sekd_plugin.common.errors.PartialFailure` ("some inputs failed") exits 1;
* Ctrl-C exits 130 and SIGTERM exits 143, each after the command's resume hint;
* anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from .errors import PartialFailure, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


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


def restore_sigterm() -> None:
    """Inside a :func:`sigterm_as_interrupt` block, install its SIGTERM handler again.

    glog (inside pycolmap) installs its failure-signal handler when pycolmap is imported, behind
    Python's back: a SIGTERM then prints a stack dump and kills the process by the signal, with
    no resume hint. Every COLMAP stage calls this first (``reconstruction._colmap_output``), so
    a SIGTERM there ends as elsewhere: the hint and exit status 143. Outside a block: nothing.
    """
    if _depth and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


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
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        text = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        hint = resume_hint() if callable(resume_hint) else resume_hint
        what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"\n{what}" + (f": {hint}" if hint else ""), file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
