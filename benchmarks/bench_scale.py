"""Issue 14's figures at scale, as ratios against a floor measured in the same run.

    python benchmarks/bench_scale.py            # 1k, 10k, 100k live requests (~6-9 min)
    python benchmarks/bench_scale.py --quick    # 1k and 10k only (~1 min)
    python benchmarks/bench_scale.py --sizes 100000 --runs 5 --no-apply
    python benchmarks/bench_scale.py --only apply

The machine may be shared, so every figure is a ratio of two things measured side by side,
interleaved, in this one run (medians), never an absolute time:

- the scenario, built in an in-process sandbox (reads only): N live key requests, N/5
  developers (20k at 100k), 50 policies, 20 manifest files declaring 94% of the requests
  (2% undeclared and owned: deletes; 4% unmanaged; 5% of the declared ones pending:
  approvals). The sandbox renders each listing once and serves the same bytes after.
- the floor: a bare `python` process doing the same 3 GETs (`p=-1`) with requests and
  `json.loads`, nothing else; then `tyksync plan` as a process. Wall from spawn to exit,
  CPU (user + system) and peak RSS from `os.wait4` of each child (started by a small
  launcher process, so that its peak RSS is its own).
- `tyksync validate` of the manifests against a bare process that `yaml.load`s the same
  files with `CSafeLoader`.
- apply: 1,000 creates (each approved: 2,000 calls) with 20 ms of sandbox latency on every
  call, at --parallelism 4, 8 and 16, against the ideal ceil(2000 / p) x 20 ms; the apply
  window is the sandbox's view: first write answered minus 20 ms to last write answered.
  Printed beside it, not judged: the same calls from p threads on raw sockets, what this
  sandbox and machine allow any client (about 1.05-1.09). TCP connections: distinct client
  addresses the sandbox accepted during the p=16 run.
- `tyksync --version` wall (median of 5), next to `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tyksync.sandbox import Faults, Sandbox

SECRET = "bench-scale-secret"
POLICIES = 50
FILES = 20
LATENCY = 0.020
CREATES = 1000
LISTINGS = ("/api/portal/requests", "/api/portal/developers", "/api/portal/policies")

FLOOR = """
import json, os, sys, requests
url, secret = sys.argv[1], os.environ["TYK_DASHBOARD_SECRET"]
session = requests.Session()
for path in sys.argv[2:]:
    answer = session.get(url + path, params={"p": "-1"}, headers={"authorization": secret})
    answer.raise_for_status()
    json.loads(answer.content)
"""

YAML_FLOOR = """
import sys, yaml
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as f:
        yaml.load(f.read(), Loader=yaml.CSafeLoader)
"""

# The apply floor: creates from p threads on raw sockets, one read of the requests once
# all are answered, then the approvals. What is left of the window over the ideal is the
# sandbox's and the machine's.
APPLY_FLOOR = """
import json, os, socket, sys, threading
host, port, p, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
secret = os.environ["TYK_DASHBOARD_SECRET"]
with open(jobs, encoding="utf-8") as f:
    jobs = json.load(f)
ids = [None] * len(jobs)
barrier = threading.Barrier(p)
failed = []

