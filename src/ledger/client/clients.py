"""`Client` and `AsyncClient`: thin shells that send the API's calls (`calls`) over httpx.

The two differ only in their I/O; what they send, how answers decode and how a
wait follows the stream are written once (`calls`, `waiting`).
"""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final, Self, Unpack

import httpx

from ledger import lifecycle
from ledger.client import calls, errors, waiting, wire

PAGE_SIZE: Final = 50
TIMEOUT_SECONDS: Final = 10.0
# A stream that fails this way is reopened from the last event id; anything else ends the wait.
_REOPEN: Final = (httpx.TransportError, errors.Unavailable)


class Client:
    """The ledger's HTTP API, synchronously (`with Client(url, token=...) as ledger:`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(**calls.http_options(base_url, token, timeout, transport))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send[T](self, call: calls.Call[T]) -> T:
        response = self.http.request(
            call.method, call.path, params=call.params, content=call.body, headers=call.headers
        )
        return call.decode(response)

    def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **options: Unpack[wire.SubmitOptions],
    ) -> wire.Job:
        """Submit a job; with an `idempotency_key`, a repeat answers the first job."""
        submission = wire.Submission(job_type=job_type, payload=dict(payload), **options)
        return self._send(calls.submit(submission, idempotency_key))

    def submit_many(
        self, jobs: Iterable[wire.Submission], *, idempotency_key: str | None = None
    ) -> builtins.list[wire.Job]:
        """Submit up to 1,000 jobs in one transaction: all or none."""
        return self._send(calls.submit_many(jobs, idempotency_key)).jobs

    def submit_workflow(
        self, jobs: Iterable[wire.WorkflowJob], *, workflow_id: uuid.UUID | None = None
    ) -> wire.Workflow:
        """Submit a workflow (up to 1,000 jobs that depend on each other by name): all or none."""
        return self._send(calls.submit_workflow(jobs, workflow_id))

    def workflow(self, workflow_id: uuid.UUID | str) -> wire.Workflow:
        """The workflow and each of its jobs as they are now."""
        return self._send(calls.get_workflow(workflow_id))

    def cancel_workflow(
        self, workflow_id: uuid.UUID | str, *, reason: str | None = None
    ) -> wire.Workflow:
        """Cancel every job of the workflow that has not ended."""
        return self._send(calls.workflow_command(workflow_id, "cancel", {"reason": reason}))

    def retry_workflow(
        self, workflow_id: uuid.UUID | str, *, start: str = "failed"
    ) -> wire.Workflow:
        """Re-run the failed jobs (or the one named `start`) and everything downstream."""
        return self._send(calls.workflow_command(workflow_id, "retry", {"from": start}))

    def create_schedule(
        self,
        schedule_id: str,
        job: wire.Submission,
        *,
        cron: str | None = None,
        interval_seconds: float | None = None,
        **options: Unpack[wire.ScheduleOptions],
    ) -> wire.Schedule:
        """Create a schedule firing `job` at each slot of `cron` (5 fields, or 6 with seconds
        first) or every `interval_seconds` (needs `schedules:write`)."""
        body = wire.ScheduleIn(
            id=schedule_id, job=job, cron=cron, interval_seconds=interval_seconds, **options
        )
        return self._send(calls.create_schedule(body))

    def schedule(self, schedule_id: str) -> wire.Schedule:
        """The schedule now: its spec, next and last slot."""
        return self._send(calls.get_schedule(schedule_id))

    def schedules(self) -> builtins.list[wire.Schedule]:
        """Every live schedule of the token's tenant, by id."""
        return self._send(calls.list_schedules()).schedules

    def update_schedule(self, schedule_id: str, spec: wire.ScheduleSpec) -> wire.Schedule:
        """Replace the schedule's spec; its slots from the next one follow it."""
        return self._send(calls.update_schedule(schedule_id, spec))

    def delete_schedule(self, schedule_id: str) -> wire.Schedule:
        """Record no more of its slots."""
        return self._send(calls.delete_schedule(schedule_id))

    def pause_schedule(self, schedule_id: str, *, note: str | None = None) -> wire.Schedule:
        """Its slots are recorded skipped (`paused`) until resumed."""
        return self._send(calls.schedule_note(schedule_id, "pause", note))

    def resume_schedule(self, schedule_id: str, *, note: str | None = None) -> wire.Schedule:
        return self._send(calls.schedule_note(schedule_id, "resume", note))

    def trigger_schedule(self, schedule_id: str) -> wire.Triggered:
        """Fire its job now, outside its slots."""
        return self._send(calls.trigger_schedule(schedule_id))

    def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: wire.Overlap | None = None,
    ) -> wire.Backfilled:
        """Fire its slots in (start, end] again (overlap: default the schedule's)."""
        return self._send(calls.backfill_schedule(schedule_id, start, end, overlap))

    def schedule_slots(
        self, schedule_id: str, start: datetime, end: datetime
    ) -> builtins.list[wire.Slot]:
        """Each slot in [start, end] and what happened: fired, skipped, buffered, pending."""
        return self._send(calls.schedule_slots(schedule_id, start, end)).slots

    def get(self, job_id: uuid.UUID | str, *, as_of: datetime | None = None) -> wire.Job:
        """The job now, or as it was at `as_of`."""
        return self._send(calls.get(job_id, as_of))

    def list(
        self,
        *,
        status: lifecycle.Status | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[wire.Job]:
        """Every job matching the filters, newest first, a page fetched as the last runs out."""
        wanted = calls.filters(status, job_type, queue)
        cursor: str | None = None
        while True:
            page = self._send(calls.page(wanted, page_size, cursor))
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: uuid.UUID | str, *, reason: str | None = None) -> wire.Job:
        """Cancel a pending, retrying or processing job."""
        return self._send(calls.command(job_id, "cancel", {"reason": reason}))

    def retry(self, job_id: uuid.UUID | str, *, max_attempts: int | None = None) -> wire.Job:
        """Run a failed or cancelled job again (attempts start over)."""
        return self._send(calls.command(job_id, "retry", {"max_attempts": max_attempts}))

    def retry_matching(
        self,
        *,
        status: str = "failed",
        job_type: str | None = None,
        queue: str | None = None,
        error_contains: str | None = None,
        failed_before: datetime | None = None,
        failed_after: datetime | None = None,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
    ) -> wire.BulkResult:
        """Run again up to `limit` failed (or cancelled) jobs matching every filter given;
        `request_id` makes a repeat change nothing more (POST /api/v1/jobs/retry)."""
        wanted = calls.bulk_filter(
            status, job_type, queue, error_contains, failed_before, failed_after
        )
        return self._send(calls.bulk("retry", wanted, limit, request_id))

    def cancel_matching(
        self,
        *,
        status: str = "pending",
        job_type: str | None = None,
        queue: str | None = None,
        error_contains: str | None = None,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> wire.BulkResult:
        """Cancel up to `limit` pending (retrying, processing) jobs matching every filter
        given (POST /api/v1/jobs/cancel)."""
        wanted = calls.bulk_filter(status, job_type, queue, error_contains, None, None)
        return self._send(calls.bulk("cancel", wanted, limit, request_id, reason))

    def history(self, job_id: uuid.UUID | str) -> wire.History:
        """The job's events, oldest first (needs the `audit:read` scope)."""
        return self._send(calls.history(job_id))

    def wait(self, job_id: uuid.UUID | str, timeout: float) -> wire.Job:
        """The job once it is completed, failed or cancelled, following the events stream
        (needs `jobs:read` and `audit:read`); `WaitTimeout` after `timeout` seconds."""
        wait = waiting.Wait(job_id, timeout)
        wait.start(self.history(job_id))
        job = self.get(job_id)
        while not job.finished:
            if expired := wait.expired(job):
                raise expired
            call = wait.stream()
            try:
                with self.http.stream(
                    call.method,
                    call.path,
                    params=call.params,
                    headers=call.headers,
                    timeout=wait.read_timeout(),
                ) as response:
                    if not response.is_success:
                        response.read()
                        call.decode(response)
                    for line in response.iter_lines():
                        seen = wait.line(line)
                        if seen:
                            job = self.get(job_id)
                        if job.finished or seen is False or wait.remaining() <= 0:
                            break
            except _REOPEN as failure:
                time.sleep(wait.pause(failure))
        return job


class AsyncClient:
    """The ledger's HTTP API in asyncio (`async with AsyncClient(url, token=...) as ledger:`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(**calls.http_options(base_url, token, timeout, transport))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send[T](self, call: calls.Call[T]) -> T:
        response = await self.http.request(
            call.method, call.path, params=call.params, content=call.body, headers=call.headers
        )
        return call.decode(response)

    async def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **options: Unpack[wire.SubmitOptions],
    ) -> wire.Job:
        """Submit a job; with an `idempotency_key`, a repeat answers the first job."""
        submission = wire.Submission(job_type=job_type, payload=dict(payload), **options)
        return await self._send(calls.submit(submission, idempotency_key))

    async def submit_many(
        self, jobs: Iterable[wire.Submission], *, idempotency_key: str | None = None
    ) -> builtins.list[wire.Job]:
        """Submit up to 1,000 jobs in one transaction: all or none."""
        return (await self._send(calls.submit_many(jobs, idempotency_key))).jobs

    async def submit_workflow(
        self, jobs: Iterable[wire.WorkflowJob], *, workflow_id: uuid.UUID | None = None
    ) -> wire.Workflow:
        """Submit a workflow (up to 1,000 jobs that depend on each other by name): all or none."""
        return await self._send(calls.submit_workflow(jobs, workflow_id))

    async def workflow(self, workflow_id: uuid.UUID | str) -> wire.Workflow:
        """The workflow and each of its jobs as they are now."""
        return await self._send(calls.get_workflow(workflow_id))

    async def cancel_workflow(
        self, workflow_id: uuid.UUID | str, *, reason: str | None = None
    ) -> wire.Workflow:
        """Cancel every job of the workflow that has not ended."""
        return await self._send(calls.workflow_command(workflow_id, "cancel", {"reason": reason}))

    async def retry_workflow(
        self, workflow_id: uuid.UUID | str, *, start: str = "failed"
    ) -> wire.Workflow:
        """Re-run the failed jobs (or the one named `start`) and everything downstream."""
        return await self._send(calls.workflow_command(workflow_id, "retry", {"from": start}))

    async def create_schedule(
        self,
        schedule_id: str,
        job: wire.Submission,
        *,
        cron: str | None = None,
        interval_seconds: float | None = None,
        **options: Unpack[wire.ScheduleOptions],
    ) -> wire.Schedule:
        """Create a schedule firing `job` at each slot of `cron` (5 fields, or 6 with seconds
        first) or every `interval_seconds` (needs `schedules:write`)."""
        body = wire.ScheduleIn(
            id=schedule_id, job=job, cron=cron, interval_seconds=interval_seconds, **options
        )
        return await self._send(calls.create_schedule(body))

    async def schedule(self, schedule_id: str) -> wire.Schedule:
        """The schedule now: its spec, next and last slot."""
        return await self._send(calls.get_schedule(schedule_id))

    async def schedules(self) -> builtins.list[wire.Schedule]:
        """Every live schedule of the token's tenant, by id."""
        return (await self._send(calls.list_schedules())).schedules

    async def update_schedule(self, schedule_id: str, spec: wire.ScheduleSpec) -> wire.Schedule:
        """Replace the schedule's spec; its slots from the next one follow it."""
        return await self._send(calls.update_schedule(schedule_id, spec))

    async def delete_schedule(self, schedule_id: str) -> wire.Schedule:
        """Record no more of its slots."""
        return await self._send(calls.delete_schedule(schedule_id))

    async def pause_schedule(self, schedule_id: str, *, note: str | None = None) -> wire.Schedule:
        """Its slots are recorded skipped (`paused`) until resumed."""
        return await self._send(calls.schedule_note(schedule_id, "pause", note))

    async def resume_schedule(self, schedule_id: str, *, note: str | None = None) -> wire.Schedule:
        return await self._send(calls.schedule_note(schedule_id, "resume", note))

    async def trigger_schedule(self, schedule_id: str) -> wire.Triggered:
        """Fire its job now, outside its slots."""
        return await self._send(calls.trigger_schedule(schedule_id))

    async def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: wire.Overlap | None = None,
    ) -> wire.Backfilled:
        """Fire its slots in (start, end] again (overlap: default the schedule's)."""
        return await self._send(calls.backfill_schedule(schedule_id, start, end, overlap))

    async def schedule_slots(
        self, schedule_id: str, start: datetime, end: datetime
    ) -> builtins.list[wire.Slot]:
        """Each slot in [start, end] and what happened: fired, skipped, buffered, pending."""
        return (await self._send(calls.schedule_slots(schedule_id, start, end))).slots

    async def get(self, job_id: uuid.UUID | str, *, as_of: datetime | None = None) -> wire.Job:
        """The job now, or as it was at `as_of`."""
        return await self._send(calls.get(job_id, as_of))

    async def list(
        self,
        *,
        status: lifecycle.Status | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[wire.Job]:
        """Every job matching the filters, newest first, a page fetched as the last runs out."""
        wanted = calls.filters(status, job_type, queue)
        cursor: str | None = None
        while True:
            page = await self._send(calls.page(wanted, page_size, cursor))
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: uuid.UUID | str, *, reason: str | None = None) -> wire.Job:
        """Cancel a pending, retrying or processing job."""
        return await self._send(calls.command(job_id, "cancel", {"reason": reason}))

    async def retry(self, job_id: uuid.UUID | str, *, max_attempts: int | None = None) -> wire.Job:
        """Run a failed or cancelled job again (attempts start over)."""
        return await self._send(calls.command(job_id, "retry", {"max_attempts": max_attempts}))

    async def retry_matching(
        self,
        *,
        status: str = "failed",
        job_type: str | None = None,
        queue: str | None = None,
        error_contains: str | None = None,
        failed_before: datetime | None = None,
        failed_after: datetime | None = None,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
    ) -> wire.BulkResult:
        """Run again up to `limit` failed (or cancelled) jobs matching every filter given;
        `request_id` makes a repeat change nothing more (POST /api/v1/jobs/retry)."""
        wanted = calls.bulk_filter(
            status, job_type, queue, error_contains, failed_before, failed_after
        )
        return await self._send(calls.bulk("retry", wanted, limit, request_id))

    async def cancel_matching(
        self,
        *,
        status: str = "pending",
        job_type: str | None = None,
        queue: str | None = None,
        error_contains: str | None = None,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> wire.BulkResult:
        """Cancel up to `limit` pending (retrying, processing) jobs matching every filter
        given (POST /api/v1/jobs/cancel)."""
        wanted = calls.bulk_filter(status, job_type, queue, error_contains, None, None)
        return await self._send(calls.bulk("cancel", wanted, limit, request_id, reason))

    async def history(self, job_id: uuid.UUID | str) -> wire.History:
        """The job's events, oldest first (needs the `audit:read` scope)."""
        return await self._send(calls.history(job_id))

    # `timeout` as in Client.wait: asyncio.timeout() could not raise WaitTimeout with the job.
    async def wait(self, job_id: uuid.UUID | str, timeout: float) -> wire.Job:  # noqa: ASYNC109
        """The job once it is completed, failed or cancelled, following the events stream
        (needs `jobs:read` and `audit:read`); `WaitTimeout` after `timeout` seconds."""
        wait = waiting.Wait(job_id, timeout)
        wait.start(await self.history(job_id))
        job = await self.get(job_id)
        while not job.finished:
            if expired := wait.expired(job):
                raise expired
            call = wait.stream()
            try:
                async with self.http.stream(
                    call.method,
                    call.path,
                    params=call.params,
                    headers=call.headers,
                    timeout=wait.read_timeout(),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        call.decode(response)
                    async for line in response.aiter_lines():
                        seen = wait.line(line)
                        if seen:
                            job = await self.get(job_id)
                        if job.finished or seen is False or wait.remaining() <= 0:
                            break
            except _REOPEN as failure:
                await asyncio.sleep(wait.pause(failure))
        return job
