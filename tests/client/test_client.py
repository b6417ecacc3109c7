"""`ledger.client` against a real `ledger api` (and a `ledger worker` running the jobs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest

from ledger import client, wire
from ledger import events as ev
from tests.client.conftest import Api, Mint
from tests.client.streams import AsyncWatched, Watched

pytestmark = pytest.mark.slow

WAIT = 60.0  # seconds a test waits for a worker at most


def queue() -> str:
    """A queue of the test's own, so listing sees only the test's jobs."""
    return f"q-{uuid.uuid4().hex[:12]}"


def opens(gate: Path) -> None:
    gate.write_text("open")


def test_submit_then_get_answers_the_job(ledger: client.Client) -> None:
    submitted = ledger.submit(
        "test.noop", {"n": 7}, priority="high", delay_seconds=3600, max_attempts=2
    )

    assert submitted.status == "pending"
    assert (submitted.type, submitted.priority, submitted.max_attempts) == ("test.noop", "high", 2)
    # The read adds the webhook deliveries that report the job (none here).
    assert ledger.get(submitted.job_id) == msgspec.structs.replace(submitted, webhook_deliveries=[])
    assert ledger.get(str(submitted.job_id), as_of=submitted.created_at) == submitted


def test_a_concurrency_key_is_submitted_and_read_back(ledger: client.Client) -> None:
    keyed = ledger.submit("test.noop", {"n": 1}, delay_seconds=3600, concurrency_key="acme")
    [many] = ledger.submit_many(
        [
            client.Submission(
                job_type="test.noop", payload={}, delay_seconds=3600, concurrency_key="globex"
            )
        ]
    )

    assert (keyed.concurrency_key, many.concurrency_key) == ("acme", "globex")
    assert ledger.get(keyed.job_id).concurrency_key == "acme"
    assert ledger.submit("test.noop", {}, delay_seconds=3600).concurrency_key is None


def test_a_resubmission_with_the_same_idempotency_key_answers_the_first_job(
    ledger: client.Client,
) -> None:
    key = f"k-{uuid.uuid4()}"
    first = ledger.submit("test.noop", {"n": 1}, delay_seconds=3600, idempotency_key=key)

    again = ledger.submit("test.noop", {"n": 1}, delay_seconds=3600, idempotency_key=key)

    assert again.job_id == first.job_id
    with pytest.raises(client.IdempotencyConflict) as refused:
        ledger.submit("test.noop", {"n": 2}, idempotency_key=key)
    assert refused.value.status == 409


def test_submit_many_submits_every_job_in_order(ledger: client.Client) -> None:
    mine = queue()
    wanted = [
        client.Submission(job_type="test.noop", payload={"n": n}, queue=mine, delay_seconds=3600)
        for n in range(3)
    ]

    submitted = ledger.submit_many(wanted)

    assert [job.payload for job in submitted] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {job.queue for job in submitted} == {mine}
    read = [msgspec.structs.replace(job, webhook_deliveries=[]) for job in submitted]
    assert [ledger.get(job.job_id) for job in submitted] == read


def test_list_iterates_every_page_newest_first(ledger: client.Client) -> None:
    mine = queue()
    submitted = [
        ledger.submit("test.noop", {"n": n}, queue=mine, delay_seconds=3600) for n in range(7)
    ]
    pages = []
    ledger.http.event_hooks["request"].append(
        lambda request: pages.append(request) if request.url.path == "/api/v1/jobs" else None
    )

    listed = list(ledger.list(queue=mine, status="pending", page_size=3))

    assert [job.job_id for job in listed] == [job.job_id for job in reversed(submitted)]
    assert len(pages) == 3


def test_list_fetches_a_page_only_when_the_last_runs_out(ledger: client.Client) -> None:
    mine = queue()
    for n in range(4):
        ledger.submit("test.noop", {"n": n}, queue=mine, delay_seconds=3600)
    pages = []
    ledger.http.event_hooks["request"].append(
        lambda request: pages.append(request) if request.url.path == "/api/v1/jobs" else None
    )

    listing = ledger.list(queue=mine, page_size=2)
    first_two = [next(listing), next(listing)]

    assert len(first_two) == 2
    assert len(pages) == 1


def test_cancel_a_pending_job_and_a_second_cancel_is_an_invalid_transition(
    ledger: client.Client,
) -> None:
    job = ledger.submit("test.noop", {"n": 1}, delay_seconds=3600)

    cancelled = ledger.cancel(job.job_id, reason="not needed")

    assert cancelled.status == "cancelled"
    with pytest.raises(client.InvalidTransition) as refused:
        ledger.cancel(job.job_id)
    assert refused.value.status == 409
    assert refused.value.problem.type == "urn:job-ledger:problem:invalid-transition"


def test_retry_runs_a_failed_job_again(ledger: client.Client) -> None:
    job = ledger.submit("test.permanent", {"n": 1})
    failed = ledger.wait(job.job_id, timeout=WAIT)
    assert failed.status == "failed"

    retried = ledger.retry(job.job_id, max_attempts=1)

    assert (retried.status, retried.attempt, retried.max_attempts) == ("pending", 0, 1)
    assert ledger.wait(job.job_id, timeout=WAIT).status == "failed"
    types = [event.type for event in ledger.history(job.job_id).events]
    assert types == [
        "job.submitted.v1",
        "job.claimed.v1",
        "job.failed.v1",
        "job.retried.v1",
        "job.claimed.v1",
        "job.failed.v1",
    ]


def test_bulk_cancel_and_retry_by_filter_and_a_repeat_changes_nothing_more(
    ledger: client.Client,
) -> None:
    mine = queue()
    jobs = [ledger.submit("test.noop", {"n": n}, queue=mine, delay_seconds=3600) for n in (1, 2)]

    cancelled = ledger.cancel_matching(queue=mine, reason="tidy")
    retried = ledger.retry_matching(status="cancelled", queue=mine, request_id=f"{mine}-retry")
    again = ledger.retry_matching(status="cancelled", queue=mine, request_id=f"{mine}-retry")

    assert (cancelled.matched, cancelled.changed) == (2, 2)
    assert (retried.changed, retried.job_ids) == (2, [j.job_id for j in jobs])
    assert (again.changed, again.repeated, again.job_ids) == (0, True, retried.job_ids)
    # Retried: back to run (this fixture's worker may already have picked them up).
    assert {ledger.get(j.job_id).status for j in jobs} <= {"pending", "processing", "completed"}
    with pytest.raises(client.ApiError) as refused:
        ledger.retry_matching(status="pending", queue=mine)
    assert refused.value.status == 400


def test_history_lists_the_jobs_events_oldest_first_as_typed_events(
    ledger: client.Client,
) -> None:
    job = ledger.submit("test.noop", {"n": 3})
    ledger.wait(job.job_id, timeout=WAIT)

    history = ledger.history(job.job_id)

    assert history.job_id == job.job_id
    assert [e.version for e in history.events] == [1, 2, 3]
    submitted, claimed, completed = (e.event() for e in history.events)
    assert isinstance(submitted, ev.JobSubmitted) and submitted.payload == {"n": 3}
    assert isinstance(claimed, ev.JobClaimed) and claimed.attempt == 1
    assert isinstance(completed, ev.JobCompleted)
    assert completed.result == {"n": 3, "attempt": 1}
    assert submitted.actor == "client-test"


def test_wait_follows_the_stream_until_a_worker_completes_the_job(api: Api, mint: Mint) -> None:
    gate = api.gate()
    transport = Watched(lambda n: opens(gate))  # the job can end once the wait subscribed
    with client.Client(api.url, token=mint(), transport=transport) as ledger:
        job = ledger.submit("test.gated", {"gate": str(gate)})

        done = ledger.wait(job.job_id, timeout=WAIT)

    assert done.status == "completed"
    assert done.result == {"attempt": 1}
    assert len(transport.streams) == 1  # it waited on the stream, not by asking again


class _EndsAfterTheLook(Watched):
    """Once the wait has read the job (unfinished), the job ends, and another client sees
    it ended, before the wait goes on to open its stream."""

    def __init__(self, api: Api, token: str, gate: Path) -> None:
        super().__init__(lambda n: None)
        self.api, self.token, self.gate = api, token, gate
        self.job_id: uuid.UUID | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.job_id and request.method == "GET" and request.url.path.endswith(str(self.job_id)):
            assert b'"status":"completed"' not in response.read()
            opens(self.gate)
            with client.Client(self.api.url, token=self.token) as other:
                assert other.wait(self.job_id, timeout=WAIT).status == "completed"
            self.job_id = None
        return response


def test_a_job_ending_between_the_look_and_the_stream_is_not_missed(api: Api, mint: Mint) -> None:
    gate = api.gate()
    transport = _EndsAfterTheLook(api, mint(), gate)
    with client.Client(api.url, token=mint(), transport=transport) as ledger:
        job = ledger.submit("test.gated", {"gate": str(gate)})
        transport.job_id = job.job_id

        done = ledger.wait(job.job_id, timeout=WAIT)

    assert done.status == "completed"
    assert len(transport.streams) == 1


def test_wait_resumes_the_stream_from_the_last_event_id_after_a_drop(api: Api, mint: Mint) -> None:
    waited, other = api.gate(), api.gate()

    def on_stream(n: int) -> None:
        # The first stream sees the other job's events, then drops; only then may the
        # waited job end, so its completion can come on the resumed stream alone.
        opens(other if n == 1 else waited)

    transport = Watched(on_stream, cut_first=True)
    with client.Client(api.url, token=mint(), transport=transport) as ledger:
        job = ledger.submit("test.gated", {"gate": str(waited)})
        ledger.submit("test.gated", {"gate": str(other)})

        done = ledger.wait(job.job_id, timeout=WAIT)

    assert done.status == "completed"
    assert len(transport.streams) == 2
    assert transport.cut is not None and transport.cut.cut_after is not None
    assert transport.streams[1].headers["Last-Event-ID"] == transport.cut.cut_after


def test_wait_opens_the_stream_again_after_a_503(api: Api, mint: Mint) -> None:
    gate = api.gate()
    transport = Watched(lambda n: opens(gate) if n == 2 else None, refuse_first=True)
    with client.Client(api.url, token=mint(), transport=transport) as ledger:
        job = ledger.submit("test.gated", {"gate": str(gate)})

        done = ledger.wait(job.job_id, timeout=WAIT)

    assert done.status == "completed"
    assert len(transport.streams) == 2
    assert (
        transport.streams[1].headers["Last-Event-ID"]
        == transport.streams[0].headers["Last-Event-ID"]
    )


def test_wait_gives_up_after_its_timeout(ledger: client.Client) -> None:
    job = ledger.submit("test.noop", {"n": 1}, delay_seconds=3600)

    with pytest.raises(client.WaitTimeout) as gave_up:
        ledger.wait(job.job_id, timeout=0.5)

    assert isinstance(gave_up.value, TimeoutError)
    assert gave_up.value.job.job_id == job.job_id
    assert gave_up.value.job.status == "pending"


def test_an_unknown_job_is_a_typed_404(ledger: client.Client) -> None:
    missing = uuid.uuid4()
    for call in (ledger.get, ledger.cancel, ledger.history):
        with pytest.raises(client.UnknownJob) as refused:
            call(missing)
        assert refused.value.status == 404
        assert str(missing) in (refused.value.problem.detail or "")
    with pytest.raises(client.UnknownJob):
        ledger.wait(missing, timeout=1)


def test_an_invalid_payload_is_a_typed_422_naming_the_field(ledger: client.Client) -> None:
    with pytest.raises(client.InvalidRequest) as refused:
        ledger.submit("test.noop", {"n": "seven"})

    assert refused.value.status == 422
    assert [e.path for e in refused.value.field_errors] == ["payload.n"]


def test_an_invalid_batch_item_is_named_by_its_index(ledger: client.Client) -> None:
    items = [
        client.Submission(job_type="test.noop", payload={"n": 1}),
        client.Submission(job_type="no.such.type", payload={}),
    ]

    with pytest.raises(client.InvalidRequest) as refused:
        ledger.submit_many(items)

    assert [e.path for e in refused.value.field_errors] == ["jobs[1].type"]


def test_a_bad_token_is_a_typed_401_and_a_missing_scope_a_403(api: Api, mint: Mint) -> None:
    with client.Client(api.url, token="not-a-jwt") as stranger:
        with pytest.raises(client.Unauthorized) as refused:
            stranger.get(uuid.uuid4())
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")

    with client.Client(api.url, token=mint("jobs:read")) as reader:
        with pytest.raises(client.Forbidden):
            reader.submit("test.noop", {"n": 1})


async def test_the_async_client_submits_lists_and_waits(api: Api, mint: Mint) -> None:
    gate = api.gate()
    transport = AsyncWatched(lambda n: opens(gate))
    mine = queue()
    async with client.AsyncClient(api.url, token=mint(), transport=transport) as ledger:
        first = await ledger.submit("test.gated", {"gate": str(gate)}, queue=mine)
        [second] = await ledger.submit_many(
            [client.Submission(job_type="test.noop", payload={"n": 1}, queue=mine)]
        )
        listed = [job.job_id async for job in ledger.list(queue=mine, page_size=1)]

        done = await ledger.wait(first.job_id, timeout=WAIT)
        with pytest.raises(client.InvalidTransition):
            await ledger.cancel(done.job_id)

    assert listed == [second.job_id, first.job_id]
    assert done.status == "completed"
    assert len(transport.streams) == 1


def test_every_option_the_client_sets_reaches_the_api(ledger: client.Client) -> None:
    """The client encodes the API's own Submission (`ledger.wire`), unset fields left out:
    every option it sets is recorded, and the API's answer decodes into the API's Job."""
    mine = queue()
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    job = ledger.submit(
        "test.noop",
        {"n": 1},
        priority="low",
        queue=mine,
        run_at=run_at,
        max_attempts=4,
        timeout_seconds=12.5,
        backoff_base_seconds=0.5,
        backoff_cap_seconds=30.0,
    )
    [recorded] = ledger.history(job.job_id).events
    first = recorded.event()

    assert isinstance(first, ev.JobSubmitted)
    assert (first.priority, first.queue, first.run_at, first.max_attempts) == (
        "low",
        mine,
        run_at,
        4,
    )
    assert (first.timeout_seconds, first.backoff_base_seconds, first.backoff_cap_seconds) == (
        12.5,
        0.5,
        30.0,
    )
    raw = ledger.http.get(f"/api/v1/jobs/{job.job_id}").content
    assert msgspec.json.decode(raw, type=wire.Job) == msgspec.structs.replace(
        job, webhook_deliveries=[]
    )
    assert msgspec.json.encode(client.Submission(job_type="t", payload={})) == (
        b'{"type":"t","payload":{}}'
    )
