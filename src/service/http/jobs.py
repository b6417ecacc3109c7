"""The jobs API under /api/v1/jobs: submit (one or a batch), read, list, cancel, retry.

The routes decode the request and call the public submission API
(`ledger.submission`), which validates, fills in defaults, honours idempotency
keys and appends; the actor is the token's subject. Reads come from the
projections.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, cast

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from ledger import bulk, commands, errors, lifecycle, submission, webhooks, wire
from ledger.auth import Principal
from projections import current, joblist
from service.http import problems, security
from service.http.services import Services, services_of

PREFIX: Final = "/api/v1/jobs"
NO_NUL: Final = wire.NO_NUL
QUEUE_PATTERN: Final = wire.QUEUE_PATTERN
Job = wire.Job
BatchRequest = wire.BatchRequest
BatchResult = wire.BatchResult
JobList = wire.JobList


class CancelRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | None = None

    def command(self) -> commands.CancelJob:
        return commands.CancelJob(reason=self.reason)


class RetryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None

    def command(self) -> commands.RetryJob:
        return commands.RetryJob(max_attempts=self.max_attempts)


CLOSED_REQUESTS: Final = (
    wire.Submission,
    BatchRequest,
    CancelRequest,
    RetryRequest,
    wire.BulkRetryRequest,
    wire.BulkCancelRequest,
    wire.BulkFilter,
)


IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Makes retries of this request safe (1 to 255 characters)",
    ),
]


BulkRequestIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="The bulk request's id (1 to 255 characters; a new one when absent): "
        "each changed job's event records it, and a repeat changes nothing more",
    ),
]

_MOST: Final = bulk.MAX_LIMIT
_BULK_RULES: Final = (
    f"Up to `limit` (default {wire.DEFAULT_BULK_LIMIT}, at most {_MOST}) of the tenant's "
    "jobs that match every field of `filter`, oldest first; `filter.status` is required "
    "({statuses}). Changed a chunk per transaction through the ordinary {action} command; "
    "jobs that moved meanwhile are skipped (`matched` vs `changed`). Each changed job's "
    "event records the request id (`bulk_request_id`): a repeat of the id changes nothing "
    "more (`repeated: true`); an id used for the other action answers 409. A limit past "
    f"{_MOST}, a missing status or one the action cannot change answer 400."
)


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


async def _act(
    services: Services, principal: Principal, job_id: uuid.UUID, command: commands.Command
) -> Job:
    """The cancel and retry routes: `command` on the job, by the token's subject."""
    async with services.connection() as conn:
        return await services.submitter.act(conn, job_id, command, actor=principal.subject)


def location(job_id: uuid.UUID) -> str:
    return f"{PREFIX}/{job_id}"


