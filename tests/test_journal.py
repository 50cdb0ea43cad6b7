"""The journal's write-ahead rule under parallel writers: a line announcing a call is on
disk when `write` (or, for a phase's calls, `announce`) returns; a `*.done` line is written
at once and made durable by the next fsync (or by closing the journal)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tyksync import journal as journal_module
from tyksync.journal import Journal


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of whole lines in the file when each fsync started (what it makes
    durable)."""
    started: list[int] = []
    lock = threading.Lock()
    real = os.fsync

    def fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        lines = os.pread(fd, size, 0).count(b"\n")
        with lock:
            started.append(lines)
        real(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    return started


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What each os.write of the journal wrote."""
    written: list[bytes] = []
    real = os.write

    def write(fd: int, data: bytes) -> int:
        written.append(data)
        return real(fd, data)

    monkeypatch.setattr(journal_module.os, "write", write)
    return written


def _line_number(path: Path, marker: str) -> int:
    """1-based number of the line holding `marker`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if json.loads(line).get("marker") == marker:
            return number
    raise AssertionError(f"{marker} is not in the journal")


def test_an_announcement_is_on_disk_when_write_returns_even_with_16_writers(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    late: list[str] = []

    def worker(w: int) -> None:
        for i in range(40):
            marker = f"{w}-{i}"
            journal.write("create.sent", None, marker=marker)
            # An fsync that started once this line was in the file has ended.
            if max(fsyncs, default=0) < _line_number(path, marker):
                late.append(marker)
            journal.write("create.done", None, marker=f"{marker}-done")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    assert late == []
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 16 * 40 * 2 and all(json.loads(line) for line in lines)
    # Writers shared fsyncs, and `*.done` lines waited for none of their own.
    assert len(fsyncs) <= 16 * 40 + 1
    assert max(fsyncs) == len(lines)  # closing made the last `*.done` lines durable


def test_a_done_line_is_written_at_once_and_made_durable_by_the_next_fsync(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.write("apply.start", None)
    assert fsyncs == [1]
    journal.write("approve.done", None, request_id="r1")
    assert fsyncs == [1]  # no wait for the disk
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1])["event"] == (
        "approve.done"
    )  # but written: a killed process keeps it
    journal.write("delete.sent", None, request_id="r2")
    assert fsyncs == [1, 3]  # the announcement's fsync covers the line before it
    journal.write("delete.done", None, request_id="r2")
    journal.close()
    assert fsyncs == [1, 3, 4]


def test_a_phase_s_announcements_take_one_write_and_one_fsync(
    tmp_path: Path, fsyncs: list[int], writes: list[bytes]
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.write("apply.start", None)
    journal.write("create.done", None, marker="before")
    writes.clear()  # what was written before this point does not count
    calls = [(None, {"marker": f"m{n}", "attempt": 1}) for n in range(500)]
    journal.announce("approve.sent", calls)
    assert len(writes) == 1
    assert fsyncs == [1, 502]  # on disk on return, the `*.done` line before them too
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [e["marker"] for e in entries[2:]] == [f"m{n}" for n in range(500)]
    assert {e["event"] for e in entries[2:]} == {"approve.sent"}
    assert len({e["run"] for e in entries}) == 1
    journal.announce("delete.sent", [])  # nothing to announce: no fsync
    assert fsyncs == [1, 502]
    journal.close()


def test_a_failing_fsync_fails_every_writer_waiting_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fsync", broken)
    with pytest.raises(Exception, match="cannot write: Input/output error"):
        journal.write("create.sent", None)
    with pytest.raises(Exception, match="cannot write: Input/output error"):
        journal.announce("create.sent", [(None, {"op": "x"})])
    journal.write("create.done", None)  # waits for no fsync
    journal.close()  # a failing last fsync is not an error on closing


def test_entries_written_for_later_wait_for_no_fsync_until_sync(
    tmp_path: Path, fsyncs: list[int], writes: list[bytes]
) -> None:
    """A create's `create.done` and the announcement of the approval that may follow it go
    out in one write, waiting for no disk; `sync` makes them durable before any approval."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.write("apply.start", None)
    writes.clear()  # what was written before this point does not count
    for n in range(3):
        journal.entries(
            [("create.done", None, {"marker": n}), ("approve.sent", None, {"marker": n})],
            sync=False,
        )
    assert len(writes) == 3 and all(w.count(b"\n") == 2 for w in writes)
    assert fsyncs == [1]  # nothing waited for the disk
    journal.sync()
    assert fsyncs == [1, 7]
    journal.sync()  # nothing new: no fsync
    assert fsyncs == [1, 7]
    events = [json.loads(line)["event"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert events == ["apply.start"] + ["create.done", "approve.sent"] * 3
    journal.close()
    assert fsyncs == [1, 7]
