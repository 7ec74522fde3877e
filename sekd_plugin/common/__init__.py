"""Mechanisms every part of the package shares: user-facing errors, the CLI policy, atomic
file writes and the device choice. One place each (see README, "Layout")."""

from .cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, Terminated, run_cli, sigterm_as_interrupt
from .device import pick_device
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    ImageTooSmallError,
    PartialFailure,
    UserError,
)
from .files import to_jsonable, write_atomic, write_json

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE", "Terminated",
    "run_cli", "sigterm_as_interrupt", "pick_device", "CheckpointError", "ConfigError", "InputError", "ImageTooSmallError",
    "PartialFailure", "UserError", "to_jsonable", "write_atomic", "write_json",
]
