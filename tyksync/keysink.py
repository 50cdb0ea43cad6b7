"""The key sink: where issued keys go, and the only place they go.

One JSON line per key, appended to a file that only its owner can read, flushed and fsynced
as each key arrives so that a crash loses none that were written.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

from tyksync.errors import TyksyncError
from tyksync.escape import printable
from tyksync.fileutil import open_private

log = logging.getLogger(__name__)

GIT_TIMEOUT = 3.0  # seconds


class KeySinkError(TyksyncError):
    pass


class KeySink:
    def __init__(self, path: Path, *, environment: str | None = None) -> None:
        self.path = path
        # With several environments, each key's line says whose Dashboard issued it.
        self.environment = environment
        # A FIFO is refused with the rest: whoever reads it would get the keys, and with
        # no reader an apply would block before its first approval.
        fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what="--key-sink")
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.broken = False  # once a write failed, no further key should be issued
        _warn_if_committable(path)

    def write(self, *, developer: str, policies: list[str], request_id: str, key: str) -> None:
        line = json.dumps(
            {
                "developer": developer,
                "policies": policies,
                "request_id": request_id,
                "key": key,
                "issued_at": datetime.now(timezone.utc).isoformat(),
                **({} if self.environment is None else {"environment": self.environment}),
            },
            sort_keys=True,
        )
        with self._lock:
            if self.broken:
                raise KeySinkError(f"--key-sink {self.path}: failed earlier")
            try:
                self._file.write(line + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as e:
                self.broken = True
                raise KeySinkError(f"--key-sink {self.path}: cannot write: {e.strerror}") from None

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            self.broken = True


def _warn_if_committable(path: Path) -> None:
    """Warn when `path` lies in a git work tree that does not ignore it: one `git add .`
    and the keys are in the history for good. No git, no work tree, or a git that does
    not answer quickly: no warning, since this is advice and must not hold up an apply."""
    try:
        done = subprocess.run(
            ["git", "check-ignore", "-q", "--", path.name],
            cwd=path.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return
    if done.returncode == 1:  # 0: ignored, 128: not a work tree (or git failed)
        log.warning(
            "--key-sink %s is inside a git work tree that does not ignore it: add it to "
            ".gitignore (or keep it outside the repository) so that no commit takes the keys",
            printable(str(path)),
        )
