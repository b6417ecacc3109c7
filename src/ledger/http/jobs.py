"""The jobs API under /api/v1/jobs: submit (one or a batch), read, list, cancel, retry.

Everything is validated here, at the edge: the body against its msgspec model,
the payload against its job type's registered schema. Every change goes through
the event store as a command whose actor is the token's subject.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, cast

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from ledger import commands, errors, groupcommit, jobtypes, lifecycle, payloads, store
from ledger import events as ev
from ledger.auth import Principal
from ledger.http import problems, security
from projections import current, joblist

PREFIX: Final = "/api/v1/jobs"
MAX_BATCH: Final = 1000
MAX_DELAY_SECONDS: Final = 366 * 24 * 3600
MAX_PAST: Final = timedelta(days=100 * 365)  # far-past times could not be represented in UTC
_PRIORITY_NAME: Final = {rank: name for name, rank in ev.PRIORITY_RANK.items()}

QUEUE_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
NO_NUL: Final = r"^[^\x00]*$"  # PostgreSQL text and jsonb cannot hold U+0000
QueueName = Annotated[str, msgspec.Meta(pattern=QUEUE_PATTERN)]
JobTypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class SubmitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job to run: its type, the payload its type's schema accepts, and how to run it."""

    type: JobTypeName
    payload: dict[str, Any]
    priority: ev.Priority = "normal"
    queue: QueueName = "default"
    run_at: AwareTime | None = None
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY_SECONDS)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] | None = None
    # Retry backoff for this job (exponential with jitter): attempt n waits between half
    # and all of min(cap, base * 2^(n-1)) seconds. The job type's defaults otherwise.
    backoff_base_seconds: Annotated[float, msgspec.Meta(ge=0, le=86400)] | None = None
    backoff_cap_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    jobs: Annotated[list[SubmitRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | None = None


class RetryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None


CLOSED_REQUESTS: Final = (SubmitRequest, BatchRequest, CancelRequest, RetryRequest)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job as it is now."""

    job_id: uuid.UUID
    status: lifecycle.Status
    type: str
    queue: str
    priority: ev.Priority
    attempt: int
    max_attempts: int
    payload: dict[str, Any]
    result: Any
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    next_attempt_at: datetime | None  # when a pending or retrying job becomes due

    @classmethod
    def of(cls, state: lifecycle.JobState) -> Job:
        return cls(
            job_id=state.job_id,
            status=state.status,
            type=state.type,
            queue=state.queue,
            priority=_PRIORITY_NAME[state.priority],  # type: ignore[arg-type]
            attempt=state.attempt,
            max_attempts=state.max_attempts,
            payload=state.payload,
            result=state.result,
            error=state.error,
            created_at=state.created_at,
            started_at=state.started_at,
            completed_at=state.completed_at,
            next_attempt_at=state.run_at if state.status in lifecycle.RUNNABLE else None,
        )


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]
    next_cursor: str | None  # pass as `cursor` for the next page; null on the last page


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[Job]


class Services(msgspec.Struct, frozen=True, kw_only=True):
    """What the routes work with, built once by the app factory."""

    pool: asyncpg.Pool
    store: store.EventStore
    registry: jobtypes.Registry
    committer: groupcommit.GroupCommit  # concurrent submissions share a durable commit

    @asynccontextmanager
    async def connection(
        self, wait_seconds: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, typed as the plain connection the core functions take."""
        async with self.pool.acquire(timeout=wait_seconds) as proxy:
            yield cast(asyncpg.Connection, proxy)


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Makes retries of this request safe (1 to 255 characters)",
    ),
]


