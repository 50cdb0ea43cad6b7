"""Files tyksync writes: opened safely, and written so that a crash never leaves a torn one.

Every file tyksync writes (key sink, journal, saved plans, sandbox state) may hold
credentials or a record of them, and tyksync may run in a shared folder or a CI workspace
that someone else can write to. So a file is never reached through a symlink (which could
point the keys at a file another user reads), must be a regular file (a FIFO would block
or hand the keys to whoever reads it), is created 0600, and an existing one that others
can read or write, or that another user owns, is refused rather than quietly used.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

from tyksync.errors import TyksyncError
from tyksync.escape import printable


class UnsafeFileError(TyksyncError):
    """A file tyksync was asked to write is not one it can safely write."""


def open_private(path: Path, flags: int, *, what: str = "", devices: bool = False) -> int:
    """Open `path` with `flags` (O_CREAT creates it 0600) and return the descriptor, or
    raise UnsafeFileError naming `what` (the option, e.g. "--key-sink") and the path.

    `devices=True` also accepts a character device such as /dev/null, as a way to send
    the file nowhere; its mode and owner are the system's, not a sign of a mistake.
    """
    # O_NONBLOCK: opening a FIFO for writing would otherwise wait for a reader, forever.
    # It is cleared below once the file is known to be regular.
    safe = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | safe, 0o600)
    except OSError as e:
        raise UnsafeFileError(_refusal(path, what, _open_problem(e))) from None
    try:
        info = os.fstat(fd)
        if not (devices and stat.S_ISCHR(info.st_mode)):
            problem = _problem(info, path)
            if problem:
                raise UnsafeFileError(_refusal(path, what, problem))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _problem(info: os.stat_result, path: Path) -> str | None:
    """Why a file with this stat (an lstat: a link is not followed) must not be written,
    or None when it is a private regular file of ours."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link; refusing to follow it"
    if not stat.S_ISREG(info.st_mode):
        return f"is {_kind(info.st_mode)}, not a regular file"
    if info.st_uid != os.getuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"can be read or written by others (mode {mode:o}); "
            f"run chmod 600 {printable(str(path))}"
        )
    return None


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file (one byte more tells the caller it is
    too large). Opened without blocking, so that a FIFO or a terminal named by mistake
    (or by an attacker) is refused at once (OSError, "not a regular file") instead of
    waiting forever for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read(limit + 1)


def check_private(path: Path, *, what: str = "", devices: bool = False) -> None:
    """Refuse `path` if it exists and is not a private regular file of ours; for a file
    that is replaced rather than opened, or to refuse one early, before any other work.
    `devices` as for `open_private`."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UnsafeFileError(_refusal(path, what, f"cannot use it: {e.strerror}")) from None
    if devices and stat.S_ISCHR(info.st_mode):
        return
    problem = _problem(info, path)
    if problem:
        raise UnsafeFileError(_refusal(path, what, problem))


def _refusal(path: Path, what: str, problem: str) -> str:
    name = printable(str(path))
    return f"{what} {name}: {problem}" if what else f"{name}: {problem}"


def _open_problem(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "is a symbolic link; refusing to follow it"
    if e.errno == errno.ENXIO:  # a FIFO with no reader, opened without blocking
        return "is a named pipe (FIFO), not a regular file"
    if e.errno == errno.EISDIR:
        return "is a folder, not a regular file"
    return f"cannot open: {e.strerror}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`:
    a reader sees the old file or the new one, never half of one. The file is mode 0600
    (mkstemp's), which suits files that may hold credentials.

    A `path` that is a symlink, or not a private regular file of ours, is refused: the
    rename would not write through a link, but replacing what a person pointed somewhere
    on purpose, or a file someone else owns, is not ours to do quietly.
    """
    check_private(path)
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


# tyksync's local state: the sandbox's, the journal. One spelling, here.
STATE_DIR = Path(".tyksync")
DEFAULT_SANDBOX_STATE = STATE_DIR / "sandbox.json"


def ensure_state_dir(folder: Path) -> None:
    """Create `folder`; if it is tyksync's own `.tyksync/`, keep it out of git: it holds the
    sandbox state (with its keys) and the journal, which belong to no commit."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == STATE_DIR.name:
        ignore = folder / ".gitignore"
        if not ignore.exists():
            with suppress(OSError):
                ignore.write_text("# made by tyksync: local state, never committed\n*\n")