def _key(raw: str | None) -> str | None:
    return submission.checked_key(raw, field="Idempotency-Key")


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
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422, 429),
        summary="Submit a job",
        description="Validates the payload against its job type's schema. With an "
        "Idempotency-Key, a repeated submission returns the first job; the same key with "
        "a different body answers 409. Past the tenant's `max_queued`: 429 with Retry-After, "
        "nothing stored. With `unique`, a duplicate of a job holding the same key creates "
        "nothing: 200 with that job and `deduplicated: true` (`replaced: true` when it "
        "replaced a waiting job's payload and run time), or 409 naming it "
        "(`existing_job_id`) with `on_conflict: error` or a job past replacing.",
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[wire.Submission],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Job]:
        # The two dependencies read from the request directly: asked for through DI, Litestar
        # resolves them concurrently in an anyio task group, a cost on the hottest route.
        services = services_of(request)
        principal = security.principal_of(request)
        key = _key(idempotency_key)
        if key is None and data.unique is None:
            # Nothing to look up first: the submission shares a durable commit with the
            # requests arriving alongside it (group commit) and is answered after it.
            now = services.store.clock()
            command = services.submitter.prepare(data, now=now)
            events = submission.new_jobs([command], actor=principal.subject, now=now)
            (job,) = submission.jobs_of(await services.append(events))
            return Response(job, status_code=201, headers={"Location": location(job.job_id)})
        async with services.connection() as conn:
            done = await services.submitter.place(
                conn, [data], idempotency_key=key, actor=principal.subject
            )
        (job,) = done.jobs
        headers = {"Location": location(job.job_id)}
        if done.deduplicated:
            return Response(job, status_code=200, headers=headers)
        if not done.created:
            headers["Idempotent-Replayed"] = "true"
        return Response(job, status_code=201, headers=headers)

    @post(
        "/batch",
        status_code=201,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422, 429),
        summary="Submit up to 1,000 jobs at once",
        description="All or nothing, in one transaction; a rejection lists every invalid "
        "item's field as `jobs[i].…`. With an Idempotency-Key, item i gets the key "
        "`<Idempotency-Key>/<i>`, and a repeated batch returns the first batch's jobs "
        "(`Idempotent-Replayed: true`); the same key with a different batch answers 409. "
        "Unique items that duplicate a stored job or an earlier item answer that job "
        "(`deduplicated: true`); 200 when no item created a job.",
    )
    async def submit_batch(
        self,
        data: JSONBody[BatchRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[BatchResult]:
        key = _key(idempotency_key)
        async with services.connection() as conn:
            done = await services.submitter.place(
                conn, data.jobs, idempotency_key=key, actor=principal.subject, batch=True
            )
        if done.deduplicated:
            return Response(BatchResult(jobs=done.jobs), status_code=200)
        headers = None if done.created else {"Idempotent-Replayed": "true"}
        return Response(BatchResult(jobs=done.jobs), status_code=201, headers=headers)

    @get(
        "/{job_id:uuid}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A job's current state, or its state at an instant (`as_of`)",
        description="The current state carries `webhook_deliveries`: the webhook deliveries "
        "that report the job's events, oldest first, each with its status, attempts, last "
        "status code and next attempt (`GET /api/v1/webhooks/deliveries/{id}/attempts` has "
        "each attempt). With `as_of`, the job as it was then, folded from its events up to "
        "that instant (UTC when no offset is given), without deliveries; 404 if it had not "
        "been submitted yet.",
    )
    async def read(
        self,
        job_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        as_of: Annotated[datetime | None, QueryParameter(description="an instant")] = None,
    ) -> Job:
        if as_of is None:  # current state on the primary: a client reads its own writes
            async with services.connection() as conn:
                state = await current.get(conn, job_id)
                if state is None:
                    raise errors.UnknownJob(job_id)
                deliveries = await webhooks.deliveries_reporting(conn, job_id)
            return msgspec.structs.replace(Job.of(state), webhook_deliveries=deliveries)
        # The replica's: an instant within its replay lag may miss the latest events.
        instant = utc_instant(as_of, "as_of")
        async with services.reading() as conn:
            state = await current.as_of(conn, job_id, instant)
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
        async with services.reading() as conn:
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
        return await _act(services, principal, job_id, (data or CancelRequest()).command())

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
        return await _act(services, principal, job_id, (data or RetryRequest()).command())

    @post(
        "/retry",
        status_code=200,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Run again the failed or cancelled jobs that match a filter",
        description=_BULK_RULES.format(action="retry", statuses="failed or cancelled"),
    )
    async def retry_matching(
        self,
        data: JSONBody[wire.BulkRetryRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        idempotency_key: BulkRequestIdHeader = None,
    ) -> wire.BulkResult:
        async with services.pool.acquire() as proxy:
            return await services.submitter.retry_matching(
                cast(asyncpg.Connection, proxy),
                data.filter,
                limit=data.limit,
                request_id=_key(idempotency_key),
                actor=principal.subject,
                tenant=services.tenant,
            )

    @post(
        "/cancel",
        status_code=200,
        opt=security.scope("jobs:cancel"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Cancel the pending, retrying or processing jobs that match a filter",
        description=_BULK_RULES.format(action="cancel", statuses="pending, retrying or processing"),
    )
    async def cancel_matching(
        self,
        data: JSONBody[wire.BulkCancelRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        idempotency_key: BulkRequestIdHeader = None,
    ) -> wire.BulkResult:
        async with services.pool.acquire() as proxy:
            return await services.submitter.cancel_matching(
                cast(asyncpg.Connection, proxy),
                data.filter,
                limit=data.limit,
                request_id=_key(idempotency_key),
                reason=data.reason,
                actor=principal.subject,
                tenant=services.tenant,
            )