def utc_instant(moment: datetime, parameter: str) -> datetime:
    """A query parameter's instant (UTC when it gives no offset); 400 when it lies outside
    the years 1 to 9999 once in UTC (`0001-01-01T00:00:00+14:00`), where neither Python
    nor the database driver can carry it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        message = "the instant is outside the years 1 to 9999 in UTC"
        raise problems.InvalidParameter(
            message, [problems.FieldError(path=parameter, message=message)]
        ) from None
    return moment


def location(job_id: uuid.UUID) -> str:
    return f"{PREFIX}/{job_id}"


def _to_command(
    request: SubmitRequest,
    registry: jobtypes.Registry,
    now: datetime,
    idempotency_key: str | None,
    where: str = "",
) -> commands.SubmitJob:
    """The SubmitJob a request asks for, with its type's defaults; raises on an invalid payload."""
    unstorable = payloads.check(request.payload)  # before anything walks a deep payload
    if unstorable is not None:
        raise problems.InvalidRequest(
            unstorable.message,
            [
                problems.FieldError(
                    path=f"{where}payload{unstorable.path}", message=unstorable.message
                )
            ],
        )
    try:
        job_type = registry.get(request.type)
    except jobtypes.UnknownJobType as exc:
        raise problems.InvalidRequest(
            str(exc), [problems.FieldError(path=f"{where}type", message=str(exc))]
        ) from None
    try:
        job_type.validate(request.payload)
    except jobtypes.InvalidPayload as exc:
        raise problems.InvalidRequest(
            str(exc),
            [
                problems.FieldError(
                    path=problems.payload_path(exc.path, f"{where}payload"), message=exc.message
                )
            ],
        ) from None
    if request.run_at is not None and request.delay_seconds is not None:
        message = "give run_at or delay_seconds, not both"
        raise problems.InvalidRequest(
            message, [problems.FieldError(path=f"{where}delay_seconds", message=message)]
        )
    run_at = request.run_at
    if run_at is not None and not (
        -MAX_PAST <= run_at - now <= timedelta(seconds=MAX_DELAY_SECONDS)
    ):
        message = (
            f"run_at must be at most {MAX_DELAY_SECONDS // 86400} days ahead (a past time runs now)"
        )
        raise problems.InvalidRequest(
            message, [problems.FieldError(path=f"{where}run_at", message=message)]
        )
    if request.delay_seconds is not None:
        run_at = now + timedelta(seconds=request.delay_seconds)
    return commands.SubmitJob(
        job_type=request.type,
        payload=request.payload,
        queue=request.queue,
        priority=request.priority,
        max_attempts=request.max_attempts or job_type.max_attempts,
        timeout_seconds=request.timeout_seconds or job_type.timeout_seconds,
        backoff_base_seconds=_or(request.backoff_base_seconds, job_type.backoff_base_seconds),
        backoff_cap_seconds=_or(request.backoff_cap_seconds, job_type.backoff_cap_seconds),
        run_at=run_at,
        idempotency_key=idempotency_key,
    )


def _or(given: float | None, default: float) -> float:
    """The request's value when it gave one (0 is a value), else the job type's default."""
    return default if given is None else given


def _same_submission(
    first: ev.JobSubmitted, command: commands.SubmitJob, request: SubmitRequest
) -> bool:
    """Whether `request` repeats the submission recorded as `first` (run_at only if given)."""
    same = (
        first.job_type == command.job_type
        and payloads.same(first.payload, command.payload)  # as stored: 1e23 reads back as int
        and first.queue == command.queue
        and first.priority == command.priority
        and first.max_attempts == command.max_attempts
        and first.timeout_seconds == command.timeout_seconds
        and first.backoff_base_seconds == command.backoff_base_seconds
        and first.backoff_cap_seconds == command.backoff_cap_seconds
    )
    if request.run_at is not None:
        same = same and first.run_at == request.run_at
    return same


async def _replay(
    conn: asyncpg.Connection,
    services: NamedDependency[Services],
    subject: str,
    key: str,
    command: commands.SubmitJob,
    request: SubmitRequest,
) -> lifecycle.JobState | None:
    """The job this submitter created with `key` (None: none yet); 409 if for another request."""
    job_id = await joblist.find_by_idempotency_key(conn, subject, key)
    if job_id is None:
        return None
    history = await services.store.history(conn, job_id)
    first = history[0].event
    if not isinstance(first, ev.JobSubmitted) or not _same_submission(first, command, request):
        raise errors.IdempotencyMismatch(key, job_id)
    return await current.get(conn, job_id)


def _item_key(key: str, index: int) -> str:
    """The Idempotency-Key of item `index` of a batch submitted with `key`."""
    return f"{key}/{index}"


