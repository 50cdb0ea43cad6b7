"""`Lazy`: a frozen dataclass field given as a string, or as a function that computes it
the first time it is read. The digests of a plan are such fields: a saved plan and the JSON
plan need them, a text plan does not, and at 100k requests they cost a second or two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

LazyStr = str | Callable[[], str]


class Lazy:
    """Reads give a str; a function given in its place is called once, on the first read.
    The dataclass's own default is "" (what `__get__` gives on the class)."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._slot = f"_lazy_{name}"

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> str: ...
    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> str: ...
    def __get__(self, obj: object | None, owner: type[Any] | None = None) -> str:
        if obj is None:
            return ""
        value: LazyStr = obj.__dict__.get(self._slot, "")
        if not isinstance(value, str):
            value = value()
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: object, value: LazyStr) -> None:
        # A frozen dataclass's __init__ sets fields with object.__setattr__, which comes
        # here; assignments after it are refused by the dataclass as for any field.
        obj.__dict__[self._slot] = value
