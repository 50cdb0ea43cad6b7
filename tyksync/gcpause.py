"""Pause Python's cyclic garbage collector while a large, acyclic object graph is built.

A 100k-request plan allocates millions of containers (decoded requests, models, actions)
and frees almost none of them until it ends: every collection the allocations trigger
walks them all again, for nothing, and at 100k that was 40% of a plan's time. Reference
counting still frees everything as usual while paused; only cycles wait for the end.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False
# For a process that ends soon after (the `tyksync` command sets it): when the last pause
# ends, move what was built to the collector's permanent generation (gc.freeze) rather
# than have the next collections walk all of it once more. Reference counting still frees
# it; only cycles among it would wait for the end of the process.
freeze_on_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Nested and concurrent uses are fine: the collector runs again after the last one,
    if it was running before the first."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                if freeze_on_resume:
                    gc.freeze()
                gc.enable()
