"""The embedded PostgreSQL: keeps its data across restarts, and fails with clear messages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ledger import embedded, errors


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is private to root, and the server may run as nobody.
    root = Path(tempfile.mkdtemp(prefix="ledger-embedded-"))
    os.chmod(root, 0o755)
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_second_start_finds_the_data_of_the_first(data_dir: Path) -> None:
    pg = embedded.EmbeddedPostgres(data_dir, embedded.free_port(), durable=False)
    pg.start()
    try:
        conn = await asyncpg.connect(pg.dsn("postgres", admin=True))
        await conn.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
        await conn.close()
    finally:
        pg.stop()
    assert not pg.running()

    again = embedded.EmbeddedPostgres(data_dir, embedded.free_port(), durable=False)
    again.start()
    try:
        conn = await asyncpg.connect(again.dsn("postgres", admin=True))
        assert await conn.fetchval("SELECT note FROM kept") == "still here"
        assert await conn.fetchval("SELECT current_setting('listen_addresses')") == "127.0.0.1"
        await conn.close()
    finally:
        again.stop()


async def test_a_second_process_attaches_and_does_not_stop_the_server(data_dir: Path) -> None:
    owner = embedded.EmbeddedPostgres(data_dir, embedded.free_port(), durable=False)
    owner.start()
    try:
        guest = embedded.EmbeddedPostgres(data_dir, embedded.free_port(), durable=False)
        guest.start()
        assert guest.port == owner.port
        guest.stop()
        assert owner.running()
    finally:
        owner.stop()


def test_a_taken_port_is_a_clear_error(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        pg = embedded.EmbeddedPostgres(data_dir, port, durable=False)
        with pytest.raises(errors.EmbeddedDatabaseError, match="LEDGER_PG_PORT"):
            pg.start()


def test_a_stale_lock_file_is_a_clear_error(data_dir: Path) -> None:
    pg = embedded.EmbeddedPostgres(data_dir, embedded.free_port(), durable=False)
    pg.start()
    pg.stop()
    # A lock file naming a live process that is not a PostgreSQL server of ours.
    kwargs: dict[str, object] = {}
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam(os.environ.get("LEDGER_PG_USER", "nobody"))
        kwargs = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    impostor = subprocess.Popen(["sleep", "60"], **kwargs)  # type: ignore[call-overload]
    try:
        lock = pg.pgdata / "postmaster.pid"
        lock.write_text(f"{impostor.pid}\n{pg.pgdata}\n0\n{pg.port}\n\n127.0.0.1\n0 0\nready\n")
        with pytest.raises(errors.EmbeddedDatabaseError, match="stale lock"):
            pg.start()
    finally:
        impostor.send_signal(signal.SIGKILL)
        impostor.wait()


def test_the_cli_reports_a_taken_port_without_a_traceback(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {
            **os.environ,
            "LEDGER_DATA_DIR": str(data_dir),
            "LEDGER_PG_PORT": str(busy.getsockname()[1]),
        }
        env.pop("DATABASE_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr
