"""GET /health: no auth, queue depth and live workers, 503 when the database is unreachable."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import Databases
from tests.http.conftest import Mint


async def test_health_needs_no_token_and_counts_the_queue(
    client: httpx.AsyncClient, bearer: Mint, admin_conn: asyncpg.Connection
) -> None:
    for _ in range(2):
        body = {"type": "noop", "payload": {}}
        assert (await client.post("/api/v1/jobs", json=body, headers=bearer())).status_code == 201
    await admin_conn.execute(
        "INSERT INTO worker_processes (worker_id, host, pid, slots, lease_seconds) "
        "VALUES ('w-live', 'h', 1, 5, 30), ('w-dead', 'h', 2, 7, 30)"
    )
    await admin_conn.execute(
        "UPDATE worker_processes SET heartbeat_at = now() - interval '1 hour' "
        "WHERE worker_id = 'w-dead'"
    )

    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "workers": 5, "queue_depth": 2}


async def test_health_answers_503_when_the_database_is_unreachable(
    client: httpx.AsyncClient, dbs: Databases, admin_conn: asyncpg.Connection
) -> None:
    assert (await client.get("/health")).status_code == 200
    await admin_conn.close()
    server = await asyncpg.connect(dbs.admin.rsplit("/", 1)[0] + "/postgres")
    try:
        await server.execute(f'DROP DATABASE "{dbs.name}" WITH (FORCE)')
    finally:
        await server.close()

    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
