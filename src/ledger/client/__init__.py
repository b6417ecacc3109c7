"""A Python client for the ledger's HTTP API: `Client` (sync) and `AsyncClient`.

    from ledger import client

    with client.Client("http://localhost:8080", token=TOKEN) as ledger:
        job = ledger.submit("image_resize", {"image_url": ..., "width": 320, "height": 240})
        done = ledger.wait(job.job_id, timeout=60)

Answers decode into frozen structs with the API's field names (`Job`, `History`);
a problem-details answer raises a typed `ApiError` (`UnknownJob`, `InvalidTransition`,
`InvalidRequest` with `field_errors`, ...), all under `ClientError`. `wait` follows
the events stream rather than polling.

Nothing here imports server code (litestar, asyncpg, the routes): a process that
only submits jobs installs the package and never loads the server.
"""

from ledger.client.clients import AsyncClient, Client
from ledger.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    DuplicateJob,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnknownJob,
    VersionConflict,
    WaitTimeout,
)
from ledger.client.wire import (
    FieldError,
    History,
    Job,
    Problem,
    RecordedEvent,
    RetryPolicy,
    Schedule,
    ScheduleOptions,
    ScheduleSpec,
    Slot,
    Submission,
    SubmitOptions,
    Unique,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "DuplicateJob",
    "FieldError",
    "Forbidden",
    "History",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "Job",
    "NotFound",
    "Problem",
    "RecordedEvent",
    "RetryPolicy",
    "Schedule",
    "ScheduleOptions",
    "ScheduleSpec",
    "Slot",
    "Submission",
    "SubmitOptions",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "Unique",
    "UnknownJob",
    "VersionConflict",
    "WaitTimeout",
]