async def _replay_batch(
    conn: asyncpg.Connection,
    services: Services,
    subject: str,
    key: str,
    wanted: list[commands.SubmitJob],
    items: Sequence[SubmitRequest],
) -> list[lifecycle.JobState] | None:
    """The jobs of the batch this submitter sent with `key` (None: none yet).

    A batch commits whole, so its items' keys are all taken or none is; any other
    mix, or an item that differs from the first batch's, is another batch: 409.
    """
    keys = [_item_key(key, i) for i in range(len(wanted))]
    beyond = _item_key(key, len(wanted))  # taken only if the first batch was longer
    found = await joblist.find_by_idempotency_keys(conn, subject, [*keys, beyond])
    if not found:
        return None
    if beyond in found or any(k not in found for k in keys):
        raise errors.IdempotencyMismatch(key, next(iter(found.values())))
    job_ids = [found[k] for k in keys]
    firsts = await services.store.submissions(conn, job_ids)
    for job_id, command, item in zip(job_ids, wanted, items, strict=True):
        first = firsts.get(job_id)
        if not isinstance(first, ev.JobSubmitted) or not _same_submission(first, command, item):
            raise errors.IdempotencyMismatch(key, job_id)
    return await joblist.get_many(conn, job_ids)


def _idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 255 or not key.isprintable():
        message = "Idempotency-Key must be 1 to 255 printable characters"
        raise problems.InvalidRequest(
            message, [problems.FieldError(path="Idempotency-Key", message=message)]
        )
    return key


async def _act(
    services: NamedDependency[Services],
    job_id: FromPath[uuid.UUID],
    command: commands.Command,
    actor: str,
) -> Job:
    """Run a command on an existing job, re-deciding once if another writer got there first."""
    async with services.connection() as conn:
        for attempt in (1, 2):
            try:
                await services.store.execute(conn, job_id, command, actor=actor)
                break
            except errors.VersionConflict:
                if attempt == 2:
                    raise
        state = await current.get(conn, job_id)
    if state is None:
        raise errors.UnknownJob(job_id)
    return Job.of(state)


_CREATED_HEADERS: Final = [
    ResponseHeader(name="Location", description="The job's URL", documentation_only=True),
]


