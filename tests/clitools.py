"""Running the CLI in-process, as tests see it: exit code, stdout, stderr, time taken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def all(self) -> str:
        return self.out + self.err


Tyk = Callable[..., CliResult]
