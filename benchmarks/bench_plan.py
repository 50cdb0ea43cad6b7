"""Planner cost against the number of requests: prints figures, asserts nothing.

    python benchmarks/bench_plan.py [N ...]

The planner should grow linearly: each doubling of N should roughly double the time.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

from tyksync.models import (
    Desired,
    DesiredRequest,
    Developer,
    FileScope,
    KeyRequest,
    LiveState,
    Policy,
)
from tyksync.planner import make_plan


def build(n: int) -> tuple[Desired, LiveState]:
    policies = tuple(Policy(f"{i:024x}", f"p{i}", f"Plan {i}") for i in range(20))
    developers = tuple(Developer(f"{i:024x}", f"dev{i}@example.com") for i in range(n // 4 + 1))
    wanted = []
    live = []
    for i in range(n):
        dev = developers[i // 4]
        pol = policies[i % 20]
        wanted.append(
            DesiredRequest(dev, (pol,), True, {"ticket": f"T-{i}"}, "team", "m.yaml", i + 1)
        )
        if i % 3:  # two thirds exist, some pending, some with other fields
            live.append(
                KeyRequest(
                    id=f"{i:024x}",
                    developer_id=dev.id,
                    policies=(pol.db_id,),
                    approved=i % 3 == 1,
                    fields={"tyksync_owner": "team", "ticket": f"T-{i}" if i % 7 else "old"},
                    date_created=f"2026-01-01T00:00:{i % 60:02d}Z",
                )
            )
    scopes = (FileScope("m.yaml", "team", "owned", frozenset(d.id for d in developers)),)
    return Desired(tuple(wanted), scopes, "0" * 64), LiveState(developers, policies, tuple(live))


def main(sizes: list[int]) -> None:
    print(f"{'requests':>10} {'plan ms':>10} {'us/request':>11} {'peak MiB':>9} {'actions':>8}")
    for n in sizes:
        desired, live = build(n)
        started = time.perf_counter()
        plan = make_plan(desired, live)
        elapsed = time.perf_counter() - started
        # Memory is measured on a second run: tracing slows the first one several times.
        tracemalloc.start()
        make_plan(desired, live)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{n:>10} {elapsed * 1000:>10.1f} {elapsed / n * 1e6:>11.1f} "
            f"{peak / 2**20:>9.1f} {len(plan.actions):>8}"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000, 10_000, 50_000])
