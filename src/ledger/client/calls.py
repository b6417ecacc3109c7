"""The API's requests, built once for both clients, each with the decoder of its answer.

A `Call` is what to send and how to read the answer; `Client` and `AsyncClient`
only send it. A 2xx answer is decoded into the client's structs (`wire`), any other
raises the typed error of its problem details (`errors.error_of`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import httpx
import msgspec

from ledger.client import errors, wire

API: Final = "/api/v1"


def decoder[T](kind: type[T]) -> Callable[[httpx.Response], T]:
    """Decode a 2xx answer into `kind`; raise the typed error of any other."""
    decode = msgspec.json.Decoder(kind).decode

    def decoded(response: httpx.Response) -> T:
        if not response.is_success:
            raise errors.error_of(response)
        try:
            return decode(response.content)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise errors.UnexpectedResponse(str(exc), response.status_code) from exc

    return decoded


def no_body(response: httpx.Response) -> None:
    """Accept any 2xx answer as it is (a stream is read on); raise the typed error of any other."""
    if not response.is_success:
        raise errors.error_of(response)


_job = decoder(wire.Job)
_history = decoder(wire.History)
_page = decoder(wire.JobList)
_batch = decoder(wire.BatchResult)
_bulk = decoder(wire.BulkResult)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Call[T]:
    """One request to send and how to decode its answer."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _json_headers(idempotency_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def submit(submission: wire.Submission, idempotency_key: str | None) -> Call[wire.Job]:
    body = _encode(submission)
    return Call("POST", f"{API}/jobs", _job, body=body, headers=_json_headers(idempotency_key))


def submit_many(
    jobs: Iterable[wire.Submission], idempotency_key: str | None
) -> Call[wire.BatchResult]:
    body = _encode(wire.Batch(jobs=list(jobs)))
    headers = _json_headers(idempotency_key)
    return Call("POST", f"{API}/jobs/batch", _batch, body=body, headers=headers)


def get(job_id: uuid.UUID | str, as_of: datetime | None) -> Call[wire.Job]:
    params = {} if as_of is None else {"as_of": as_of.isoformat()}
    return Call("GET", f"{API}/jobs/{job_id}", _job, params=params)


def filters(status: str | None, job_type: str | None, queue: str | None) -> dict[str, str]:
    """The list filters as the API's query parameters (the job type is `type`)."""
    given = {"status": status, "type": job_type, "queue": queue}
    return {name: value for name, value in given.items() if value is not None}


def page(wanted: dict[str, str], limit: int, cursor: str | None) -> Call[wire.JobList]:
    """One page of the job list; pass the last page's `next_cursor` as `cursor`."""
    params = {**wanted, "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", f"{API}/jobs", _page, params=params)


def command(job_id: uuid.UUID | str, verb: str, body: Mapping[str, Any]) -> Call[wire.Job]:
    """`POST /jobs/{id}/{verb}` (cancel, retry) with the fields of `body` that are given."""
    given = {name: value for name, value in body.items() if value is not None}
    path = f"{API}/jobs/{job_id}/{verb}"
    return Call("POST", path, _job, body=_encode(given), headers=_json_headers(None))


def bulk_filter(
    status: str,
    job_type: str | None,
    queue: str | None,
    error_contains: str | None,
    failed_before: datetime | None,
    failed_after: datetime | None,
) -> wire.BulkFilter:
    """A bulk action's filter, checked as the API checks it (msgspec.ValidationError)."""
    given = {
        "status": status,
        "type": job_type,
        "queue": queue,
        "error_contains": error_contains,
        "failed_before": failed_before,
        "failed_after": failed_after,
    }
    fields = {name: value for name, value in given.items() if value is not None}
    return msgspec.convert(fields, wire.BulkFilter, from_attributes=False)


def bulk(
    verb: str,
    job_filter: wire.BulkFilter,
    limit: int,
    request_id: str | None,
    reason: str | None = None,
) -> Call[wire.BulkResult]:
    """`POST /jobs/{verb}` (retry, cancel) of the jobs matching `job_filter`."""
    given: dict[str, Any] = {"filter": job_filter, "limit": limit}
    if reason is not None:
        given["reason"] = reason
    headers = _json_headers(request_id)
    return Call("POST", f"{API}/jobs/{verb}", _bulk, body=_encode(given), headers=headers)


