"""What each of the append's PL/pgSQL functions costs a call, from PostgreSQL's own
counters (`track_functions = 'pl'`): single-job submissions through the public
submission API, one caller, on the bench's durable cluster. Self time is the function's
own, total includes what it calls; the per-call figures are averages over the run.
Compare trees by running each from its own directory (`PYTHONPATH=<tree>/src:<tree>`).

    python -m bench.function_calls [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio

from bench import cluster, submit
from ledger import db

FUNCTIONS = ("events_append", "jobs_project_appended", "jobs_inserted_project")


async def measure(jobs: int) -> None:
    async with cluster.durable_cluster() as c:
        async with db.connect(c.pg.dsn("postgres", admin=True)) as admin:
            await admin.execute("ALTER SYSTEM SET track_functions = 'pl'")
            await admin.execute("SELECT pg_reload_conf()")
        async with db.connect(c.client_dsn) as conn:
            for i in range(jobs):
                await submit.SUBMITTER.submit(
                    conn, submit.NOOP, {"n": i}, max_attempts=1, actor=submit.ACTOR
                )
        await asyncio.sleep(1)  # the statistics collector's flush
        async with db.connect(c.admin_dsn) as admin:
            rows = await admin.fetch(
                "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions "
                "WHERE funcname = ANY($1::text[]) ORDER BY funcname",
                list(FUNCTIONS),
            )
    print(f"{jobs:,} single-job submissions, one caller")
    for r in rows:
        calls = r["calls"]
        print(
            f"{r['funcname']:24s} {calls:>7,} calls  total {r['total_time'] / calls * 1000:7.1f} us"
            f"  self {r['self_time'] / calls * 1000:7.1f} us a call"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.function_calls", description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    asyncio.run(measure(parser.parse_args().jobs))


if __name__ == "__main__":
    main()
