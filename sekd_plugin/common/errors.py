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


class PartialFailure(UserError):
    """The command finished, but some of its inputs failed (exit status 1)."""

    def __init__(self, message: str, failed: dict[str, str] | None = None):
        super().__init__(message)
        self.failed = dict(failed or {})
