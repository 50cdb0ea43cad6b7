"""Helpers shared by the test modules: the in-process CLI result, loading scripts/."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


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


def load_script(name: str) -> ModuleType:
    """Import scripts/NAME.py (not a package) once, under its own name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