class JobsController(Controller):
    path = PREFIX
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
    }

    @post(
        "/",
        status_code=201,
        opt=security.scope("jobs:write"),
        response_headers=_CREATED_HEADERS,
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Submit a job",
        description="Validates the payload against its job type's schema. With an "
        "Idempotency-Key, a repeated submission returns the first job; the same key with "
        "a different body answers 409.",
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SubmitRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Job]:
        # The two dependencies read from the request directly: asked for through DI, Litestar
        # resolves them concurrently in an anyio task group, a measurable cost on the hottest
        # route (~5 % of the API's CPU per submission).
        services = services_of(request)
        principal = security.principal_of(request)
        key = _idempotency_key(idempotency_key)
        command = _to_command(data, services.registry, services.store.clock(), key)
        if key is None:
            # Nothing to look up first: the submission shares a durable commit with the
            # requests arriving alongside it (group commit) and is answered after it.
            submitted = commands.decide(
                None,
                command,
                job_id=uuid.uuid4(),
                actor=principal.subject,
                now=services.store.clock(),
            )
            recorded = await services.committer.append(submitted)
            state = lifecycle.fold(r.event for r in recorded)
            assert state is not None
            return Response(
                Job.of(state), status_code=201, headers={"Location": location(state.job_id)}
            )
        async with services.connection() as conn:
            for _ in range(3):
                if key is not None:
                    existing = await _replay(conn, services, principal.subject, key, command, data)
                    if existing is not None:
                        job = Job.of(existing)
                        return Response(
                            job,
                            status_code=201,
                            headers={
                                "Location": location(job.job_id),
                                "Idempotent-Replayed": "true",
                            },
                        )
                # A fresh id has no history: decide against None and append, without
                # reading the (empty) history first (one round trip less per request).
                submitted = commands.decide(
                    None,
                    command,
                    job_id=uuid.uuid4(),
                    actor=principal.subject,
                    now=services.store.clock(),
                )
                try:
                    recorded = await services.store.append(conn, submitted)
                except errors.IdempotencyKeyTaken:
                    continue  # a racing request with this key won: answer with its job
                state = lifecycle.fold(r.event for r in recorded)
                assert state is not None
                return Response(
                    Job.of(state), status_code=201, headers={"Location": location(state.job_id)}
                )
        raise errors.IdempotencyKeyTaken(principal.subject, key or "")

    @post(
        "/batch",
        status_code=201,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Submit up to 1,000 jobs at once",
        description="All or nothing, in one transaction; a rejection lists every invalid "
        "item's field as `jobs[i].…`. With an Idempotency-Key, item i gets the key "
        "`<Idempotency-Key>/<i>`, and a repeated batch returns the first batch's jobs "
        "(`Idempotent-Replayed: true`); the same key with a different batch answers 409.",
    )
    async def submit_batch(
        self,
        data: JSONBody[BatchRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[BatchResult]:
        key = _idempotency_key(idempotency_key)
        now = services.store.clock()
        wanted: list[commands.SubmitJob] = []
        invalid: list[problems.FieldError] = []
        for index, item in enumerate(data.jobs):
            item_key = None if key is None else _item_key(key, index)
            try:
                wanted.append(
                    _to_command(item, services.registry, now, item_key, f"jobs[{index}].")
                )
            except problems.InvalidRequest as exc:
                invalid.extend(exc.field_errors)
        if invalid:
            raise problems.InvalidRequest(
                f"{len(invalid)} of {len(data.jobs)} jobs are invalid; none was submitted",
                invalid,
            )
        async with services.connection() as conn:
            for _ in range(3):
                if key is not None:
                    existing = await _replay_batch(
                        conn, services, principal.subject, key, wanted, data.jobs
                    )
                    if existing is not None:
                        return Response(
                            BatchResult(jobs=[Job.of(s) for s in existing]),
                            status_code=201,
                            headers={"Idempotent-Replayed": "true"},
                        )
                submitted = [
                    event
                    for command in wanted
                    for event in commands.decide(
                        None, command, job_id=uuid.uuid4(), actor=principal.subject, now=now
                    )
                ]
                try:
                    recorded = await services.store.append(conn, submitted)
                except errors.IdempotencyKeyTaken:
                    if key is None:
                        raise
                    continue  # a racing request with this key won: answer with its jobs
                states = [lifecycle.evolve(None, r.event) for r in recorded]
                return Response(BatchResult(jobs=[Job.of(s) for s in states]), status_code=201)
        raise errors.IdempotencyKeyTaken(principal.subject, key or "")

    @get(
        "/{job_id:uuid}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A job's current state, or its state at an instant (`as_of`)",
        description="With `as_of`, the job as it was then, folded from its events up to that "
        "instant (UTC when no offset is given); 404 if it had not been submitted yet.",
    )
    async def read(
        self,
        job_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        as_of: Annotated[datetime | None, QueryParameter(description="an instant")] = None,
    ) -> Job:
        async with services.connection() as conn:
            if as_of is None:
                state = await current.get(conn, job_id)
            else:
                state = await current.as_of(conn, job_id, utc_instant(as_of, "as_of"))
        if state is None:
            raise errors.UnknownJob(job_id)
        return Job.of(state)

    @get(
        "/",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403),
        summary="List jobs, newest first",
        description=f"Keyset-paged: pass `next_cursor` back as `cursor`. `limit` is capped "
        f"at {joblist.MAX_LIMIT}.",
    )
    async def list_jobs(
        self,
        services: NamedDependency[Services],
        status: FromQuery[lifecycle.Status | None] = None,
        job_type: Annotated[
            str | None, QueryParameter(name="type", max_length=100, pattern=NO_NUL)
        ] = None,
        queue: Annotated[str | None, QueryParameter(pattern=QUEUE_PATTERN)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> JobList:
        after = joblist.parse_cursor(cursor)
        async with services.connection() as conn:
            page = await joblist.page(
                conn, status=status, job_type=job_type, queue=queue, after=after, limit=limit
            )
        return JobList(
            jobs=[Job.of(s) for s in page.jobs],
            next_cursor=page.next_cursor.encode() if page.next_cursor else None,
        )

    @post(
        "/{job_id:uuid}/cancel",
        status_code=200,
        opt=security.scope("jobs:cancel"),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Cancel a pending, retrying or processing job",
    )
    async def cancel(
        self,
        job_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[CancelRequest | None] = None,
    ) -> Job:
        reason = data.reason if data else None
        return await _act(services, job_id, commands.CancelJob(reason=reason), principal.subject)

    @post(
        "/{job_id:uuid}/retry",
        status_code=200,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Run a failed or cancelled job again",
        description="Attempts start over; the job's history is kept.",
    )
    async def retry(
        self,
        job_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[RetryRequest | None] = None,
    ) -> Job:
        max_attempts = data.max_attempts if data else None
        return await _act(
            services, job_id, commands.RetryJob(max_attempts=max_attempts), principal.subject
        )
