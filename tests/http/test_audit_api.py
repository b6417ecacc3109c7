"""The audit routes and resubmission (`POST /jobs/{id}/replay`) through the real app and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import pytest_asyncio
import uvicorn
from litestar import Litestar

from audit import note, signing
from ledger import auth, commands, jobtypes, lifecycle, retrypolicy, store, submission
from service import app as app_module
from service.http import jobs
from tests import factories, ledgers, rfc9162
from tests.conftest import Databases
from tests.db import test_cli_audit
from tests.http.conftest import Mint
from tests.http.test_jobs_api import assert_problem

AUDIT = ("audit:read",)


@pytest.fixture
def signer(tmp_path: Path) -> signing.Signer:
    return signing.load_or_create(tmp_path / "audit-ed25519.pem")


@pytest.fixture
def app(
    dbs: Databases,
    auth_config: auth.AuthConfig,
    registry: jobtypes.Registry,
    signer: signing.Signer,
) -> Litestar:
    return app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, pool_size=4, audit_signer=signer
    )


async def test_job_history_lists_every_event_oldest_first(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    job_id = await ledgers.run_job(event_store, conn, 4)

    response = await client.get(f"/api/v1/jobs/{job_id}/events", headers=bearer(*AUDIT))

    assert response.status_code == 200, response.text
    body = response.json()
    events = body["events"]
    assert [(e["version"], e["type"], e["actor"]) for e in events] == [
        (1, "job.submitted.v1", "alice"),
        (2, "job.claimed.v1", "worker:w1"),
        (3, "job.completed.v1", "worker:w1"),
    ]
    assert events[0]["prev_hash"] == "00" * 32
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]
    assert events[2]["data"] == {"result": {"n": 4}}
    assert all({"position", "cursor", "occurred_at"} <= e.keys() for e in events)


async def _retried_snoozed_and_stopped(
    event_store: store.EventStore, conn: asyncpg.Connection
) -> uuid.UUID:
    """A job that snoozes, fails and waits under a policy, loses its lease, then fails for good."""
    job_id = await factories.submit(event_store, conn, max_attempts=4)
    claim = commands.ClaimJob(worker_id="w1", lease_seconds=30)
    await event_store.execute(conn, job_id, claim, actor="worker:w1")
    snooze = commands.SnoozeJob(
        worker_id="w1", delay=timedelta(seconds=90), max_snoozes=5, reason="not yet"
    )
    await event_store.execute(conn, job_id, snooze, actor="worker:w1")
    await event_store.execute(conn, job_id, claim, actor="worker:w1")
    policy = retrypolicy.PolicyInForce(
        initial_interval_seconds=1.0,
        backoff_coefficient=2.0,
        maximum_interval_seconds=300.0,
        maximum_attempts=4,
        jitter="equal",
        max_elapsed_seconds=0.0,
        non_retryable_errors=(),
    )
    decision = retrypolicy.Decision(
        reason=None,
        attempt=1,
        error_type="TimeoutError",
        policy=policy,
        delay_seconds=2.0,
        jittered_delay_seconds=1.5,
    )
    failed = commands.FailAttempt(
        worker_id="w1",
        error="upstream timed out",
        permanent=False,
        retry_delay=timedelta(seconds=1.5),
        decision=decision,
    )
    await event_store.execute(conn, job_id, failed, actor="worker:w1")
    await event_store.execute(conn, job_id, claim, actor="worker:w1")
    expired = commands.ExpireLease(retry_delay=timedelta(seconds=17))
    await event_store.execute(conn, job_id, expired, actor="reaper")
    await event_store.execute(conn, job_id, claim, actor="worker:w1")
    permanent = commands.FailAttempt(
        worker_id="w1", error="bad input", permanent=True, retry_delay=timedelta(0)
    )
    await event_store.execute(conn, job_id, permanent, actor="worker:w1")
    return job_id


async def test_job_history_explains_each_event_as_ledger_replay_does(
    dbs: Databases,
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
    registry: jobtypes.Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    retried = await _retried_snoozed_and_stopped(event_store, conn)
    submitter = submission.Submitter(event_store=event_store, registry=registry)
    unique = {"by": ["type", "payload.n"], "on_conflict": "replace"}
    first = await submitter.submit(
        conn, "noop", {"n": 7}, delay_seconds=3600, unique=unique, actor="app"
    )
    await submitter.submit(conn, "noop", {"n": 7}, unique=unique, actor="bob")
    settings = test_cli_audit.settings_for(dbs, tmp_path)

    async def notes(job_id: uuid.UUID) -> dict[str, str | None]:
        """The served notes by event type, checked against what `ledger replay` prints."""
        response = await client.get(f"/api/v1/jobs/{job_id}/events", headers=bearer(*AUDIT))
        assert response.status_code == 200, response.text
        events = response.json()["events"]
        served = [e["note"] for e in events]
        assert await test_cli_audit.ledger_cli(settings, "replay", str(job_id), "--json") == 0
        assert served == [s["note"] for s in json.loads(capsys.readouterr().out)["steps"]]
        assert await test_cli_audit.ledger_cli(settings, "replay", str(job_id)) == 0
        table = capsys.readouterr().out
        assert all(f"why: {n}" in table for n in served if n is not None)
        return {e["type"]: e["note"] for e in events}

    by_type = await notes(retried)
    assert by_type["job.submitted.v1"] is None
    assert by_type["job.claimed.v1"] is None
    snoozed = by_type["job.snoozed.v1"]
    assert snoozed is not None and snoozed.startswith("attempt 1 snoozed 1m30s until ")
    assert snoozed.endswith("(snooze 1 of 5; not counted as an attempt): not yet")
    assert by_type["job.retry_scheduled.v1"] == (
        "attempt 1 failed: upstream timed out; retry in 1.5s (backoff 2s, jittered) "
        "(policy: 1s x2 up to 5m, 4 attempts, equal jitter)"
    )
    assert by_type["job.lease_expired.v1"] == "attempt 2 lease expired; retry in 17s"
    assert by_type["job.failed.v1"] == (
        "attempt 3 failed: bad input; stopped retrying: no attempts left or a permanent "
        "error (recorded before retry reasons)"
    )

    deduplicated = await notes(first.job_id)
    unique_note = deduplicated["job.submitted.v1"] or ""
    assert unique_note.startswith("unique by type, payload.n"), unique_note
    assert unique_note.endswith("a duplicate gets replace"), unique_note
    replaced = deduplicated["job.replaced.v1"] or ""
    assert replaced.startswith(
        "a duplicate unique submission by bob replaced the payload and run time"
    ), replaced


async def test_audit_routes_need_the_audit_scope(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    job_id = await factories.submit(event_store, conn)
    for path in (
        f"/api/v1/jobs/{job_id}/events",
        "/api/v1/events",
        "/api/v1/events/stream",
        "/api/v1/audit/verify",
        "/api/v1/audit/checkpoints",
    ):
        assert_problem(await client.get(path), 401)
        assert_problem(await client.get(path, headers=bearer("jobs:read", "jobs:write")), 403)
    assert_problem(await client.post("/api/v1/audit/checkpoints", headers=bearer(*AUDIT)), 403)
    replay = f"/api/v1/jobs/{job_id}/replay"
    assert_problem(await client.post(replay, headers=bearer(*AUDIT)), 403)


async def test_unknown_job_history_is_404(client: httpx.AsyncClient, bearer: Mint) -> None:
    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}/events", headers=bearer(*AUDIT))
    assert_problem(response, 404)


async def test_feed_pages_by_cursor_to_exactly_the_committed_events(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    await ledgers.ledger_of(event_store, conn, 3)
    headers = bearer(*AUDIT)

    async def drain(after: str | None) -> tuple[list[int], str | None]:
        seen: list[int] = []
        while True:
            params: dict[str, Any] = {"limit": 2}
            if after:
                params["after"] = after
            page = (await client.get("/api/v1/events", params=params, headers=headers)).json()
            seen += [e["position"] for e in page["events"]]
            if not page["events"]:
                return seen, after
            after = page["next_cursor"]

    first, cursor = await drain(None)
    assert sorted(first) == [
        r["position"] for r in await conn.fetch("SELECT position FROM events ORDER BY position")
    ]
    assert len(first) == 9
    await ledgers.run_job(event_store, conn, 9)
    later, _ = await drain(cursor)
    assert len(later) == 3 and not set(later) & set(first)


async def test_feed_filters(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    job_id = await ledgers.run_job(event_store, conn, 1)
    await factories.submit(event_store, conn, job_type="other", actor="bob")
    headers = bearer(*AUDIT)

    async def types(**params: Any) -> list[tuple[str, str]]:
        page = (await client.get("/api/v1/events", params=params, headers=headers)).json()
        return [(e["job_id"], e["type"]) for e in page["events"]]

    assert await types(type="job.completed.v1") == [(str(job_id), "job.completed.v1")]
    assert [t for _, t in await types(job_type="other")] == ["job.submitted.v1"]
    assert len(await types(actor="worker:w1")) == 2
    assert await types(since="2999-01-01T00:00:00Z") == []
    assert len(await types(until="2999-01-01T00:00:00")) == 4


async def test_bad_feed_cursor_is_a_400_problem(client: httpx.AsyncClient, bearer: Mint) -> None:
    response = await client.get("/api/v1/events", params={"after": "x.y"}, headers=bearer(*AUDIT))
    body = assert_problem(response, 400)
    assert "malformed feed cursor" in body["detail"]


@pytest.mark.parametrize("name", ["type", "job_type", "actor"])
async def test_a_nul_character_in_a_feed_filter_is_a_400_problem(
    client: httpx.AsyncClient, bearer: Mint, name: str
) -> None:
    # PostgreSQL text cannot hold U+0000: it must be refused at the edge, not reach the query.
    response = await client.get("/api/v1/events", params={name: "a\x00b"}, headers=bearer(*AUDIT))
    assert_problem(response, 400)


async def test_as_of_each_event_is_the_fold_of_its_prefix(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    job_id = await ledgers.run_job(event_store, conn, 3)
    history = [r.event for r in await event_store.history(conn, job_id)]
    headers = bearer("jobs:read")

    for index, event in enumerate(history):
        response = await client.get(
            f"/api/v1/jobs/{job_id}",
            params={"as_of": event.occurred_at.isoformat()},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        expected = lifecycle.fold(history[: index + 1])
        assert expected is not None
        assert response.json() == msgspec.to_builtins(jobs.Job.of(expected))
    before = history[0].occurred_at - timedelta(microseconds=1)
    response = await client.get(
        f"/api/v1/jobs/{job_id}", params={"as_of": before.isoformat()}, headers=headers
    )
    assert_problem(response, 404)


async def test_verify_reports_clean_chains_and_names_tampering(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    admin_conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
) -> None:
    jobs_ = await ledgers.ledger_of(event_store, conn, 4)
    taken = await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    assert taken.status_code == 201, taken.text
    headers = bearer(*AUDIT)
    clean = (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert clean["ok"] and clean["events"] == 12 and clean["checkpoints"]["findings"] == []

    await ledgers.edit_data(admin_conn, jobs_[0], 2)
    await ledgers.delete_job(admin_conn, jobs_[2])  # not the last: that would read as truncation

    report = (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert not report["ok"]
    assert [(b["job_id"], b["version"]) for b in report["broken"]] == [(str(jobs_[0]), 2)]
    kinds = [f["kind"] for f in report["checkpoints"]["findings"]]
    assert kinds == ["digest"]
    one = (
        await client.get("/api/v1/audit/verify", params={"job_id": str(jobs_[0])}, headers=headers)
    ).json()
    assert not one["ok"] and one["checkpoints"] is None
    assert "event content does not match its hash" in one["broken"][0]["message"]
    missing = await client.get(
        "/api/v1/audit/verify", params={"job_id": str(uuid.uuid4())}, headers=headers
    )
    assert_problem(missing, 404)


async def test_checkpoints_list_with_the_public_key_and_verify_offline(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
    signer: signing.Signer,
) -> None:
    assert (
        await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    ).status_code == 204
    await ledgers.ledger_of(event_store, conn, 2)
    assert (
        await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    ).status_code == 201
    again = await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    assert again.status_code == 200

    body = (await client.get("/api/v1/audit/checkpoints", headers=bearer(*AUDIT))).json()

    assert body["public_key"]["key_id"] == signer.key_id
    public = signing.public_from_pem(body["public_key"]["pem"])
    [cp] = body["checkpoints"]
    assert cp["event_count"] == cp["tree_size"] == 6
    assert (
        cp["signed_message"]
        == f"job-ledger/{signer.key_id}\n6\n"
        + base64.b64encode(bytes.fromhex(cp["root_hash"])).decode()
        + "\n"
    )
    assert public.verify(bytes.fromhex(cp["signature"]), cp["signed_message"].encode())
    assert cp["note"].startswith(cp["signed_message"] + "\n\u2014 job-ledger/")
    assert note.open_note(cp["note"], public).tree_size == 6


async def test_resubmission_submits_a_new_job_naming_the_original(
    client: httpx.AsyncClient, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    original = await factories.submit(event_store, conn, payload={"n": 7})

    response = await client.post(f"/api/v1/jobs/{original}/replay", headers=bearer("jobs:write"))

    assert response.status_code == 201, response.text
    body = response.json()
    new_id = body["job"]["job_id"]
    assert body["replay_of"] == str(original)
    assert response.headers["location"] == f"/api/v1/jobs/{new_id}"
    assert (body["job"]["type"], body["job"]["payload"], body["job"]["status"]) == (
        "noop",
        {"n": 7},
        "pending",
    )
    headers = bearer(*AUDIT)
    old = (await client.get(f"/api/v1/jobs/{original}/events", headers=headers)).json()["events"]
    assert (old[-1]["type"], old[-1]["data"]) == ("job.replayed.v1", {"replayed_as": new_id})
    new = (await client.get(f"/api/v1/jobs/{new_id}/events", headers=headers)).json()["events"]
    assert new[0]["data"]["replay_of"] == str(original)
    missing = await client.post(f"/api/v1/jobs/{uuid.uuid4()}/replay", headers=bearer("jobs:write"))
    assert_problem(missing, 404)


# -- Server-Sent Events, over a real socket ----------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def served(app: Litestar) -> AsyncIterator[str]:
    """The app behind a real uvicorn on a free loopback port (streams need a real socket)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Stream:
    """An SSE connection read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next_event(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if "id" in fields:  # `ready` and `heartbeat` carry no id
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")


@contextlib.asynccontextmanager
async def sse(base: str, headers: dict[str, str], **params: str) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/v1/events/stream", headers=headers, params=params) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


async def test_sse_client_that_disconnects_and_resumes_misses_nothing(
    served: str, conn: asyncpg.Connection, event_store: store.EventStore, bearer: Mint
) -> None:
    headers = bearer(*AUDIT)
    await ledgers.ledger_of(event_store, conn, 2)  # 6 events
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async with sse(served, headers) as stream:
            for _ in range(4):
                message = await stream.next_event()
                seen.append({"id": message["id"], **msgspec.json.decode(message["data"])})
        # Disconnected after the 4th event; more commit meanwhile.
        later = await factories.submit(event_store, conn)
        await event_store.execute(
            conn, later, commands.ClaimJob(worker_id="w", lease_seconds=30), actor="w"
        )
        async with sse(served, {**headers, "Last-Event-ID": seen[-1]["id"]}) as stream:
            while len(seen) < 8:
                message = await stream.next_event()
                seen.append({"id": message["id"], **msgspec.json.decode(message["data"])})
            # Live: an event committed while connected arrives on the open stream.
            await event_store.execute(conn, later, commands.CancelJob(), actor="carol")
            live = await stream.next_event()

    committed = [r["position"] for r in await conn.fetch("SELECT position FROM events")]
    live_event = msgspec.json.decode(live["data"])
    assert (live["event"], live_event["actor"]) == ("job.cancelled.v1", "carol")
    assert sorted([e["position"] for e in seen] + [live_event["position"]]) == sorted(committed)
    assert len({e["id"] for e in seen}) == 8, "none twice"


async def test_proofs_over_http_verify_against_the_signed_notes(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    bearer: Mint,
    signer: signing.Signer,
) -> None:
    headers = bearer(*AUDIT)
    await ledgers.ledger_of(event_store, conn, 7)  # 21 events: two chunks of the tree
    assert (
        await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    ).status_code == 201
    await ledgers.ledger_of(event_store, conn, 5)
    assert (
        await client.post("/api/v1/audit/checkpoints", headers=bearer("admin"))
    ).status_code == 201
    body = (await client.get("/api/v1/audit/checkpoints", headers=headers)).json()
    key = signing.public_from_pem(body["public_key"]["pem"])
    newer, older = [note.open_note(cp["note"], key) for cp in body["checkpoints"]]
    assert (older.tree_size, newer.tree_size) == (21, 36)
    events = (await client.get("/api/v1/events", params={"limit": 100}, headers=headers)).json()

    for index, event in enumerate(events["events"]):
        got = await client.get(
            "/api/v1/audit/proofs/inclusion",
            params={"cursor": event["cursor"], "tree_size": newer.tree_size},
            headers=headers,
        )
        assert got.status_code == 200, got.text
        proof_ = got.json()
        assert (proof_["leaf_index"], proof_["tree_size"]) == (index, 36)
        assert rfc9162.verify_inclusion(
            index,
            36,
            bytes.fromhex(event["hash"]),
            [bytes.fromhex(h) for h in proof_["hashes"]],
            newer.root_hash,
        )
    got = await client.get(
        "/api/v1/audit/proofs/consistency", params={"from": 21, "to": 36}, headers=headers
    )
    assert got.status_code == 200, got.text
    path = [bytes.fromhex(h) for h in got.json()["hashes"]]
    assert rfc9162.verify_consistency(21, 36, older.root_hash, newer.root_hash, path)

    too_big = await client.get(
        "/api/v1/audit/proofs/consistency", params={"from": 21, "to": 37}, headers=headers
    )
    assert_problem(too_big, 400)
    unknown = await client.get(
        "/api/v1/audit/proofs/inclusion",
        params={"cursor": "1.999999", "tree_size": 36},
        headers=headers,
    )
    assert_problem(unknown, 404)
    late = events["events"][30]["cursor"]
    outside = await client.get(
        "/api/v1/audit/proofs/inclusion", params={"cursor": late, "tree_size": 21}, headers=headers
    )
    assert_problem(outside, 400)
