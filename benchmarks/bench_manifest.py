"""Time `load_manifests` on 10,000 requests spread over 100 files.

python benchmarks/bench_manifest.py [--files 100] [--requests 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tyksync.manifest import load_manifests
from tyksync.manifest.yamlload import _Loader


def write_manifests(folder: Path, files: int, requests: int) -> None:
    per_file = requests // files
    for f in range(files):
        lines = [
            "version: 1",
            f"owner: team-{f:03d}",
            "prune: owned",
            "defaults:",
            "  approved: true",
            "  fields: {cost-centre: cc-1}",
            "developers:",
        ]
        # Two requests per developer: one single-policy, one multi-policy.
        for r in range(0, per_file, 2):
            lines += [
                f"  dev-{f:03d}-{r:04d}@example.com:",
                "    - plan: Gold",
                "      fields: {ticket: OPS-42}",
                "    - plans: [Silver, Reports]",
                "      approved: false",
            ]
        (folder / f"team-{f:03d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_manifests(folder, args.files, args.requests)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            manifests = load_manifests([folder])
            times.append(time.perf_counter() - start)
        count = len(manifests.requests)
    print(
        f"parser={_Loader.__name__} files={args.files} requests={count} "
        f"best={min(times):.3f}s worst={max(times):.3f}s"
    )


if __name__ == "__main__":
    main()
