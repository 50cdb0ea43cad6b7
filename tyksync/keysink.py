"""The key sink: where issued keys go, and the only place they go.

One JSON line per key, appended to a file that only its owner can read, flushed and fsynced
as each key arrives so that a crash loses none that were written.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

from tyksync.errors import TyksyncError


class KeySinkError(TyksyncError):
    pass


class KeySink:
    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise KeySinkError(
                    f"--key-sink {path}: is a symbolic link; refusing to follow it"
                ) from None
            raise KeySinkError(f"--key-sink {path}: cannot open: {e.strerror}") from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_mode & 0o077:
            problem = (
                f"can be read or written by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run chmod 600 {path}"
            )
        elif hasattr(os, "getuid") and info.st_uid != os.getuid():
            problem = "belongs to another user"
        if problem:
            os.close(fd)
            raise KeySinkError(f"--key-sink {path}: {problem}; refusing to write keys to it")
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.broken = False  # once a write failed, no further key should be issued

    def write(self, *, developer: str, policies: list[str], request_id: str, key: str) -> None:
        line = json.dumps(
            {
                "developer": developer,
                "policies": policies,
                "request_id": request_id,
                "key": key,
                "issued_at": datetime.now(timezone.utc).isoformat(),
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
