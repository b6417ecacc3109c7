"""The client's errors: one root, `ClientError`, and one class per problem the API answers.

`error_of` maps an answer of 400 or more to its class by the problem's `type`
(`urn:job-ledger:problem:unknown-job`, ...), else by its status.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import httpx
import msgspec

from ledger.client import wire

PROBLEM_PREFIX: Final = "urn:job-ledger:problem:"


class ClientError(Exception):
    """Root of every error this client raises on purpose."""


class UnexpectedResponse(ClientError):
    """The server answered something that is not the API's (a proxy's page, a bad body)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiError(ClientError):
    """The API refused the request with problem details (`problem`)."""

    def __init__(self, problem: wire.Problem, headers: Mapping[str, str]) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail or problem.type}")
        self.problem = problem
        self.status = problem.status
        self.headers = httpx.Headers(headers)


class InvalidRequest(ApiError):
    """400 or 422: bad input; `field_errors` names each field the API refused."""

    @property
    def field_errors(self) -> list[wire.FieldError]:
        return self.problem.errors or []


class Unauthorized(ApiError):
    """401: the token is missing, invalid or expired."""


class Forbidden(ApiError):
    """403: the token lacks the scope this operation needs."""


class NotFound(ApiError):
    """404: no such resource."""


class UnknownJob(NotFound):
    """404: no job has this id."""


class Conflict(ApiError):
    """409: the request conflicts with the job's state or with an earlier request."""


class InvalidTransition(Conflict):
    """409: the command does not apply to the job in its status (cancel a finished job)."""


class IdempotencyConflict(Conflict):
    """409: this Idempotency-Key was already used for a different request."""


class VersionConflict(Conflict):
    """409: another writer changed the job at the same time; trying again may succeed."""


class DuplicateJob(Conflict):
    """409: a unique submission's key is held by `problem.existing_job_id` and its
    `on_conflict` (`error`, or `replace` of a job no longer waiting) refused it."""


class TooLarge(ApiError):
    """413: the request body is larger than the server accepts."""


class Unavailable(ApiError):
    """503: the service cannot answer now; try again after `retry_after` seconds (if given)."""

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.headers.get("retry-after"))


class WaitTimeout(ClientError, TimeoutError):
    """`wait` gave up: the job did not finish in time; `job` is how it was last seen."""

    def __init__(self, job: wire.Job, timeout: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} after {timeout:g} s")
        self.job = job


_BY_TYPE: Final[dict[str, type[ApiError]]] = {
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "unknown-job": UnknownJob,
    "invalid-transition": InvalidTransition,
    "idempotency-key-reused": IdempotencyConflict,
    "version-conflict": VersionConflict,
    "duplicate-job": DuplicateJob,
    "unique-key-taken": Conflict,
    "unknown-job-type": InvalidRequest,
    "invalid-payload": InvalidRequest,
    "invalid-request": InvalidRequest,
    "bad-cursor": InvalidRequest,
    "database-unavailable": Unavailable,
}
_BY_STATUS: Final[dict[int, type[ApiError]]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    503: Unavailable,
}


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its forms (seconds, or an HTTP date)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


_problem = msgspec.json.Decoder(wire.Problem)


def error_of(response: httpx.Response) -> ApiError:
    """The typed error an answer of 400 or more stands for (mapped from the problem's type)."""
    try:
        problem: wire.Problem | None = _problem.decode(response.content)
    except msgspec.DecodeError:  # not problem details (a proxy's page): the status tells
        problem = None
    if problem is None or problem.status != response.status_code:
        problem = wire.Problem(
            type="about:blank", title=response.reason_phrase, status=response.status_code
        )
    slug = problem.type.removeprefix(PROBLEM_PREFIX)
    kind = _BY_TYPE.get(slug) if problem.type.startswith(PROBLEM_PREFIX) else None
    kind = kind or _BY_STATUS.get(problem.status, ApiError)
    return kind(problem, response.headers)
