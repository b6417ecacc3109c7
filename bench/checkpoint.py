"""Checkpoint cost for many new events, and incremental verification: `python -m bench.checkpoint`.

Builds the events fast (events_append as the owner, 50 000 submissions a call) in
the benchmark's own scratch cluster, takes a checkpoint of a small base, appends
`--events` more and times the checkpoint that folds them in (its row's bytes and the
tree's bytes an event), then appends `--since` more and times a verification that
starts from that checkpoint (`checkpoints.verify(since=…)`, what `ledger audit
verify` does when it resumes).

Then the same with integration (`checkpoints.integrate`, what the scheduler runs every
AUDIT_INTEGRATE_INTERVAL_SECONDS): `--events` more appended 50 000 at a time, each
followed by an integration (their total and largest time: the work moved off the
checkpoint, not removed), then `--residue` more that arrive after the last
integration, and the checkpoint that signs all of them, timed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg

from audit import checkpoints, signing
from bench import cluster
from ledger import db

_APPEND = """
SELECT count(*) FROM events_append(
    array(SELECT gen_random_uuid() FROM generate_series(1, $1)),
    array_fill(1, ARRAY[$1]),
    array_fill('job.submitted.v1'::text, ARRAY[$1]),
    array_fill('bench'::text, ARRAY[$1]),
    array_fill($2::jsonb, ARRAY[$1]))
"""
_DATA = (
    '{"queue": "default", "run_at": "2026-01-01T00:00:00Z", "payload": {}, "job_type": "noop", '
    '"priority": "normal", "replay_of": null, "max_attempts": 3, "idempotency_key": null, '
    '"timeout_seconds": 300.0, "backoff_cap_seconds": 300.0, "backoff_base_seconds": 1.0}'
)


async def _append(admin: asyncpg.Connection, events: int) -> None:
    while events > 0:
        n = min(events, 50_000)
        await admin.execute(_APPEND, n, _DATA)
        events -= n


async def measure(events: int, since: int, residue: int) -> None:
    signer = signing.load_or_create(Path(tempfile.mkdtemp()) / "bench.pem")
    async with cluster.durable_cluster() as c:
        async with db.connect(c.admin_dsn) as admin, db.connect(c.client_dsn) as conn:
            await _append(admin, 1000)
            await checkpoints.create(conn, signer)
            started = time.perf_counter()
            await _append(admin, events)
            print(f"appended {events} events in {time.perf_counter() - started:.1f} s")
            await c.checkpoint()
            started = time.perf_counter()
            big, _ = await checkpoints.create(conn, signer)
            took = time.perf_counter() - started
            assert big is not None
            row = await conn.fetchval(
                "SELECT pg_column_size(c.*) FROM audit_checkpoints c WHERE checkpoint_id = $1",
                big.checkpoint_id,
            )
            tree = await conn.fetchval(
                "SELECT pg_total_relation_size('audit_tree_nodes')"
                " + pg_total_relation_size('audit_tree_marks')"
            )
            print(f"checkpoint of {events} new events: {took:.2f} s, row {row} bytes")
            print(f"tree tables with indexes: {tree / (events + 1000):.1f} bytes an event")
            await _append(admin, since)
            await checkpoints.create(conn, signer)
            started = time.perf_counter()
            report = await checkpoints.verify(conn, signer, since=big, check_chains=True)
            took = time.perf_counter() - started
            assert report.ok, report.findings
            print(f"incremental verify of {report.events} events since it: {took:.2f} s")
            await _integrated(c, admin, conn, signer, events, residue)


async def _integrated(
    c: cluster.Cluster,
    admin: asyncpg.Connection,
    conn: asyncpg.Connection,
    signer: signing.Signer,
    events: int,
    residue: int,
) -> None:
    """`events` more, integrated 50 000 at a time; `residue` more; the checkpoint, timed."""
    integrations: list[float] = []
    for _ in range(0, events, 50_000):
        await _append(admin, min(50_000, events - 50_000 * len(integrations)))
        started = time.perf_counter()
        await checkpoints.integrate(conn, signer)
        integrations.append(time.perf_counter() - started)
    await _append(admin, residue)
    await c.checkpoint()
    started = time.perf_counter()
    cp, created = await checkpoints.create(conn, signer)
    took = time.perf_counter() - started
    assert created and cp is not None
    print(
        f"integrating {events} events, 50000 at a time: {sum(integrations):.2f} s in all, "
        f"{max(integrations):.2f} s the longest"
    )
    print(
        f"checkpoint of {events + residue} new events after integration "
        f"({residue} after the last): {took:.3f} s"
    )
    report = await checkpoints.verify(conn, signer, since=cp)
    assert report.ok, report.findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--since", type=int, default=10_000)
    parser.add_argument(
        "--residue",
        type=int,
        default=25_000,
        help="events appended after the last integration (about one interval's worth)",
    )
    args = parser.parse_args()
    asyncio.run(measure(args.events, args.since, args.residue))


if __name__ == "__main__":
    main()
