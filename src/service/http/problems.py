"""Every error as RFC 9457 problem details (`application/problem+json`).

One handler on the root `errors.LedgerError` covers the whole hierarchy; the
status comes from `STATUS`, looked up along the exception's class hierarchy.
Litestar's own HTTP exceptions (validation, 404, 405, 413) get the same shape.
A database that cannot be reached (`db.unavailable`) is a 503 with Retry-After; a
submission past its tenant's `max_queued` a 429 with Retry-After (and counted).
Anything else is a bare 500 with no internals in the body.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from audit import checkpoints, tree
from ledger import bulk, db, errors, metrics, queues, schedules, webhooks, wire

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "application/problem+json"
REALM: Final = "job-ledger"
RETRY_AFTER_SECONDS: Final = 5  # a restarting PostgreSQL is usually back within seconds
# A tenant over its queued-jobs quota waits for its workers to take some: a hint only.
QUOTA_RETRY_AFTER_SECONDS: Final = 5


FieldError = errors.FieldError
Problem = wire.Problem


class Rule(msgspec.Struct, frozen=True):
    status: int
    slug: str


class InvalidParameter(errors.InvalidInput):
    """A query or path parameter is well-formed but unusable (400), e.g. an instant the
    database cannot be given."""


STATUS: Final[dict[type[errors.LedgerError], Rule]] = {
    InvalidParameter: Rule(400, "invalid-parameter"),
    bulk.BadFilter: Rule(400, "invalid-bulk-filter"),
    errors.Unauthorized: Rule(401, "unauthorized"),
    errors.TenantRequired: Rule(401, "tenant-required"),
    errors.InvalidTenant: Rule(400, "invalid-tenant"),
    errors.TenantParameterOnWrite: Rule(400, "tenant-parameter-on-write"),
    errors.Forbidden: Rule(403, "forbidden"),
    errors.UnknownJob: Rule(404, "unknown-job"),
    errors.UnknownWorkflow: Rule(404, "unknown-workflow"),
    errors.WorkflowConflict: Rule(409, "workflow-conflict"),
    queues.UnknownQueue: Rule(404, "unknown-queue"),
    schedules.UnknownSchedule: Rule(404, "unknown-schedule"),
    schedules.ScheduleExists: Rule(409, "schedule-exists"),
    webhooks.UnknownWebhook: Rule(404, "unknown-webhook"),
    errors.VersionConflict: Rule(409, "version-conflict"),
    errors.InvalidTransition: Rule(409, "invalid-transition"),
    errors.IdempotencyMismatch: Rule(409, "idempotency-key-reused"),
    errors.IdempotencyKeyTaken: Rule(409, "idempotency-key-reused"),
    errors.DuplicateJob: Rule(409, "duplicate-job"),
    errors.UniqueKeyTaken: Rule(409, "unique-key-taken"),
    errors.TenantQuotaExceeded: Rule(429, "tenant-quota-exceeded"),
    errors.InvalidInput: Rule(422, "invalid-request"),  # unknown job types and payloads too
    errors.BadCursor: Rule(400, "bad-cursor"),
    checkpoints.CheckpointError: Rule(409, "checkpoint-base-altered"),
    tree.UnknownLeaf: Rule(404, "unknown-event"),
    tree.BadTreeSize: Rule(400, "bad-tree-size"),
    tree.TreeError: Rule(409, "audit-tree-altered"),
}


def _rule(exc: errors.LedgerError) -> Rule | None:
    for cls in type(exc).__mro__:
        rule = STATUS.get(cls)
        if rule is not None:
            return rule
    return None


def problem_response(
    status: int,
    *,
    slug: str | None = None,
    detail: str | None = None,
    field_errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    existing_job_id: uuid.UUID | None = None,
) -> Response[Problem]:
    phrase = HTTPStatus(status).phrase
    return Response(
        Problem(
            type=f"urn:job-ledger:problem:{slug}" if slug else "about:blank",
            title=phrase,
            status=status,
            detail=detail,
            errors=field_errors,
            existing_job_id=existing_job_id,
        ),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def on_ledger_error(request: Request[Any, Any, Any], exc: errors.LedgerError) -> Response[Problem]:
    rule = _rule(exc)
    if rule is None:
        return on_unexpected(request, exc)
    headers: dict[str, str] | None = None
    field_errors: list[FieldError] | None = None
    existing_job_id = exc.job_id if isinstance(exc, errors.DuplicateJob) else None
    if isinstance(exc, errors.Unauthorized):
        challenge = f"Bearer realm={_quoted(REALM)}"
        if exc.error is not None:
            challenge += f", error={_quoted(exc.error)}, error_description={_quoted(str(exc))}"
        headers = {"WWW-Authenticate": challenge}
    elif isinstance(exc, errors.Forbidden):
        headers = {
            "WWW-Authenticate": f'Bearer realm={_quoted(REALM)}, error="insufficient_scope", '
            f"scope={_quoted(exc.scope)}"
        }
    elif isinstance(exc, errors.InvalidInput):
        field_errors = exc.field_errors
    elif isinstance(exc, errors.TenantQuotaExceeded):
        headers = {"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)}
        registry: metrics.Metrics = request.app.state.metrics
        registry.quota_refusals.inc()
    return problem_response(
        rule.status,
        slug=rule.slug,
        detail=str(exc),
        field_errors=field_errors,
        headers=headers,
        existing_job_id=existing_job_id,
    )


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    field_errors: list[FieldError] | None = None
    detail = exc.detail
    if isinstance(exc, ValidationException):
        field_errors, from_body = _validation_errors(exc.extra)
        # A well-formed body that breaks the schema is unprocessable (422); bad query,
        # path or header parameters, or a body that is not JSON at all, stay 400.
        status = 422 if from_body else 400
        detail = "the request does not match the API's schema"
    if status >= 500:
        return on_unexpected(request, exc)
    headers = {k: v for k, v in (exc.headers or {}).items()}
    return problem_response(status, detail=detail, field_errors=field_errors, headers=headers)


def _validation_errors(extra: Any) -> tuple[list[FieldError] | None, bool]:
    if not isinstance(extra, list) or not extra:
        return None, False
    found: list[FieldError] = []
    from_body = False
    for item in extra:
        if not isinstance(item, dict):
            continue
        source = item.get("source")
        message = str(item.get("message", "invalid"))
        key = str(item.get("key") or "")
        if source == "body":
            from_body = True
            key = _body_path(key, message)
        found.append(FieldError(path=key or "$", message=message))
    return found or None, from_body


_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def _body_path(key: str, message: str) -> str:
    """The body field an error is about: Litestar's key (`data`, `data.$.x`, `jobs[0]`), and
    the field a message names (`Object missing required field `type``)."""
    path = key.removeprefix("data").removeprefix(".").removeprefix("$").removeprefix(".")
    field = _FIELD.search(message)
    if field:
        path = f"{path}.{field.group(1)}" if path else field.group(1)
    return path or "$"


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500)


def on_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """503 with Retry-After while the database cannot be reached; anything else is a 500."""
    if not db.unavailable(exc):
        return on_unexpected(request, exc)
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
    )
    return problem_response(
        503,
        slug="database-unavailable",
        detail="the database cannot be reached now; try again later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


EXCEPTION_HANDLERS: Final[dict[type[Exception] | int, Any]] = {
    errors.LedgerError: on_ledger_error,
    HTTPException: on_http_exception,
    # Litestar picks the handler of the nearest class: every class that can mean an
    # outage comes here, and what is not one goes on to on_unexpected.
    OSError: on_database_error,
    **dict.fromkeys(db.UNAVAILABLE, on_database_error),
    Exception: on_unexpected,
}

_DESCRIPTIONS: Final = {
    400: "Bad request: a malformed parameter, cursor or body",
    401: "Missing or invalid bearer token (see WWW-Authenticate)",
    403: "The token lacks the scope this operation needs",
    404: "No such job (or queue, under /api/v1/queues)",
    409: "Conflict with the job's current state or with an earlier request",
    413: "The request body is larger than the configured limit",
    415: "The request has a body that is not declared JSON (`Content-Type: application/json`)",
    422: "The body is well-formed but invalid; `errors` names each field",
    429: "The submission would take the tenant's queued jobs past its `max_queued`: nothing "
    "was stored; retry after `Retry-After` seconds",
    500: "Internal error (no details are disclosed)",
    503: "The database cannot be reached now; retry after `Retry-After` seconds",
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the problem responses a route can answer."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=MEDIA_TYPE,
            description=_DESCRIPTIONS[status],
            generate_examples=False,
        )
        for status in statuses
    }
