"""Run the whole benchmark: `make bench` (or `python -m bench.run`), prints the table, writes JSON.

One durable embedded PostgreSQL for every figure, so the ratios to its pgbench
baseline compare like with like. The load generator, the service's processes
and PostgreSQL all share this machine's cores; the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import cluster, machine, pgbench, report, stats, submit

RESULTS = Path(__file__).with_name("results")


class Sizes:
    """How much each measurement does; `--quick` shrinks everything for a smoke run."""

    def __init__(self, quick: bool) -> None:
        self.reps = 1 if quick else 3
        self.pgbench_seconds = 1 if quick else 4
        self.one_at_a_time = 50 if quick else 2_000
        self.batch_jobs = 2_000 if quick else 20_000
        self.batch = 1_000
        self.drain_jobs = 2_000 if quick else 20_000
        self.latency_jobs = 20 if quick else 500
        self.latency_gap = 0.02
        self.http_seconds = 1.0 if quick else 5.0
        self.http_connections = 32


async def measure(args: argparse.Namespace) -> report.Report:
    sizes = Sizes(args.quick)
    started = time.perf_counter()
    async with cluster.durable_cluster() as c:
        rep = report.Report(
            command=args.command,
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            machine=machine.describe(),
            postgres=await c.settings(),
            sharing=(
                "All processes share the machine's cores: PostgreSQL, the service's worker "
                "and API processes, and the load generator (and nothing else of ours)."
            ),
        )
        _log("baseline: pgbench, one INSERT per transaction, 1/4/8 clients")
        for key, fig in (
            await pgbench.measure(c, seconds=sizes.pgbench_seconds, reps=sizes.reps)
        ).items():
            clients = key.split("_")[1]
            rep.add(
                key,
                f"pgbench, 1 INSERT/transaction, {clients} clients",
                fig,
                ratio_to_baseline=True,
            )

        _log("library submission, one at a time")
        samples = []
        for _ in range(sizes.reps):
            await c.reset_jobs()
            samples.append(await submit.one_at_a_time(c.app_dsn, sizes.one_at_a_time))
        rep.add(
            "submit_one",
            "submit via library, one job per transaction, 1 caller",
            stats.Figure.of(samples, unit="jobs/s"),
            ratio_to_baseline=True,
        )

        _log("library submission, batches of 1,000")
        for callers in (1, 2):
            samples = []
            for _ in range(sizes.reps):
                await c.reset_jobs()
                await c.checkpoint()
                samples.append(
                    await submit.in_batches_concurrently(
                        c.app_dsn, sizes.batch_jobs, callers=callers, batch=sizes.batch
                    )
                )
            rep.add(
                f"submit_batch_{callers}",
                f"submit via library, batches of 1,000 (1 transaction each), {callers} caller"
                + ("s" if callers > 1 else ""),
                stats.Figure.of(samples, unit="jobs/s"),
                ratio_to_baseline=True,
                target="≥ 3× pgbench-8",
                check=lambda _f, r: r is not None and r >= 3.0,
            )
    rep.seconds = time.perf_counter() - started
    rep.finish()
    return rep


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    args.command = (
        "make bench"
        if argv is None and not args.quick
        else shlex.join(
            ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
        )
    )
    rep = asyncio.run(measure(args))
    print(report.header(rep))
    print()
    print(report.table(rep))
    path = report.write_json(rep, args.results)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
