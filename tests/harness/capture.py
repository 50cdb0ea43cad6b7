"""What tyksync prints and logs, captured in-process: `run_cli` and `capture_logs`."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tyksync.cli import run

FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


@dataclass
class CliResult:
    """One `tyksync ARGV` run: its exit code, stdout and stderr (its log lines included)."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float = 0.0

    @property
    def all(self) -> str:
        return self.out + self.err


def run_cli(argv: Sequence[str]) -> CliResult:
    """`tyksync ARGV` in this process (`tyksync.cli.run`), its stdout and stderr captured.

    The CLI's log handler writes to whatever sys.stderr is at the time, so its log lines
    land in `err` like the rest of stderr."""
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(argv))
    seconds = time.perf_counter() - started
    return CliResult(tuple(argv), code, out.getvalue(), err.getvalue(), seconds)


class LogCapture(logging.Handler):
    """Every record that reaches it, kept."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def at(self, level: int) -> list[str]:
        """The messages of the records at exactly `level`."""
        return [r.getMessage() for r in self.records if r.levelno == level]

    @property
    def text(self) -> str:
        """Every record formatted (name, level, message, and any traceback), one a line."""
        return "\n".join(FORMAT.format(r) for r in self.records)


@contextlib.contextmanager
def capture_logs(name: str = "tyksync", *, isolate: bool = False) -> Iterator[LogCapture]:
    """Every record of logger `name` and its children, debug included (what `-vv` prints),
    while the block runs; `name=""` is the root logger (urllib3's records too). With
    `isolate`, the records stop there instead of also reaching pytest's handlers and the
    script's output. The logger's level and propagation are restored afterwards."""
    logger = logging.getLogger(name)
    saved = (logger.level, logger.propagate)
    capture = LogCapture()
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    if isolate:
        logger.propagate = False
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.level, logger.propagate = saved
