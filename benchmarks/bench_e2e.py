"""End-to-end figures against the sandbox over real HTTP: prints, asserts nothing.

    python benchmarks/bench_e2e.py [--requests 10000] [--creates 1000]

- reading live state with N requests: wall time, GETs sent, peak Python memory;
- planning N declared requests against it;
- applying C creates (with approvals) at several --parallelism values, with 2 ms of
  sandbox latency per call to stand in for a network.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path
from tempfile import TemporaryDirectory

from tyksync.applier import Applier
from tyksync.client import DashboardClient
from tyksync.manifest import load_manifests
from tyksync.pipeline import plan_for, plan_live
from tyksync.sandbox import Faults, Sandbox

SECRET = "bench-secret"


def seed(sb: Sandbox, developers: int, requests: int) -> list[str]:
    emails = [f"dev{i}@example.com" for i in range(developers)]
    devs = [sb.store.add_developer(e)["id"] for e in emails]
    pols = [sb.store.add_policy(f"Plan {i}", id=f"plan-{i}")["_id"] for i in range(10)]
    sb.store.add_requests(
        {
            "developer_id": devs[i % developers],
            "policies": [pols[(i // developers) % 10]],
            "approved": i % 2 == 0,
            "fields": {"tyksync_owner": "bench", "ticket": f"T-{i}"},
        }
        for i in range(requests)
    )
    return emails


def write_manifest(folder: Path, emails: list[str], requests: int) -> None:
    lines = ["version: 1", "owner: bench", "developers:"]
    per: dict[str, list[str]] = {}
    for i in range(requests):
        per.setdefault(emails[i % len(emails)], []).append(
            f"    - plan: Plan {(i // len(emails)) % 10}\n      fields: {{ticket: T-{i}}}"
        )
    for email, entries in per.items():
        lines.append(f"  {email}:")
        lines.extend(entries)
    (folder / "bench.yaml").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=1_000)
    args = parser.parse_args()
    n = args.requests

    with Sandbox(SECRET) as sb, TemporaryDirectory() as tmp:
        emails = seed(sb, max(1, n // 10), n)
        client = DashboardClient(sb.url, SECRET)
        sb.reset_counts()
        started = time.perf_counter()
        live = client.read_live()
        read_s = time.perf_counter() - started
        gets = sum(v for (m, _), v in sb.counts().items() if m == "GET")
        tracemalloc.start()
        client.read_live()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"read live state: {n} requests in {read_s * 1000:.0f} ms, {gets} GETs")
        print(f"                 peak Python memory {peak / 2**20:.1f} MiB")

        write_manifest(Path(tmp), emails, n)
        started = time.perf_counter()
        manifests = load_manifests([Path(tmp)])
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        plan = plan_for(manifests, live)
        plan_s = time.perf_counter() - started
        print(f"load manifests:  {n} requests in {load_s * 1000:.0f} ms")
        print(f"resolve + plan:  {plan_s * 1000:.0f} ms, {len(plan.actions)} actions")

    for parallelism in (1, 4, 8):
        with Sandbox(SECRET) as sb, TemporaryDirectory() as tmp:
            emails = seed(sb, max(1, args.creates // 10), 0)
            write_manifest(Path(tmp), emails, args.creates)
            client = DashboardClient(sb.url, SECRET)
            manifests = load_manifests([Path(tmp)])
            plan = plan_live(client, manifests)
            sb.faults = Faults(latency=0.002)
            started = time.perf_counter()
            result = Applier(client, parallelism=parallelism).apply(plan)
            apply_s = time.perf_counter() - started
            assert result.ok
            print(
                f"apply {args.creates} creates+approvals, parallelism {parallelism}: "
                f"{apply_s:.2f} s ({args.creates / apply_s:.0f} requests/s)"
            )


if __name__ == "__main__":
    main()
