"""Writing files so that a crash never leaves a torn one."""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`:
    a reader sees the old file or the new one, never half of one. The file is mode 0600
    (mkstemp's), which suits files that may hold credentials."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


STATE_DIR = ".tyksync"


def ensure_state_dir(folder: Path) -> None:
    """Create `folder`; if it is tyksync's own `.tyksync/`, keep it out of git: it holds the
    sandbox state (with its keys) and the journal, which belong to no commit."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == STATE_DIR:
        ignore = folder / ".gitignore"
        if not ignore.exists():
            with suppress(OSError):
                ignore.write_text("# made by tyksync: local state, never committed\n*\n")