def history(job_id: uuid.UUID | str) -> Call[wire.History]:
    return Call("GET", f"{API}/jobs/{job_id}/events", _history)


_workflow = decoder(wire.Workflow)


def submit_workflow(
    jobs: Iterable[wire.WorkflowJob], workflow_id: uuid.UUID | None
) -> Call[wire.Workflow]:
    body = _encode(wire.WorkflowRequest(jobs=list(jobs), id=workflow_id))
    return Call("POST", f"{API}/workflows", _workflow, body=body, headers=_json_headers(None))


def get_workflow(workflow_id: uuid.UUID | str) -> Call[wire.Workflow]:
    return Call("GET", f"{API}/workflows/{workflow_id}", _workflow)


def workflow_command(
    workflow_id: uuid.UUID | str, verb: str, body: Mapping[str, Any]
) -> Call[wire.Workflow]:
    """`POST /workflows/{id}/{verb}` (cancel, retry) with the fields of `body` given."""
    given = {name: value for name, value in body.items() if value is not None}
    path = f"{API}/workflows/{workflow_id}/{verb}"
    return Call("POST", path, _workflow, body=_encode(given), headers=_json_headers(None))


_schedule = decoder(wire.Schedule)
_schedules = decoder(wire.ScheduleList)
_slots = decoder(wire.SlotList)
_triggered = decoder(wire.Triggered)
_backfilled = decoder(wire.Backfilled)
SCHEDULES: Final = f"{API}/schedules"


def create_schedule(schedule: wire.ScheduleIn) -> Call[wire.Schedule]:
    body = _encode(schedule)
    return Call("POST", SCHEDULES, _schedule, body=body, headers=_json_headers(None))


def get_schedule(schedule_id: str) -> Call[wire.Schedule]:
    return Call("GET", f"{SCHEDULES}/{schedule_id}", _schedule)


def list_schedules() -> Call[wire.ScheduleList]:
    return Call("GET", SCHEDULES, _schedules)


def update_schedule(schedule_id: str, spec: wire.ScheduleSpec) -> Call[wire.Schedule]:
    path = f"{SCHEDULES}/{schedule_id}"
    return Call("PUT", path, _schedule, body=_encode(spec), headers=_json_headers(None))


def delete_schedule(schedule_id: str) -> Call[wire.Schedule]:
    return Call("DELETE", f"{SCHEDULES}/{schedule_id}", _schedule)


def schedule_note(schedule_id: str, verb: str, note: str | None) -> Call[wire.Schedule]:
    """`POST /schedules/{id}/{verb}` (pause, resume) with its note."""
    body = _encode(wire.NoteRequest(note=note))
    path = f"{SCHEDULES}/{schedule_id}/{verb}"
    return Call("POST", path, _schedule, body=body, headers=_json_headers(None))


def trigger_schedule(schedule_id: str) -> Call[wire.Triggered]:
    return Call("POST", f"{SCHEDULES}/{schedule_id}/trigger", _triggered)


def backfill_schedule(
    schedule_id: str, start: datetime, end: datetime, overlap: wire.Overlap | None
) -> Call[wire.Backfilled]:
    body = _encode(wire.BackfillRequest(start=start, end=end, overlap=overlap))
    path = f"{SCHEDULES}/{schedule_id}/backfill"
    return Call("POST", path, _backfilled, body=body, headers=_json_headers(None))


def schedule_slots(schedule_id: str, start: datetime, end: datetime) -> Call[wire.SlotList]:
    params = {"from": start.isoformat(), "to": end.isoformat()}
    return Call("GET", f"{SCHEDULES}/{schedule_id}/slots", _slots, params=params)


def http_options(
    base_url: str, token: str | None, timeout: float, transport: Any
) -> dict[str, Any]:
    """What both clients give their httpx client: the base URL, the token, the timeout."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    options: dict[str, Any] = {"base_url": base_url, "headers": headers, "timeout": timeout}
    if transport is not None:
        options["transport"] = transport
    return options