def call(sock, reader, method, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\\r\\nHost: {host}\\r\\nauthorization: {secret}\\r\\n"
            f"Content-Type: application/json\\r\\nContent-Length: {len(data)}\\r\\n\\r\\n")
    sock.sendall(head.encode() + data)
    status = reader.readline()
    length = 0
    while (line := reader.readline()) not in (b"\\r\\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    answer = reader.read(length)
    if status.split()[1:2] != [b"200"]:
        raise RuntimeError(f"{method} {path}: {status!r}")
    return json.loads(answer)

def worker(w):
    try:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        mine = range(w, len(jobs), p)
        for i in mine:
            developer, policy = jobs[i]
            body = {"by_user": developer, "version": "v2", "fields": {},
                    "apply_policies": [policy], "for_plan": policy, "approved": False}
            ids[i] = call(sock, reader, "POST", "/api/portal/requests", body)["Message"]
        if barrier.wait() == 0:
            call(sock, reader, "GET", "/api/portal/requests?p=-1")
        barrier.wait()
        for i in mine:
            call(sock, reader, "PUT", f"/api/portal/requests/approve/{ids[i]}")
    except Exception as e:
        failed.append(repr(e))
        barrier.abort()

threads = [threading.Thread(target=worker, args=(w,)) for w in range(p)]
for t in threads:
    t.start()
for t in threads:
    t.join()
sys.exit(f"apply floor: {failed[0]}" if failed else 0)
"""

# Where a plan's time goes, stage by stage, in a fresh process (as `tyksync plan` does it),
# with the collector's own time measured apart, then cProfile's top functions.
STAGES = """
import cProfile, gc, io, os, pstats, resource, sys, time
from pathlib import Path
pauses = []
def on_gc(phase, info, _t=[0.0]):
    if phase == "start":
        _t[0] = time.perf_counter()
    else:
        pauses.append(time.perf_counter() - _t[0])
gc.callbacks.append(on_gc)
started = time.perf_counter()
from tyksync.client import DashboardClient
from tyksync.manifest import load_manifests, resolve
from tyksync.planner import make_plan
from tyksync.render import render_text
from tyksync import pipeline
try:  # forget the high-water mark inherited from the benchmark (see LAUNCHER)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
def peak():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
marks = [("imports", time.perf_counter() - started, len(pauses), sum(pauses), peak())]
def stage(name, f):
    t, n, g = time.perf_counter(), len(pauses), sum(pauses)
    out = f()
    marks.append((name, time.perf_counter() - t, len(pauses) - n, sum(pauses) - g, peak()))
    return out
url, folder = sys.argv[1], Path(sys.argv[2])
client = DashboardClient(url, os.environ["TYK_DASHBOARD_SECRET"])
profile = cProfile.Profile() if sys.argv[3] == "profile" else None
if profile:
    profile.enable()
manifests = stage("load manifests", lambda: load_manifests([folder]))
paused = getattr(pipeline, "collector_paused", None)
with paused() if paused else open(os.devnull):
    # As `pipeline.plan_live` reads it: the developers' keys only for a file that revokes.
    keys = any(f.revoke for f in manifests.files)
    live = stage("read live state", lambda: client.read_live(keys=keys))
    desired = stage("resolve", lambda: resolve(manifests, live))
    plan = stage("plan", lambda: make_plan(desired, live))
stage("render text", lambda: render_text(plan, io.StringIO(), color=False))
if profile:
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(18)
total = time.perf_counter() - started
for name, seconds, count, gc_s, rss in marks:
    print(
        f"    {name:<16} {seconds:7.2f} s  {seconds / total:4.0%}   GC {gc_s:5.2f} s ({count})"
        f"   peak RSS so far {rss:5.0f} MiB"
    )
print(f"    {'total':<16} {total:7.2f} s          GC {sum(pauses):5.2f} s ({len(pauses)})")
"""

SCALE = 100_000  # the size the plan targets are set at
AT_SCALE = "at 100k"  # the target column of a figure judged only at SCALE
TARGETS = {
    "gets": 3,
    "plan_wall": 1.0,
    "plan_cpu": 1.0,
    "rss": 2.0,
    "validate": 0.5,
    "apply": 1.15,
    "version": 0.15,
}


@dataclass
class Run:
    wall: float
    cpu: float
    rss: int  # bytes
    code: int


# Children are started from this small launcher, not from this process: a child's
# ru_maxrss includes the memory of the process it was forked from (Linux keeps the
# high-water mark across exec), and this one holds the whole scenario.
LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
cpu = usage.ru_utime + usage.ru_stime
print(wall, cpu, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def spawn(argv: Sequence[str], env: dict[str, str], cwd: Path) -> Run:
    """Run a child to its end: wall, CPU and peak RSS of that child alone."""
    child = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    try:
        wall, cpu, rss, code = child.stdout.split()
    except ValueError:
        sys.exit(f"{argv[:4]}: the launcher failed: {child.stderr.decode(errors='replace')}")
    run = Run(float(wall), float(cpu), int(rss), int(code))
    if run.code not in (0, 2):
        sys.exit(f"{argv[:4]} failed ({run.code}): {child.stderr.decode(errors='replace')[-2000:]}")
    return run


def tyksync_argv() -> list[str]:
    script = Path(sys.executable).with_name("tyksync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tyksync"]


# ---- the scenario ---------------------------------------------------------------------------


@dataclass
class Scenario:
    n: int
    developers: list[str]  # ids
    emails: list[str]
    policy_ids: list[str]


def build(sb: Sandbox, n: int) -> Scenario:
    """N requests of N/5 developers over 50 policies. Request j: developer j % D, policies
    distinct per developer; every 10th request names two policies."""
    d = max(1, n // 5)
    store = sb.store
    with store.batch():
        policy_ids = [
            store.add_policy(f"Plan {i:02d}", id=f"plan-{i:02d}")["_id"] for i in range(POLICIES)
        ]
        emails = [f"dev{i:06d}@example.com" for i in range(d)]
        developers = [store.add_developer(e)["id"] for e in emails]
        specs = []
        for j in range(n):
            dev = j % d
            first = (j // d * 7 + dev) % POLICIES
            policies = [first, (first + 1) % POLICIES] if j % 10 == 9 else [first]
            kind = j % 50
            fields = {"ticket": f"T-{j}"}
            if kind != 1 and kind != 2:  # 1, 2: unmanaged (no owner)
                fields["tyksync_owner"] = f"team-{dev % FILES:02d}"
            specs.append(
                {
                    "developer_id": developers[dev],
                    "policies": [policy_ids[p] for p in policies],
                    "approved": j % 20 != 7,  # 5% pending
                    "fields": fields,
                }
            )
        store.add_requests(specs)
    return Scenario(n, developers, emails, policy_ids)


def write_manifests(folder: Path, sc: Scenario) -> int:
    """20 files, one owner each; request j declared unless j % 50 is 0 (owned: deleted), 1
    or 2 (unmanaged)."""
    d = len(sc.developers)
    per_file: list[dict[int, list[str]]] = [{} for _ in range(FILES)]
    declared = 0
    for j in range(sc.n):
        if j % 50 in (0, 1, 2):
            continue
        dev = j % d
        first = (j // d * 7 + dev) % POLICIES
        if j % 10 == 9:
            entry = f"    - plans: [Plan {first:02d}, Plan {(first + 1) % POLICIES:02d}]"
        else:
            entry = f"    - plan: Plan {first:02d}"
        per_file[dev % FILES].setdefault(dev, []).append(
            f"{entry}\n      fields: {{ticket: T-{j}}}"
        )
        declared += 1
    for f, developers in enumerate(per_file):
        lines = ["version: 1", f"owner: team-{f:02d}", "prune: owned", "developers:"]
        for dev in sorted(developers):
            lines.append(f"  {sc.emails[dev]}:")
            lines.extend(developers[dev])
        (folder / f"team-{f:02d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return declared


def payload_bytes(sb: Sandbox) -> int:
    """Render (and so cache) each listing once; the bytes the floor and tyksync download."""
    import requests

    total = 0
    with requests.Session() as s:
        for path in LISTINGS:
            answer = s.get(sb.url + path, params={"p": "-1"}, headers={"authorization": SECRET})
            answer.raise_for_status()
            total += len(answer.content)
    return total


# ---- figures ----------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, bool | None]] = []

    def add(self, figure: str, value: str, ratio: str, target: str, ok: bool | None) -> None:
        self.rows.append((figure, value, ratio, target, ok))
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"  {figure:<46} {value:<34} {ratio:>9}  {target:<8} {verdict}", flush=True)


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def bench_plan(n: int, runs: int, table: Table, validate: bool) -> None:
    print(f"\n== {n:,} live requests ==", flush=True)
    with Sandbox(SECRET) as sb, tempfile.TemporaryDirectory(prefix="tyksync-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        sc = build(sb, n)
        manifests = work / "manifests"
        manifests.mkdir()
        declared = write_manifests(manifests, sc)
        size = payload_bytes(sb)
        print(
            f"  scenario: {len(sc.developers):,} developers, {POLICIES} policies, {FILES} files "
            f"declaring {declared:,}; payload {size / 2**20:.1f} MiB "
            f"(built in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        env = {**os.environ, "TYK_DASHBOARD_SECRET": SECRET, "NO_COLOR": "1"}
        floor_argv = [sys.executable, "-c", FLOOR, sb.url, *LISTINGS]
        plan_argv = [*tyksync_argv(), "plan", "--dashboard", sb.url, str(manifests)]
        floors: list[Run] = []
        plans: list[Run] = []
        gets: list[int] = []
        for i in range(runs):
            # Interleaved, and the order alternated, so that neither side always runs first.
            order: list[Callable[[], None]] = [
                lambda: floors.append(spawn(floor_argv, env, work)),
                lambda: plans.append(spawn_counted(sb, plan_argv, env, work, gets)),
            ]
            for step in order if i % 2 == 0 else reversed(order):
                step()
        fw, pw = med([r.wall for r in floors]), med([r.wall for r in plans])
        fc, pc = med([r.cpu for r in floors]), med([r.cpu for r in plans])
        rss = med([r.rss for r in plans])
        frss = med([r.rss for r in floors])
        # The targets are the issue's, set at 100k: below, start-up (a Python process,
        # its imports) outweighs the work, and the figures are printed for the trend.
        judged = n >= SCALE
        table.add(f"{n:,}: GETs per plan", f"{max(gets)}", "", "3", max(gets) <= TARGETS["gets"])
        table.add(
            f"{n:,}: plan wall / floor",
            f"{pw:.2f} s / {fw:.2f} s",
            f"{pw / fw:.2f}x",
            "<= 1.0x" if judged else AT_SCALE,
            pw / fw <= TARGETS["plan_wall"] if judged else None,
        )
        table.add(
            f"{n:,}: plan CPU / floor",
            f"{pc:.2f} s / {fc:.2f} s",
            f"{pc / fc:.2f}x",
            "<= 1.0x" if judged else AT_SCALE,
            pc / fc <= TARGETS["plan_cpu"] if judged else None,
        )
        table.add(
            f"{n:,}: plan peak RSS / payload",
            f"{rss / 2**20:.0f} MiB / {size / 2**20:.0f} MiB (floor {frss / 2**20:.0f})",
            f"{rss / size:.2f}x",
            "<= 2x" if judged else AT_SCALE,
            rss / size <= TARGETS["rss"] if judged else None,
        )
        if validate:
            files = sorted(str(p) for p in manifests.glob("*.yaml"))
            yfloor_argv = [sys.executable, "-c", YAML_FLOOR, *files]
            validate_argv = [*tyksync_argv(), "validate", str(manifests)]
            yfloors: list[Run] = []
            validates: list[Run] = []
            for i in range(runs):
                pair: list[Callable[[], None]] = [
                    lambda: yfloors.append(spawn(yfloor_argv, env, work)),
                    lambda: validates.append(spawn(validate_argv, env, work)),
                ]
                for step in pair if i % 2 == 0 else reversed(pair):
                    step()
            vw, yw = med([r.wall for r in validates]), med([r.wall for r in yfloors])
            table.add(
                f"{n:,}: validate ({declared:,} decl.) / yaml.load",
                f"{vw:.2f} s / {yw:.2f} s",
                f"{vw / yw:.2f}x",
                "<= 0.5x" if judged else AT_SCALE,
                vw / yw <= TARGETS["validate"] if judged else None,
            )


def profile_plan(n: int) -> None:
    print(f"\n== where a plan's time goes, {n:,} live requests ==", flush=True)
    with Sandbox(SECRET) as sb, tempfile.TemporaryDirectory(prefix="tyksync-bench-") as tmp:
        work = Path(tmp)
        sc = build(sb, n)
        write_manifests(work, sc)
        payload_bytes(sb)
        env = {**os.environ, "TYK_DASHBOARD_SECRET": SECRET}
        for mode in ("time", "profile"):
            child = subprocess.run(
                [sys.executable, "-c", STAGES, sb.url, str(work), mode],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode:
                sys.exit(child.stderr[-3000:])
            lines = child.stdout.splitlines()
            if mode == "profile":
                lines = [line for line in lines if line.strip()][:26]
            print("\n".join(lines), flush=True)


def spawn_counted(
    sb: Sandbox, argv: Sequence[str], env: dict[str, str], cwd: Path, gets: list[int]
) -> Run:
    sb.reset_counts()
    run = spawn(argv, env, cwd)
    gets.append(sum(v for (method, _), v in sb.counts().items() if method == "GET"))
    return run


def bench_apply(parallelisms: Sequence[int], table: Table) -> None:
    print(f"\n== apply: {CREATES:,} creates + approvals, {LATENCY * 1000:.0f} ms a call ==")
    for p in parallelisms:
        window, connections = apply_window(p, tyksync_apply)
        # What this sandbox and machine allow: the same calls from p threads on raw
        # sockets (no HTTP library, no journal), a process of their own as tyksync is.
        floor, _ = apply_window(p, floor_apply)
        ideal = math.ceil(2 * CREATES / p) * LATENCY
        table.add(
            f"apply p={p}: raw-socket floor / ideal",
            f"{floor:.2f} s / {ideal:.2f} s",
            f"{floor / ideal:.2f}x",
            "",
            None,
        )
        table.add(
            f"apply p={p}: window / ideal",
            f"{window:.2f} s / {ideal:.2f} s",
            f"{window / ideal:.2f}x",
            "<= 1.15x",
            window / ideal <= TARGETS["apply"],
        )
        table.add(
            f"apply p={p}: TCP connections",
            f"{connections}",
            "",
            f"= {p}" if p == 16 else "",
            connections <= p if p == 16 else None,
        )


def apply_window(
    p: int, client: Callable[[Sandbox, Scenario, Path, int], None]
) -> tuple[float, int]:
    """The window of `client`'s 2,000 writes on a fresh sandbox, as the sandbox sees it
    (first write answered minus one latency, to the last write answered), and the TCP
    connections it opened."""
    writes: list[float] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        # The handler logs each answer as it sends it: "METHOD PATH STATUS".
        if line.startswith(("POST ", "PUT ")):
            now = time.perf_counter()
            with lock:
                writes.append(now)

    with Sandbox(SECRET, log=log) as sb, tempfile.TemporaryDirectory() as tmp:
        sc = build_empty(sb, CREATES // 5)
        sb.faults = Faults(latency=LATENCY)
        sb.reset_counts()
        client(sb, sc, Path(tmp), p)
        if len(writes) != 2 * CREATES:
            sys.exit(f"apply at p={p}: {len(writes)} writes answered, not {2 * CREATES}")
        return max(writes) - min(writes) + LATENCY, sb.connections()


def tyksync_apply(sb: Sandbox, _sc: Scenario, work: Path, p: int) -> None:
    manifests = work / "manifests"
    manifests.mkdir()
    lines = ["version: 1", "owner: bench", "developers:"]
    for i in range(CREATES // 5):
        lines.append(f"  dev{i:06d}@example.com:")
        lines.extend(f"    - plan: Plan {(i + k) % POLICIES:02d}" for k in range(5))
    (manifests / "bench.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**os.environ, "TYK_DASHBOARD_SECRET": SECRET, "NO_COLOR": "1"}
    argv = [*tyksync_argv(), "apply", "--dashboard", sb.url, str(manifests), "--auto-approve"]
    run = spawn([*argv, "--parallelism", str(p)], env, work)
    if run.code != 0:
        sys.exit(f"apply at p={p}: exit {run.code}")


def floor_apply(sb: Sandbox, sc: Scenario, work: Path, p: int) -> None:
    jobs = [
        (developer, sc.policy_ids[(i + k) % POLICIES])
        for i, developer in enumerate(sc.developers)
        for k in range(5)
    ]
    (work / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    env = {**os.environ, "TYK_DASHBOARD_SECRET": SECRET}
    argv = [sys.executable, "-c", APPLY_FLOOR, "127.0.0.1", str(sb.port), str(p), "jobs.json"]
    spawn(argv, env, work)


def build_empty(sb: Sandbox, developers: int) -> Scenario:
    with sb.store.batch():
        policy_ids = [
            sb.store.add_policy(f"Plan {i:02d}", id=f"plan-{i:02d}")["_id"] for i in range(POLICIES)
        ]
        emails = [f"dev{i:06d}@example.com" for i in range(developers)]
        ids = [sb.store.add_developer(e)["id"] for e in emails]
    return Scenario(0, ids, emails, policy_ids)


def bench_version(table: Table) -> None:
    print("\n== start-up ==")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        bare, version = [], []
        for _ in range(5):
            bare.append(spawn([sys.executable, "-c", "pass"], env, Path(tmp)).wall)
            version.append(spawn([*tyksync_argv(), "--version"], env, Path(tmp)).wall)
    v, b = med(version), med(bare)
    table.add(
        "tyksync --version wall",
        f"{v:.3f} s (python -c pass {b:.3f} s)",
        f"{v / b:.1f}x",
        "<= 0.15 s",
        v <= TARGETS["version"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k only")
    parser.add_argument("--sizes", help="comma-separated request counts")
    parser.add_argument("--runs", type=int, help="interleaved runs at the largest size")
    parser.add_argument("--no-apply", action="store_true")
    parser.add_argument("--only", choices=("plan", "apply", "version"), help="only these figures")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="only: where a plan of N requests spends time"
    )
    args = parser.parse_args()
    if args.profile:
        profile_plan(args.profile)
        return
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"bench_scale: {os.cpu_count()} CPUs, load average {load:.1f} at start")
    table = Table()
    if args.only in (None, "plan"):
        for n in sizes:
            runs = args.runs or (5 if n >= 100_000 else 5 if n >= 10_000 else 7)
            bench_plan(n, runs, table, validate=n == max(sizes))
    if args.only in (None, "apply") and not args.no_apply:
        bench_apply((4, 8, 16), table)
    if args.only in (None, "version"):
        bench_version(table)
    judged = [r for r in table.rows if r[4] is not None]
    missed = [r[0] for r in judged if not r[4]]
    print(
        f"\nsummary: {len(judged) - len(missed)}/{len(judged)} figures at or under target "
        f"(plan figures judged at {SCALE:,})"
        + (f"; missed: {', '.join(missed)}" if missed else "")
        + (
            f"; no plan of {SCALE:,}: the plan figures were not judged"
            if args.only in (None, "plan") and max(sizes) < SCALE
            else ""
        )
        + f" ({time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
