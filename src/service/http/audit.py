"""Audit over HTTP: job histories, the global feed (paged and live), chain and checkpoint
verification, signed checkpoints; and resubmitting a job as a new one (the route
`POST /api/v1/jobs/{id}/replay`).

Reading routes need the `audit:read` scope; resubmitting a job needs `jobs:write` and
taking a checkpoint on demand `admin`. The audit key (its private half signs
checkpoints) is a file outside the database, loaded on first use.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from audit import chains, checkpoints, note, proof, signing, tree
from ledger import errors, store, wire
from ledger import events as ev
from ledger.auth import Principal
from projections import feed, live, timeline
from service.http import jobs, problems, security
from service.http.services import Services, services_of

MAX_FEED_LIMIT: Final = 1000
# The audit reads and the checkpoint write read one snapshot of the ledger throughout: they
# open repeatable-read transactions of their own, inside the request's.
AUDIT_ISOLATION: Final = "repeatable_read"
STREAM_HEARTBEAT_SECONDS: Final = 15.0
_decode = msgspec.json.Decoder()


class AuditKey:
    """The audit signing key, loaded (or generated) from its file on first use."""

    def __init__(self, path: Path, signer: signing.Signer | None = None) -> None:
        self.path = path
        self._signer = signer

    def get(self) -> signing.Signer:
        if self._signer is None:
            self._signer = signing.load_or_create(self.path)
        return self._signer


EventOut = wire.EventOut
JobHistory = wire.JobHistory


def event_out(recorded: store.Recorded) -> EventOut:
    """A recorded event as the API answers it."""
    event = recorded.event
    return EventOut(
        cursor=feed.Cursor(recorded.txid, recorded.position).encode(),
        position=recorded.position,
        job_id=event.job_id,
        version=event.version,
        type=ev.type_tag(event),
        data=_decode.decode(ev.data_json(event)),
        actor=event.actor,
        occurred_at=event.occurred_at,
        prev_hash=recorded.prev_hash.hex(),
        hash=recorded.hash.hex(),
    )


class FeedPage(msgspec.Struct, frozen=True, kw_only=True):
    events: list[EventOut]
    next_cursor: str  # pass as `after`; a consumer that keeps doing so misses nothing
    # Ask again from next_cursor right away: the page is full, or a filtered read
    # stopped at its scan bound (false: caught up with the feed for now).
    more: bool = False


class Link(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    version: int
    reason: str
    expected: str
    found: str
    message: str


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """Hash chains recomputed (all jobs, or one) and, for the whole ledger, the checkpoints."""

    ok: bool
    jobs: int
    events: int
    broken: list[Link]  # each job's first broken link
    checkpoints: proof.Report | None  # None when one job was checked


class PublicKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    algorithm: str
    pem: str
    raw_base64: str
    note_verifier_key: str  # for signed-note tools: <name>+<key hash hex>+<base64(0x01 ‖ key)>


CheckpointOut = checkpoints.CheckpointOut


class CheckpointList(msgspec.Struct, frozen=True, kw_only=True):
    public_key: PublicKey
    signed_message_format: str
    checkpoints: list[CheckpointOut]  # newest first


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    replay_of: uuid.UUID
    job: jobs.Job


def _public(key: signing.Verifier) -> PublicKey:
    return PublicKey(
        key_id=key.key_id,
        algorithm="Ed25519",
        pem=key.pem,
        raw_base64=key.raw_base64,
        note_verifier_key=note.verifier_key(key),
    )


def audit_key_of(request: Request[Any, Any, Any]) -> AuditKey:
    key: AuditKey = request.app.state.audit_key
    return key


def feed_wakeups_of(request: Request[Any, Any, Any]) -> live.Wakeups:
    wakeups: live.Wakeups = request.app.state.feed_wakeups
    return wakeups


def live_feed(
    listen_dsn: str, poll_seconds: float = live.POLL_SECONDS
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan hook: the process's one LISTEN connection for the live feed, from
    start-up to shutdown, fanned out to every `/events/stream` (projections.live)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        wakeups = live.Wakeups(listen_dsn, poll_seconds=poll_seconds)
        app.state.feed_wakeups = wakeups
        wakeups.start()
        try:
            yield
        finally:
            await wakeups.stop()

    return lifespan


def _utc(moment: datetime | None, parameter: str) -> datetime | None:
    return None if moment is None else jobs.utc_instant(moment, parameter)


EventType = Annotated[str | None, QueryParameter(name="type", max_length=100, pattern=jobs.NO_NUL)]
JobType = Annotated[
    str | None, QueryParameter(name="job_type", max_length=100, pattern=jobs.NO_NUL)
]
Actor = Annotated[str | None, QueryParameter(max_length=200, pattern=jobs.NO_NUL)]
Since = Annotated[
    datetime | None, QueryParameter(description="occurred at or after (UTC if naive)")
]
Until = Annotated[datetime | None, QueryParameter(description="occurred before (UTC if naive)")]


def _filters(
    event_type: str | None,
    job_type: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> feed.Filters:
    return feed.Filters(
        event_type=event_type,
        job_type=job_type,
        actor=actor,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
    )


class AuditController(Controller):
    path = "/api/v1"
    tags = ["audit"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
        "audit_key": Provide(audit_key_of, sync_to_thread=False),
        "feed_wakeups": Provide(feed_wakeups_of, sync_to_thread=False),
    }

    @get(
        "/jobs/{job_id:uuid}/events",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A job's whole history, oldest first",
        description="Each event carries `note`: why it happened, in words, as `ledger replay` "
        "prints it under the event (a retry's wait and policy, why retrying stopped, a snooze, "
        "a unique key, a workflow's unblocking); null when there is nothing to explain.",
    )
    async def history(
        self, job_id: FromPath[uuid.UUID], services: NamedDependency[Services]
    ) -> JobHistory:
        async with services.reading() as conn:
            recorded = await services.store.history(conn, job_id)
        if not recorded:
            raise errors.UnknownJob(job_id)
        # Each event's note is the `why:` line `ledger replay` prints, from the same code.
        explained = timeline.notes(recorded)
        return JobHistory(
            job_id=job_id,
            events=[
                wire.HistoryEvent(**msgspec.structs.asdict(event_out(r)), note=why)
                for r, why in zip(recorded, explained, strict=True)
            ],
        )

    @get(
        "/events",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403),
        summary="The global feed of events, by cursor",
        description="Pass `next_cursor` back as `after`. A consumer that pages to the end "
        "and later continues from its last cursor sees every event committed meanwhile, "
        "none twice, none skipped. Filters narrow what is returned; the cursor still "
        "moves past what they leave out. Filters cost a bounded scan, not an index: a "
        "filtered request looks at no more than the next 1,000 events (or `limit`, if "
        "larger), so a filter that matches nothing answers in bounded time at any size; "
        "the page can then be short, even empty, with `more: true` and a `next_cursor` "
        "past what was looked at: call again with it. `more: false`: caught up.",
    )
    async def events(
        self,
        services: NamedDependency[Services],
        after: Annotated[str | None, QueryParameter(max_length=60)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_FEED_LIMIT)] = 100,
        event_type: EventType = None,
        job_type: JobType = None,
        actor: Actor = None,
        since: Since = None,
        until: Until = None,
    ) -> FeedPage:
        cursor = feed.parse_cursor(after)
        filters = _filters(event_type, job_type, actor, since, until)
        async with services.reading() as conn:
            page = await feed.read(conn, cursor, limit, filters)
        return FeedPage(
            events=[event_out(r) for r in page.events],
            next_cursor=page.cursor.encode(),
            more=page.more,
        )

    @get(
        "/events/stream",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403),
        summary="The global feed, live, as Server-Sent Events",
        description="Each event's `id` is its feed cursor: a client that reconnects with "
        "`Last-Event-ID` (or `after`) misses nothing. Same filters as /events. Events "
        "arrive within milliseconds of their commit (a NOTIFY wakes the stream).",
    )
    async def stream(
        self,
        services: NamedDependency[Services],
        feed_wakeups: NamedDependency[live.Wakeups],
        after: Annotated[str | None, QueryParameter(max_length=60)] = None,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False, max_length=60)
        ] = None,
        event_type: EventType = None,
        job_type: JobType = None,
        actor: Actor = None,
        since: Since = None,
        until: Until = None,
    ) -> ServerSentEvent:
        start = feed.parse_cursor(last_event_id or after)  # a bad cursor is a 400, before streaming
        # Each read of the stream is a transaction of its own acting in the request's
        # tenant, like every other route's: a client that goes away cancels a read, whose
        # transaction is then rolled back before its connection goes back to the pool.
        filters = _filters(event_type, job_type, actor, since, until)
        async with services.connection():
            pass  # a database that cannot be reached is a 503 now, not a stream that breaks
        return ServerSentEvent(_live(services, feed_wakeups, start, filters))

    @get(
        "/audit/verify",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="Recompute hash chains and check the signed checkpoints",
        description="With `job_id`, that job's chain only. Without it, every chain and "
        "every checkpoint: deletions, reordering and truncation that leave the chains "
        "intact are named against the checkpoints.",
    )
    async def verify(
        self,
        services: NamedDependency[Services],
        audit_key: NamedDependency[AuditKey],
        job_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
    ) -> VerifyReport:
        async with services.connection(isolation=AUDIT_ISOLATION) as conn:
            chain = await chains.verify(conn, job_id)
            if job_id is not None and chain.events == 0:
                raise errors.UnknownJob(job_id)
            report = None if job_id else await checkpoints.verify(conn, audit_key.get())
        return VerifyReport(
            ok=chain.ok and (report is None or report.ok),
            jobs=chain.jobs,
            events=chain.events,
            broken=[
                Link(
                    job_id=b.job_id,
                    version=b.version,
                    reason=b.reason,
                    expected=b.expected,
                    found=b.found,
                    message=b.describe(),
                )
                for b in chain.broken
            ],
            checkpoints=report,
        )

    @get(
        "/audit/checkpoints",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403),
        summary="Signed checkpoints, newest first, with the public key that verifies them",
        description="Each checkpoint signs `(tree_size, root_hash)`: the root of the Merkle "
        "tree (RFC 9162) over the first `tree_size` events of the feed, as a C2SP "
        "tlog-checkpoint signed note (`note`). Older checkpoints (no `tree_size`) sign "
        "`signed_message`.",
    )
    async def list_checkpoints(
        self,
        services: NamedDependency[Services],
        audit_key: NamedDependency[AuditKey],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> CheckpointList:
        async with services.connection(isolation=AUDIT_ISOLATION) as conn:
            listed = await checkpoints.list_recent(conn, limit)
        key = audit_key.get()
        return CheckpointList(
            public_key=_public(key),
            signed_message_format="<origin>\\n<tree_size>\\n<root hash base64>\\n (C2SP tlog-checkpoint)",
            checkpoints=[CheckpointOut.of(cp, key) for cp in listed],
        )

    @get(
        "/audit/proofs/inclusion",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="Prove one event is in the signed log",
        description="The RFC 9162 inclusion proof (audit path, innermost first) of the event "
        "at `cursor` in the Merkle tree of the first `tree_size` events: a checkpoint's "
        "size. Verify it against that checkpoint's signed root with the leaf "
        "SHA-256(0x00 ‖ event hash).",
    )
    async def inclusion_proof(
        self,
        services: NamedDependency[Services],
        audit_key: NamedDependency[AuditKey],
        cursor: Annotated[str, QueryParameter(max_length=60)],
        tree_size: Annotated[int, QueryParameter(ge=1)],
    ) -> tree.Inclusion:
        at = feed.parse_cursor(cursor)
        async with services.connection(isolation=AUDIT_ISOLATION) as conn:
            return await tree.inclusion(
                conn, audit_key.get().key_id, at.txid, at.position, tree_size
            )

    @get(
        "/audit/proofs/consistency",
        opt=security.scope("audit:read"),
        responses=problems.responses(400, 401, 403),
        summary="Prove the log of size `to` extends the log of size `from`",
        description="The RFC 9162 consistency proof between two tree sizes (two checkpoints): "
        "an auditor who holds the older checkpoint checks with it that the newer one "
        "neither rewrote nor dropped any event.",
    )
    async def consistency_proof(
        self,
        services: NamedDependency[Services],
        audit_key: NamedDependency[AuditKey],
        from_: Annotated[int, QueryParameter(name="from", ge=1)],
        to: Annotated[int, QueryParameter(ge=1)],
    ) -> tree.Consistency:
        async with services.connection(isolation=AUDIT_ISOLATION) as conn:
            return await tree.consistency(conn, audit_key.get().key_id, from_, to)

    @post(
        "/audit/checkpoints",
        opt=security.scope("admin"),
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=CheckpointOut,
                description="No event was committed since: the newest checkpoint",
                generate_examples=False,
            ),
            204: ResponseSpec(data_container=None, description="The ledger is empty"),
            **problems.responses(401, 403, 409),
        },
        summary="Sign a checkpoint of the feed now",
        description="201 with the new checkpoint; 200 with the newest one when no event "
        "was committed since; 204 when the ledger is empty.",
    )
    async def take_checkpoint(
        self, services: NamedDependency[Services], audit_key: NamedDependency[AuditKey]
    ) -> Response[CheckpointOut | None]:
        async with services.connection(isolation=AUDIT_ISOLATION) as conn:
            cp, created = await checkpoints.create(conn, audit_key.get())
        if cp is None:
            return Response(None, status_code=204)
        return Response(CheckpointOut.of(cp, audit_key.get()), status_code=201 if created else 200)

    @post(
        "/jobs/{job_id:uuid}/replay",
        status_code=201,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 404, 409),
        summary="Submit a job again as a new job",
        description="Same type and payload. The new job's submission records `replay_of`, "
        "the original records `job.replayed.v1` with `replayed_as`, in one transaction.",
    )
    async def replay(
        self,
        job_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Response[Replayed]:
        async with services.connection() as conn:
            try:
                new, _ = await services.submitter.resubmit(conn, job_id, actor=principal.subject)
            except errors.VersionConflict:  # the original moved meanwhile: decide again
                new, _ = await services.submitter.resubmit(conn, job_id, actor=principal.subject)
        return Response(
            Replayed(replay_of=job_id, job=new),
            status_code=201,
            headers={"Location": jobs.location(new.job_id)},
        )


async def _live(
    services: Services, wakeups: live.Wakeups, start: feed.Cursor, filters: feed.Filters
) -> AsyncIterator[ServerSentEventMessage]:
    """Events after `start` as they commit, each with its cursor as `id`.

    A `ready` event opens the stream and a `heartbeat` event (no id, so a browser's
    Last-Event-ID is kept) goes out after each quiet spell, so proxies keep it open.
    A NOTIFY wakes the stream when events are appended (projections.live).
    """
    yield ServerSentEventMessage(event="ready", retry=2000)
    pages = live.follow(
        services.connection,
        wakeups,
        start,
        filters,
        limit=MAX_FEED_LIMIT,
        heartbeat_seconds=STREAM_HEARTBEAT_SECONDS,
    )
    async with aclosing(pages):  # a client that goes away unsubscribes at once
        async for recorded in pages:
            if not recorded:
                yield ServerSentEventMessage(event="heartbeat")
            for one in recorded:
                out = event_out(one)
                yield ServerSentEventMessage(
                    id=out.cursor, event=out.type, data=msgspec.json.encode(out).decode()
                )
