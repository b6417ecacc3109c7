"""The workflows API under /api/v1/workflows: submit a DAG of jobs, read, list, cancel, retry.

The routes decode the request and call the public submission API (`ledger.submission`,
`submit_workflow`, `cancel_workflow`, `retry_workflow`); what a workflow is and how the
database runs it is in `ledger.workflows`. Each acts in the token's tenant.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from ledger import wire, workflows
from ledger.auth import Principal
from service.http import problems, security
from service.http.services import Services, services_of

PREFIX: Final = "/api/v1/workflows"


class CancelWorkflow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=wire.NO_NUL)] | None = None


CLOSED_REQUESTS: Final = (
    wire.WorkflowRequest,
    wire.WorkflowJobIn,
    wire.WorkflowRetry,
    CancelWorkflow,
)


class WorkflowsController(Controller):
    path = PREFIX
    tags = ["workflows"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
    }

    @post(
        "/",
        status_code=201,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422, 429),
        summary="Submit a workflow: jobs that depend on jobs",
        description=f"All jobs in one transaction, or none: a duplicate name, a dependency "
        f"not in the workflow, a cycle (named) or an invalid payload answers 422 naming "
        f"`jobs[i].…`; at most {workflows.MAX_JOBS} jobs. A job with `depends_on` starts "
        "`blocked` and becomes `pending` in the transaction that records its last "
        "dependency's end; `on_upstream_failure` (`cancel`, `run`, `skip`) decides what a "
        "failed or cancelled dependency does to it. An `id` already used answers 409.",
    )
    async def submit(
        self,
        data: JSONBody[wire.WorkflowRequest],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> Response[wire.WorkflowOut]:
        async with services.connection() as conn:
            out = await services.submitter.submit_workflow(
                conn, data.jobs, workflow_id=data.id, actor=principal.subject, built=False
            )
        return Response(out, status_code=201, headers={"Location": f"{PREFIX}/{out.id}"})

    @get(
        "/{workflow_id:uuid}",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403, 404),
        summary="A workflow and each of its jobs as they are now",
    )
    async def read(
        self, workflow_id: FromPath[uuid.UUID], services: NamedDependency[Services]
    ) -> wire.WorkflowOut:
        async with services.connection() as conn:
            return await services.submitter.workflow(conn, workflow_id)

    @get(
        "/",
        opt=security.scope("jobs:read"),
        responses=problems.responses(400, 401, 403),
        summary="List workflows, newest first",
    )
    async def list_workflows(
        self,
        services: NamedDependency[Services],
        status: FromQuery[wire.WorkflowStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> wire.WorkflowList:
        async with services.reading() as conn:
            found = await workflows.page(conn, status=status, limit=limit)
        return wire.WorkflowList(workflows=found)

    @post(
        "/{workflow_id:uuid}/cancel",
        status_code=200,
        opt=security.scope("jobs:cancel"),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Cancel every job of the workflow that has not ended",
    )
    async def cancel(
        self,
        workflow_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[CancelWorkflow | None] = None,
    ) -> wire.WorkflowOut:
        async with services.connection() as conn:
            return await services.submitter.cancel_workflow(
                conn, workflow_id, reason=(data or CancelWorkflow()).reason, actor=principal.subject
            )

    @post(
        "/{workflow_id:uuid}/retry",
        status_code=200,
        opt=security.scope("jobs:write"),
        responses=problems.responses(400, 401, 403, 404, 409, 413, 415, 422),
        summary="Re-run the failed jobs (or the named one) and everything downstream",
        description='`{"from": "failed"}` (the default) or `{"from": "<job name>"}`: those '
        "jobs run again, the jobs downstream of them that ended wait again for them; "
        "completed upstream work and every job's history are kept. 409 when nothing is "
        "left to re-run.",
    )
    async def retry(
        self,
        workflow_id: FromPath[uuid.UUID],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
        data: JSONBody[wire.WorkflowRetry | None] = None,
    ) -> wire.WorkflowOut:
        start = (data or wire.WorkflowRetry()).from_
        async with services.connection() as conn:
            return await services.submitter.retry_workflow(
                conn, workflow_id, start=start, actor=principal.subject
            )
