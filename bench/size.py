"""Bytes on disk per job: `python -m bench.size [--jobs 100000]`.

The scale bench's ledger (bench.scale.grow: every job submitted, every other one
claimed and completed, so half completed and half pending), VACUUM ANALYZEd, then
each table's heap (with TOAST) and indexes divided by the number of jobs, and the
payload's share of a `jobs` row (it is stored twice: in the submitted event and in
the row).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from bench import cluster, scale
from ledger import db, sqlfile

Q = sqlfile.load("bench")


async def measure(jobs: int, step: int) -> None:
    async with cluster.durable_cluster() as c:
        base = datetime.now(UTC) - timedelta(seconds=jobs + 3600)
        await scale.grow(c, 0, jobs, step, base)
        async with db.connect(c.admin_dsn) as conn:
            events = int(await conn.fetchval(Q["events_count"]))
            rows = await conn.fetch(Q["size_relations"])
            payload = await conn.fetchrow(Q["size_payload"])
    assert payload is not None
    print(f"{jobs:,} jobs, {events:,} events (half completed)")
    print(f"{'table':<24}{'heap B/job':>12}{'index B/job':>12}{'total B/job':>12}")
    total = 0
    for r in rows:
        heap, indexes = int(r["heap"]), int(r["indexes"])
        total += heap + indexes
        if heap + indexes >= jobs:  # at least a byte a job: the rest is fixed overhead
            line = f"{r['name']:<24}{heap / jobs:>12.1f}{indexes / jobs:>12.1f}"
            print(f"{line}{(heap + indexes) / jobs:>12.1f}")
    print(f"{'all tables':<24}{'':>24}{total / jobs:>12.1f}")
    print(
        f"payload: {payload['jobs_payload']:.1f} B of a {payload['jobs_row']:.1f} B jobs row;"
        f" {payload['event_payload']:.1f} B in a submitted event; event row"
        f" {payload['event_row']:.1f} B on average"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--step", type=int, default=50_000)
    args = parser.parse_args()
    asyncio.run(measure(args.jobs, args.step))


if __name__ == "__main__":
    main()
