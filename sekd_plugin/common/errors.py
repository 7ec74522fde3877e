"""User-facing error types.

Every error a user can cause (a bad conf key, a file that is not what it should be, an image
too small for a network) is a :class:`UserError`; :func:`sekd_plugin.common.run_cli` prints
it as one line and exits 2. Anything else is a bug and keeps its traceback. The types also
derive from ``ValueError`` so callers of the Python API can catch them the usual way.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input; its message names the file/key/value."""


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid (the message names it)."""


class InputError(UserError, ValueError):
    """An input file or value cannot be used (the message names it)."""


class CheckpointError(InputError):
    """A weights or state file cannot be loaded (missing, corrupt, wrong structure)."""


class ImageTooSmallError(InputError):
    """An image is smaller than the network can process (the message gives both sizes)."""


class DiskFullError(UserError):
    """A write failed (or would fail) because the disk is full; what was written before is kept.

    ``str()`` is ``<path>: no space left on device (<detail>)``; writers that count their
    entries re-raise it with the count (``8 pairs written, resume after freeing space``).
    """

    def __init__(self, path, detail: str | None = None, written: int | None = None, unit: str = "entries"):
        self.path = path
        if written is not None:
            detail = f"{written} {unit} written, resume after freeing space"
        self.detail = detail or "what was written before is kept; free space and run the same command again"
        super().__init__(f"{path}: no space left on device ({self.detail})")


class PartialFailure(UserError):
    """The command finished, but some of its inputs failed (exit status 1)."""

    def __init__(self, message: str, failed: dict[str, str] | None = None):
        super().__init__(message)
        self.failed = dict(failed or {})

