"""One process per run folder: ``<run>/.lock`` holds ``pid@host``; a lock left by a dead process
on this host is taken over, a live one refuses the second process with a one-line error."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from .state import RunError

logger = logging.getLogger("sekd_plugin.train")


class RunLock:
    """``<run>/.lock`` with ``pid@host``: one process per run folder; a dead owner's lock is taken over."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.held = False

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()}@{socket.gethostname()}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = self.path.read_text().strip()
                except OSError:
                    owner = ""
                pid_s, _, host = owner.partition("@")
                if pid_s.isdigit() and host == socket.gethostname() and not self._alive(int(pid_s)):
                    logger.warning("taking over the stale lock of process %s (no longer running): %s", pid_s, self.path)
                    self.path.unlink(missing_ok=True)
                    continue
                if not pid_s.isdigit():  # empty / torn lock file (crash while writing it)
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunError(
                    f"{self.path.parent} is in use by process {owner} (lock {self.path}); "
                    "one run folder holds one run -- wait for it, or remove the lock if that process is gone"
                )
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return
        raise RunError(f"cannot take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            try:
                if self.path.read_text().strip().startswith(f"{os.getpid()}@"):
                    self.path.unlink()
            except OSError:
                pass
            self.held = False
