"""`--pg-stats`: PostgreSQL's own time per statement (pg_stat_statements) for each part.

The cluster is restarted once with the extension preloaded; before each part the
statistics are reset, after it the statements that took the most execution time
are printed (stderr) and written to `pgstats-<part>.json` beside the table. Trigger
statements (the view's projection) are counted too, as nested statements. This is
how the figures in BENCHMARKS.md's "What was changed" were found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from bench import cluster
from ledger import db, sqlfile

Q = sqlfile.load("bench")


class Statement(msgspec.Struct, kw_only=True):
    calls: int
    total_ms: float
    rows: int
    toplevel: bool
    query: str


async def enable(c: cluster.Cluster) -> None:
    async with db.connect(c.admin_dsn) as conn:
        await conn.execute(Q["pg_stat_statements_enable"])
        await conn.execute(Q["pg_stat_statements_track_all"])
    c.pg.stop()
    c.pg.start()
    async with db.connect(c.pg.dsn("postgres", admin=True)) as conn:
        await conn.execute(Q["pg_stat_statements_create"])


async def reset(c: cluster.Cluster) -> None:
    async with db.connect(c.pg.dsn("postgres", admin=True)) as conn:
        await conn.execute(Q["pg_stat_statements_reset"])


async def report(c: cluster.Cluster, part: str, results: Path, limit: int = 12) -> None:
    async with db.connect(c.pg.dsn("postgres", admin=True)) as conn:
        rows = await conn.fetch(Q["pg_stat_statements_top"], limit)
    statements = [
        Statement(
            calls=r["calls"],
            total_ms=r["total_exec_time"],
            rows=r["rows"],
            toplevel=r["toplevel"],
            query=r["query"],
        )
        for r in rows
    ]
    print(
        f"[bench] pg_stat_statements after {part} (ms, calls, rows, T=top level):", file=sys.stderr
    )
    for s in statements:
        print(
            f"[bench]   {s.total_ms:9.0f} {s.calls:7d} {s.rows:8d} {'T' if s.toplevel else ' '} {s.query}",
            file=sys.stderr,
        )
    (results / f"pgstats-{part}.json").write_bytes(msgspec.json.encode(statements))
