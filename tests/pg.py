"""Where the test suite's PostgreSQL comes from, in order: LEDGER_TEST_DATABASE_URL,
a testcontainers PostgreSQL when a Docker engine answers, otherwise the embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from ledger import embedded


def with_database(
    dsn: str, database: str, *, user: str | None = None, password: str | None = None
) -> str:
    """`dsn` pointed at another database (and optionally another role)."""
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password or '', safe='')}@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


@contextlib.contextmanager
def server() -> Iterator[str]:
    """A superuser DSN to a PostgreSQL server for the whole test session."""
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("LEDGER_TEST_NO_DOCKER") != "1" and _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:18-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    with tempfile.TemporaryDirectory(prefix="ledger-test-") as tmp:
        os.chmod(tmp, 0o755)
        pg = embedded.EmbeddedPostgres(Path(tmp), embedded.free_port(), durable=False)
        pg.start()
        try:
            yield pg.dsn("postgres", admin=True)
        finally:
            pg.stop()
