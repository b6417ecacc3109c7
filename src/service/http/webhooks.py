"""The webhooks API under /api/v1/webhooks (issue #19): endpoints, their secrets, their
deliveries; every change an event (`ledger.webhooks`), whose actor is the token's subject.

Writes need `webhooks:write` (granted by `admin`); reads `jobs:read`. An endpoint's URL is
checked against server-side request forgery at registration (`app.state.webhook_vet`,
the senders' guard with WEBHOOK_ALLOWED_NETWORKS) and again at every send.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from ledger import webhooks
from ledger.auth import Principal
from service.http import problems, security
from service.http.services import Services, services_of

PREFIX: Final = "/api/v1/webhooks"
FromPath = Annotated[uuid.UUID, PathParameter()]


class RedeliverIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None


class RotateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long the previous secret still signs beside the new one (default a day)."""

    grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = (
        webhooks.ROTATION_GRACE_SECONDS
    )


CLOSED_REQUESTS: Final = (
    webhooks.EndpointIn,
    webhooks.EndpointPatch,
    webhooks.RecoverIn,
    RedeliverIn,
    RotateIn,
)


def vet_of(request: Request[Any, Any, Any]) -> webhooks.Vet:
    vet: webhooks.Vet = request.app.state.webhook_vet
    return vet


WRITES: Final = problems.responses(400, 401, 403, 404, 409, 413, 415, 422)


class WebhooksController(Controller):
    path = PREFIX
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
        "vet": Provide(vet_of, sync_to_thread=False),
    }

    @post(
        "/",
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="Register a webhook endpoint; its secret is shown this once",
        description="`events`: any of job.completed, job.failed, job.cancelled, "
        "job.retrying; `queues` and `types` filter (left out: all). Deliveries are signed per "
        "Standard Webhooks with the returned `whsec_` secret. A URL whose host is not a "
        "public address (unless in WEBHOOK_ALLOWED_NETWORKS) is refused (422).",
    )
    async def create(
        self,
        data: JSONBody[webhooks.EndpointIn],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        vet: NamedDependency[webhooks.Vet],
    ) -> webhooks.EndpointCreated:
        async with services.connection() as conn:
            return await webhooks.create(
                conn, services.store, data, actor=principal.subject, vet=vet
            )

    @get(
        "/",
        opt=security.scope("jobs:read"),
        responses=problems.responses(401, 403),
        summary="The tenant's webhook endpoints (never their secrets)",
    )
    async def list_endpoints(self, services: NamedDependency[Services]) -> webhooks.EndpointList:
        async with services.connection() as conn:
            return await webhooks.list_all(conn)

    @get(
        "/{endpoint_id:uuid}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A webhook endpoint",
    )
    async def read(
        self, endpoint_id: FromPath, services: NamedDependency[Services]
    ) -> webhooks.Endpoint:
        async with services.connection() as conn:
            return await webhooks.get(conn, endpoint_id)

    @patch(
        "/{endpoint_id:uuid}",
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="Change a webhook endpoint; `disabled: false` enables it again",
    )
    async def change(
        self,
        endpoint_id: FromPath,
        data: JSONBody[webhooks.EndpointPatch],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        vet: NamedDependency[webhooks.Vet],
    ) -> webhooks.Endpoint:
        async with services.connection() as conn:
            return await webhooks.update(
                conn, services.store, endpoint_id, data, actor=principal.subject, vet=vet
            )

    @delete(
        "/{endpoint_id:uuid}",
        opt=security.scope("webhooks:write"),
        responses=problems.responses(400, 401, 403, 404, 409),
        summary="Delete a webhook endpoint: nothing more is sent to it",
    )
    async def remove(
        self,
        endpoint_id: FromPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> None:
        async with services.connection() as conn:
            await webhooks.delete(conn, services.store, endpoint_id, actor=principal.subject)

    @post(
        "/{endpoint_id:uuid}/rotate-secret",
        status_code=200,
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="A new secret, shown this once; the previous one signs too for a grace period",
    )
    async def rotate(
        self,
        endpoint_id: FromPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[RotateIn | None] = None,
    ) -> webhooks.EndpointCreated:
        grace = (data or RotateIn()).grace_seconds
        async with services.connection() as conn:
            return await webhooks.rotate_secret(
                conn, services.store, endpoint_id, actor=principal.subject, grace_seconds=grace
            )

    @post(
        "/{endpoint_id:uuid}/test",
        status_code=202,
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="Send the endpoint a `webhook.test` delivery",
    )
    async def test(
        self,
        endpoint_id: FromPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> webhooks.Delivery:
        async with services.connection() as conn:
            return await webhooks.test(conn, services.store, endpoint_id, actor=principal.subject)

    @get(
        "/{endpoint_id:uuid}/deliveries",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="The endpoint's deliveries, newest first, with their last attempt",
    )
    async def endpoint_deliveries(
        self,
        endpoint_id: FromPath,
        services: NamedDependency[Services],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> webhooks.DeliveryList:
        async with services.connection() as conn:
            return await webhooks.deliveries(conn, endpoint_id, limit=limit)

    @get(
        "/deliveries/{delivery_id:uuid}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A delivery",
    )
    async def read_delivery(
        self, delivery_id: FromPath, services: NamedDependency[Services]
    ) -> webhooks.Delivery:
        async with services.connection() as conn:
            return await webhooks.delivery(conn, delivery_id)

    @get(
        "/deliveries/{delivery_id:uuid}/attempts",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A delivery and each attempt to send it, oldest first",
        description="Each attempt as its `webhook.delivery_attempted.v1` event recorded it: "
        "outcome, status code (or error), duration and when the next attempt is due.",
    )
    async def delivery_attempts(
        self, delivery_id: FromPath, services: NamedDependency[Services]
    ) -> webhooks.AttemptList:
        async with services.connection() as conn:
            return await webhooks.attempts(conn, delivery_id)

    @get(
        "/jobs/{job_id:uuid}/deliveries",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403),
        summary="The deliveries that report a job's events, oldest first",
    )
    async def job_deliveries(
        self, job_id: FromPath, services: NamedDependency[Services]
    ) -> webhooks.DeliveryList:
        async with services.connection() as conn:
            return webhooks.DeliveryList(deliveries=await webhooks.deliveries_of_job(conn, job_id))

    @post(
        "/deliveries/{delivery_id:uuid}/redeliver",
        status_code=202,
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="Send a delivery again: same webhook-id and body, new timestamp and signature",
    )
    async def redeliver(
        self,
        delivery_id: FromPath,
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[RedeliverIn | None] = None,
    ) -> webhooks.Delivery:
        reason = data.reason if data is not None else None
        async with services.connection() as conn:
            return await webhooks.redeliver(
                conn, services.store, delivery_id, actor=principal.subject, reason=reason
            )

    @post(
        "/{endpoint_id:uuid}/recover",
        status_code=202,
        opt=security.scope("webhooks:write"),
        responses=WRITES,
        summary="Send again the endpoint's deliveries created in [since, until)",
    )
    async def recover(
        self,
        endpoint_id: FromPath,
        data: JSONBody[webhooks.RecoverIn],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> webhooks.Recovered:
        async with services.connection() as conn:
            return await webhooks.recover(
                conn, services.store, endpoint_id, data, actor=principal.subject
            )
