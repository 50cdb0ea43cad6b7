"""The apply journal: every mutation, before and after, as fsynced JSON lines.

So that a person can see what an apply did before it was killed. No key is ever written
here: approvals record only whether their key was captured.

Write-ahead: a line announcing a call (`create.sent`, ...) is on disk before the call is
sent. The applier announces the first attempt of every call a phase may send at once,
before the phase starts (`announce`: one write, one fsync), so a `*.sent` line means "this
call may have been sent": a call that a failure or a rival made unnecessary stays announced.
The approval of a request the apply creates is announced as its create is done, in the write
of the `create.done` line, and made durable, with every other, by the one fsync (`sync`) the
approvals wait for: the create phase's workers have the time, the phase change does not.
A retry after a lost answer is announced on its own (`write`), before it is sent. A line
reporting a call's success (`*.done`) is written at once, so a killed process loses nothing
written, but does not wait for the disk: the fsync of the next line that does (a retry's
announcement, a failure, the run's end, or closing) makes it durable too. Waiting for the
disk once or twice a call cost more than the rest of the call's work (issue 14).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tyksync import redact
from tyksync.errors import TyksyncError
from tyksync.fileutil import ensure_state_dir, open_private
from tyksync.plan import Action

# An entry: its event, the action it is about (if any) and its details.
Entry = tuple[str, Action | None, Mapping[str, Any]]


class Journal:
    """Appends to PATH; a Journal(None) records nothing. `context` is added to every entry
    (the commit and CI run applying: `Provenance.journal_context`)."""

    def __init__(self, path: Path | None, context: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.context = dict(context or {})
        self.run = uuid.uuid4().hex[:12]
        self._count = threading.Lock()
        self._fd: int | None = None
        # Lines written, and lines known to be on disk: see `_durable`.
        self._written = 0
        self._synced = 0
        self._syncing = False
        self._sync_state = threading.Condition()
        if path is not None:
            try:
                ensure_state_dir(path.parent)
            except OSError as e:
                raise TyksyncError(f"--journal {path}: cannot open: {e.strerror}") from None
            # /dev/null is a fair way to turn the journal off (it never holds a key), so
            # character devices are accepted; a FIFO is not: with no reader it would block
            # the apply, and it is refused like every other file tyksync writes.
            fd = open_private(
                path, os.O_RDWR | os.O_APPEND | os.O_CREAT, what="--journal", devices=True
            )
            # fsync is for files; a journal sent to /dev/null cannot take it.
            self._sync = stat.S_ISREG(os.fstat(fd).st_mode)
            self._fd = fd
            if self._sync and _ends_torn(fd):
                # A run killed mid-write left half a line: end it, so ours starts clean.
                self._append(["\n"], sync=False, lines=0)

    def write(self, event: str, action: Action | None = None, **details: Any) -> None:
        self.entries([(event, action, details)], sync=not event.endswith(".done"))

    def announce(
        self, event: str, calls: Sequence[tuple[Action | None, Mapping[str, Any]]]
    ) -> None:
        """One `event` line per call (its action, its details), all on disk on return: a
        phase's calls announced with one write and one fsync rather than one of each a call."""
        self.entries([(event, action, details) for action, details in calls], sync=True)

    def entries(self, entries: Sequence[Entry], *, sync: bool) -> None:
        """Entries written with one write; `sync`: on disk on return, else made durable by
        the next fsync (`sync()`, an announcement's, or closing)."""
        if self._fd is None or not entries:
            return
        self._append([self._line(*entry) for entry in entries], sync=sync)

    def sync(self) -> None:
        """Every line written so far on disk on return."""
        if self._fd is not None and self._sync and self._synced < self._written:
            try:
                self._durable(self._written, self._fd)
            except OSError as e:
                raise TyksyncError(f"--journal {self.path}: cannot write: {e.strerror}") from None

    def _line(self, event: str, action: Action | None, details: Mapping[str, Any]) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.now(timezone.utc).isoformat(),
            "run": self.run,
            "event": event,
            **self.context,
        }
        if action is not None:
            entry.update(
                action=action.action,
                developer=action.developer.email or action.developer.id,
                policies=[p.id for p in action.policies],
                planned_request_id=action.request_id,
            )
        entry.update(details)
        return redact.redact(json.dumps(entry, sort_keys=True, default=str)) + "\n"

    def _append(self, text: list[str], *, sync: bool, lines: int | None = None) -> None:
        """Append whole lines with one write(): O_APPEND makes it one append that no other
        writer's can split, so no lock is held across the system call (workers waited for
        each other's there, ~0.2-0.6 ms a call on a loaded 2-core machine). A kill can tear
        only a line being written."""
        fd = self._fd
        assert fd is not None
        data = "".join(text).encode("utf-8")
        try:
            sent = os.write(fd, data)
            while sent < len(data):  # a regular file's short write: the disk is full
                sent += os.write(fd, data[sent:])
            with self._count:  # counted once in the file: see `_durable`
                self._written += len(text) if lines is None else lines
                written = self._written
            if self._sync and sync:
                self._durable(written, fd)
        except OSError as e:
            raise TyksyncError(f"--journal {self.path}: cannot write: {e.strerror}") from None

    def _durable(self, line: int, fd: int) -> None:
        """Return once the `line`-th line written is on disk: after an fsync that started
        after it was written. One fsync makes every line written before it durable, so the
        workers of a parallel apply share one rather than each calling its own (each costs
        CPU, and waits for the disk behind the others). Lines are written while an fsync
        runs."""
        with self._sync_state:
            while self._synced < line and self._syncing:
                self._sync_state.wait()
            if self._synced >= line:
                return  # an fsync that started after this line was written has ended
            self._syncing = True
        covered = self._written  # every line counted here was written before the fsync
        synced = False
        try:
            os.fsync(fd)
            synced = True
        finally:
            with self._sync_state:
                self._syncing = False
                if synced:
                    self._synced = max(self._synced, covered)
                self._sync_state.notify_all()  # a failed fsync: the next writer tries its own

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(TyksyncError):
                self.sync()  # a last `*.done`
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _ends_torn(fd: int) -> bool:
    """Read through the descriptor just opened, not the path, which could be swapped."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
