"""The queues API under /api/v1/queues: list and read queues, set a queue's limits,
pause and resume it.

Settings change only by events (`ledger.queues`: queue.configured.v1, queue.paused.v1,
queue.resumed.v1), whose actor is the token's subject; the claim reads them at its
next run. Reads come from the queues read model (`projections.queues`): settings
beside the counts by status, never a count of the jobs.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter

from ledger import errors, queues, wire
from ledger.auth import Principal
from projections import queues as queue_view
from service.http import problems, security
from service.http.services import Services, services_of

PREFIX: Final = "/api/v1/queues"
QueueName = Annotated[
    str, PathParameter(pattern=wire.QUEUE_PATTERN, description="letters, digits, _ . : -")
]


class PauseRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=wire.NO_NUL)] | None = None


class ResumeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


CLOSED_REQUESTS: Final = (wire.QueueSettings, wire.RateLimitIn, PauseRequest, ResumeRequest)


def _name(name: str) -> str:
    """The path's queue name, or a 400 naming it (Litestar checks the pattern first)."""
    try:
        return queues.checked_name(name)
    except errors.InvalidInput as exc:
        raise problems.InvalidParameter(str(exc), exc.field_errors) from None


class QueuesController(Controller):
    path = PREFIX
    tags = ["queues"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
    }

    @get(
        "/",
        opt=security.scope("jobs:read"),
        responses=problems.responses(401, 403),
        summary="Every queue that has settings or jobs",
        description="Each queue's limits, whether it is paused, its jobs by status and the "
        "number running now; a queue never configured has version 0 and no limits.",
    )
    async def list_queues(self, services: NamedDependency[Services]) -> wire.QueueList:
        async with services.connection() as conn:
            return await queue_view.list_all(conn)

    @get(
        "/{name:str}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A queue: its limits, paused or not, its jobs by status",
    )
    async def read(self, name: QueueName, services: NamedDependency[Services]) -> wire.QueueOut:
        async with services.connection() as conn:
            return await queue_view.get(conn, _name(name))

    @put(
        "/{name:str}",
        opt=security.scope("admin"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Set a queue's limits, all of them",
        description="`concurrency`, `rate_limit` (`{limit, period_seconds, burst}`; `burst` "
        "defaults to `limit`), `per_key_concurrency` and `fairness` (`fifo` or "
        "`round_robin`); a field left out is no such limit. Recorded as a "
        "queue.configured.v1 event (none when nothing changes); the claim applies it from "
        "its next run.",
    )
    async def configure(
        self,
        name: QueueName,
        data: JSONBody[wire.QueueSettings],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> wire.QueueOut:
        async with services.connection() as conn:
            state = await services.submitter.configure_queue(
                conn, _name(name), data, actor=principal.subject
            )
            return await queue_view.shown(conn, state)

    @post(
        "/{name:str}/pause",
        status_code=200,
        opt=security.scope("admin"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Pause a queue: its jobs stay pending, running ones finish",
        description='Optional `{"reason"}`, recorded on the queue.paused.v1 event.',
    )
    async def pause(
        self,
        name: QueueName,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[PauseRequest | None] = None,
    ) -> wire.QueueOut:
        reason = data.reason if data is not None else None
        async with services.connection() as conn:
            state = await services.submitter.pause_queue(
                conn, _name(name), actor=principal.subject, reason=reason
            )
            return await queue_view.shown(conn, state)

    @post(
        "/{name:str}/resume",
        status_code=200,
        opt=security.scope("admin"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Resume a paused queue",
    )
    async def resume(
        self,
        name: QueueName,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[ResumeRequest | None] = None,
    ) -> wire.QueueOut:
        async with services.connection() as conn:
            state = await services.submitter.resume_queue(
                conn, _name(name), actor=principal.subject
            )
            return await queue_view.shown(conn, state)
