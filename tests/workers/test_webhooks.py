"""Result webhooks (issue #19) end to end: real pools send to a real HTTP receiver on
127.0.0.1 (allowed by WEBHOOK_ALLOWED_NETWORKS' setting), and every attempt is an
event in the ledger."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from ledger import commands, errors, store, webhooks
from projections import rebuild
from tests import factories
from tests.receiver import Receiver, receiving, verify
from tests.workers.conftest import PoolStarter, eventually
from workers import webhooks as sender

LOCAL = (ipaddress.ip_network("127.0.0.0/8"),)
FAST = (0.05, 0.05)  # the retry schedule of these tests: two retries, 50 ms apart
allow_local = sender.vetter(LOCAL)


def sending(**overrides: Any) -> dict[str, Any]:
    """Pool settings whose sender may reach the local receiver, on a fast schedule."""
    fields: dict[str, Any] = {"allowed_networks": LOCAL, "schedule": FAST, "poll_seconds": 3600}
    fields.update(overrides)
    return {"webhooks": sender.SenderSettings(**fields)}


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


async def endpoint(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    url: str,
    events: list[Any] | None = None,
) -> webhooks.EndpointCreated:
    spec = webhooks.EndpointIn(url=url, events=events or ["job.completed"])
    return await webhooks.create(conn, event_store, spec, actor="admin", vet=allow_local)


async def deliveries(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM webhook_deliveries ORDER BY created_at")


async def attempts(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT type, occurred_at, data FROM events WHERE job_id = $1 ORDER BY version",
        delivery_id,
    )
    return [{"type": r["type"], "at": r["occurred_at"], **json.loads(r["data"])} for r in rows]


async def settled(conn: asyncpg.Connection, status: str = "delivered") -> list[asyncpg.Record]:
    async def probe() -> list[asyncpg.Record]:
        rows = await deliveries(conn)
        return rows if rows and all(r["status"] == status for r in rows) else []

    return await eventually(probe)


async def test_a_completed_jobs_delivery_arrives_once_signed_per_the_standard(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    await start_pool(**sending())
    job_id = await factories.submit(event_store, conn, job_type="test.noop", payload={"n": 7})

    [got] = await receiver.wait_for(1)
    [row] = await settled(conn)
    assert verify(created.secret, got.headers, got.body)
    payload = Webhook(created.secret).verify(got.body, got.headers)  # the spec's own library
    assert payload["type"] == "job.completed"
    assert payload["data"]["job_id"] == str(job_id)
    assert payload["data"]["result"] == {"n": 7, "attempt": 1}
    assert payload["data"]["event"]["type"] == "job.completed.v1"
    assert got.headers["webhook-id"] == webhooks.webhook_id(row["delivery_id"])
    assert got.body.decode() == row["body"]
    [attempt] = await attempts(conn, row["delivery_id"])
    assert (attempt["type"], attempt["outcome"], attempt["status_code"]) == (
        "webhook.delivery_attempted.v1",
        "delivered",
        200,
    )
    assert created.secret not in json.dumps(
        [json.loads(r["data"]) for r in await conn.fetch("SELECT data FROM events")]
    )
    assert len(receiver.received) == 1


async def test_a_receiver_answering_500_then_200_gets_the_same_id_and_body_twice(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    receiver.answer(500)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")

    first, second = await receiver.wait_for(2)
    [row] = await settled(conn)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert verify(created.secret, first.headers, first.body)
    assert verify(created.secret, second.headers, second.body)
    recorded = await attempts(conn, row["delivery_id"])
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in recorded] == [
        (1, "retrying", 500),
        (2, "delivered", 200),
    ]
    assert recorded[0]["error"] == "HTTP 500"
    assert recorded[0]["next_attempt_at"] is not None
    assert await rebuild.verify(conn) == []  # the delivery's row is the fold of its attempts


async def test_410_disables_the_endpoint_with_an_event_and_nothing_more_is_sent(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    receiver.answer(410)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")

    await receiver.wait_for(1)
    [row] = await settled(conn, "disabled")
    [attempt] = await attempts(conn, row["delivery_id"])
    assert (attempt["outcome"], attempt["status_code"]) == ("disabled", 410)
    shown = await webhooks.get(conn, created.endpoint.endpoint_id)
    assert shown.disabled and "410" in (shown.disabled_reason or "")
    types = await conn.fetch(
        "SELECT type FROM events WHERE job_id = $1 ORDER BY version", shown.endpoint_id
    )
    assert [t["type"] for t in types] == [
        "webhook.endpoint_created.v1",
        "webhook.endpoint_disabled.v1",
    ]
    await factories.submit(
        event_store, conn, job_type="test.noop"
    )  # completes: no delivery for a disabled one
    await eventually(lambda: _completed(conn, 2))
    assert len(await deliveries(conn)) == 1


async def _completed(conn: asyncpg.Connection, count: int) -> bool:
    n: int = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
    return n == count


async def test_retry_after_is_honoured(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    await endpoint(conn, event_store, receiver.url)
    receiver.answer((503, {"retry-after": "120"}))
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")

    await receiver.wait_for(1)

    async def recorded() -> list[dict[str, Any]]:
        rows = await deliveries(conn)
        return await attempts(conn, rows[0]["delivery_id"]) if rows else []

    [attempt] = await eventually(recorded)
    assert attempt["outcome"] == "retrying"
    due = attempt["next_attempt_at"]
    from datetime import datetime

    wait = datetime.fromisoformat(due) - attempt["at"]
    assert timedelta(seconds=119) <= wait <= timedelta(seconds=121)


async def test_a_delivery_exhausted_after_its_schedule_disables_the_endpoint(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    receiver.answer(500, 502, 504)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")

    [row] = await settled(conn, "exhausted")
    recorded = await attempts(conn, row["delivery_id"])
    assert [a["outcome"] for a in recorded] == ["retrying", "retrying", "exhausted"]
    assert (await webhooks.get(conn, created.endpoint.endpoint_id)).disabled


async def test_deliveries_committed_before_a_sender_died_are_still_sent(
    conn: asyncpg.Connection,
    worker_conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    await endpoint(conn, event_store, receiver.url, ["job.cancelled"])
    job_id = await factories.submit(event_store, conn)
    await event_store.execute(conn, job_id, commands.CancelJob(), actor="alice")
    # A sender leased it and died before sending: its lease runs out.
    leased = await worker_conn.fetch(
        "SELECT * FROM webhook_deliveries_claim('dead-worker', 10, 0.3)"
    )
    assert len(leased) == 1
    await start_pool(**sending(poll_seconds=0.1))

    [got] = await receiver.wait_for(1)
    assert json.loads(got.body)["type"] == "job.cancelled"
    await settled(conn)


async def test_a_rolled_back_submission_creates_and_sends_nothing(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    await endpoint(conn, event_store, receiver.url, ["job.cancelled"])
    tr = conn.transaction()
    await tr.start()
    job_id = await factories.submit(event_store, conn)
    await event_store.execute(conn, job_id, commands.CancelJob(), actor="alice")
    assert len(await deliveries(conn)) == 1  # in the transaction, beside its event
    await tr.rollback()
    assert await deliveries(conn) == []


async def test_a_private_address_is_refused_at_registration_and_at_send(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    for url in (receiver.url, "http://10.1.2.3/x", "http://169.254.169.254/latest", "ftp://a/"):
        with pytest.raises(errors.InvalidInput):
            await webhooks.create(
                conn,
                event_store,
                webhooks.EndpointIn(url=url, events=["job.completed"])
                if url.startswith("http")
                else webhooks.EndpointIn(url="http://[::1]/", events=["job.completed"]),
                actor="admin",
                vet=sender.vetter(()),
            )
    # Registered while allowed, sent by a sender that does not allow it: refused.
    await endpoint(conn, event_store, receiver.url)
    await start_pool(**sending(allowed_networks=()))
    await factories.submit(event_store, conn, job_type="test.noop")

    [row] = await settled(conn, "exhausted")
    [attempt] = await attempts(conn, row["delivery_id"])
    assert "loopback" in attempt["error"]
    assert receiver.received == []


async def test_during_a_rotation_both_secrets_sign(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    endpoint_id = created.endpoint.endpoint_id
    rotated = await webhooks.rotate_secret(conn, event_store, endpoint_id, actor="admin")
    assert rotated.secret != created.secret
    assert rotated.endpoint.secret_id == webhooks.secret_id(rotated.secret)
    await start_pool(**sending())
    await webhooks.test(conn, event_store, endpoint_id, actor="admin")

    [got] = await receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify(created.secret, got.headers, got.body)
    assert verify(rotated.secret, got.headers, got.body)
    assert json.loads(got.body)["type"] == "webhook.test"
    # A second rotation retires the first secret at once: the newest two sign.
    again = await webhooks.rotate_secret(conn, event_store, endpoint_id, actor="admin")
    await webhooks.test(conn, event_store, endpoint_id, actor="admin")
    _, later = await receiver.wait_for(2)
    assert verify(again.secret, later.headers, later.body)
    assert verify(rotated.secret, later.headers, later.body)
    assert not verify(created.secret, later.headers, later.body)


async def test_redelivery_sends_the_same_id_and_body_with_a_new_signature(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")
    [first] = await receiver.wait_for(1)
    [row] = await settled(conn)

    again = await webhooks.redeliver(conn, event_store, row["delivery_id"], actor="admin")
    assert again.status == "pending"
    _, second = await receiver.wait_for(2)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    assert verify(created.secret, second.headers, second.body)
    await settled(conn)
    recorded = await attempts(conn, row["delivery_id"])
    assert [a["type"] for a in recorded] == [
        "webhook.delivery_attempted.v1",
        "webhook.delivery_redelivered.v1",
        "webhook.delivery_attempted.v1",
    ]
    assert await rebuild.verify(conn) == []


def readme_verify() -> Any:
    """The README's receiver example, as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("<!-- readme-webhook-example: start -->")
    block = text[start : text.index("<!-- readme-webhook-example: end -->")]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["verify"]


