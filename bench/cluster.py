"""One durable embedded PostgreSQL for a whole benchmark run, in a temporary folder.

fsync and synchronous_commit are on (EmbeddedPostgres durable=True): every figure
the harness prints is for commits that survive a crash. The cluster is migrated
with the project's own migrations and torn down (files removed) at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ledger import database, db, embedded, sqlfile

Q = sqlfile.load("bench")
_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "server_version",
)


@dataclass(frozen=True)
class Cluster:
    pg: embedded.EmbeddedPostgres
    data_dir: Path

    @property
    def app_dsn(self) -> str:
        """The application's role, naming no tenant: what the services connect as."""
        return self.pg.dsn()

    @property
    def client_dsn(self) -> str:
        """The application's role naming tenant `default` for its session: the bench's
        own connections, a single-tenant application that submits and reads back what
        it wrote (a session that names no tenant reads no tenant's rows, sql/0068)."""
        return f"{self.pg.dsn()}?ledger.tenant=default"

    @property
    def admin_dsn(self) -> str:
        """The superuser on the application database (owner of the tables)."""
        return self.pg.dsn(admin=True)

    @property
    def port(self) -> int:
        return self.pg.port

    def superuser_password(self) -> str:
        return self.pg.credentials().superuser_password

    async def settings(self) -> dict[str, str]:
        """The server settings that make the figures durable (reported with the table)."""
        async with db.connect(self.admin_dsn) as conn:
            rows = await conn.fetch(Q["settings_durable"], list(_SETTINGS))
        return {r["name"]: r["setting"] for r in rows}

    async def reset_jobs(self) -> None:
        """A fresh application database between measurements (events are append-only)."""
        async with db.connect(self.pg.dsn("postgres", admin=True)) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{embedded.APP_DATABASE}" WITH (FORCE)')
        await database.provision_embedded(self.pg)

    async def checkpoint(self) -> None:
        """Flush dirty pages now so a checkpoint does not land inside the next measurement."""
        async with db.connect(self.admin_dsn) as conn:
            await conn.execute("CHECKPOINT")


@contextlib.asynccontextmanager
async def durable_cluster() -> AsyncIterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    os.chmod(tmp, 0o755)  # the server may run as `nobody` when we are root
    pg = embedded.EmbeddedPostgres(tmp, embedded.free_port(), durable=True)
    try:
        pg.start()
        await database.provision_embedded(pg)
        yield Cluster(pg, tmp)
    finally:
        pg.stop()
        shutil.rmtree(pg.cluster_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