async def test_the_readme_receiver_example_verifies_a_real_delivery(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    check = readme_verify()
    created = await endpoint(conn, event_store, receiver.url)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")

    [got] = await receiver.wait_for(1)
    assert check(created.secret, got.headers, got.body)
    assert not check(created.secret, got.headers, got.body + b" ")
    assert not check(webhooks.new_secret(), got.headers, got.body)


async def test_a_jobs_own_webhook_is_told_its_end_signed_with_the_deployment_secret(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    from ledger import events as ev

    secret = webhooks.new_secret()
    await start_pool(**sending(secret=secret))
    job_id = await factories.submit(
        event_store, conn, job_type="test.noop", webhook=ev.JobWebhook(url=receiver.url)
    )
    other = await factories.submit(event_store, conn, job_type="test.noop")

    [got] = await receiver.wait_for(1)
    await settled(conn)
    body = json.loads(got.body)
    assert (body["type"], body["data"]["job_id"]) == ("job.completed", str(job_id))
    assert verify(secret, got.headers, got.body)
    assert [r["job_id"] for r in await deliveries(conn)] == [job_id]
    assert other != job_id


async def test_recover_sends_again_what_was_created_in_the_window(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    start_pool: PoolStarter,
    receiver: Receiver,
) -> None:
    created = await endpoint(conn, event_store, receiver.url)
    await start_pool(**sending())
    await factories.submit(event_store, conn, job_type="test.noop")
    [first] = await receiver.wait_for(1)
    [row] = await settled(conn)
    endpoint_id = created.endpoint.endpoint_id

    later = webhooks.RecoverIn(since=row["created_at"] + timedelta(seconds=1))
    none = await webhooks.recover(conn, event_store, endpoint_id, later, actor="admin")
    assert none.redelivered == 0
    window = webhooks.RecoverIn(since=row["created_at"] - timedelta(seconds=1))
    done = await webhooks.recover(conn, event_store, endpoint_id, window, actor="admin")
    assert done.redelivered == 1
    _, again = await receiver.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert again.body == first.body
