"""Bulk retry and cancel: the jobs of one tenant that match a filter, changed by the
ordinary command path, a chunk per transaction (the dead-letter set's actions).

`act(conn, event_store, action, job_filter, limit=, request_id=, actor=)` selects up to
`limit` (at most `wire.MAX_BULK`) jobs of the tenant, oldest first, by an indexed query
on the jobs view; then, `CHUNK` jobs to a transaction, folds each job's history, checks
it still matches, decides `RetryJob` / `CancelJob` and appends through the event store.
Jobs that moved meanwhile (a worker, another request) no longer match, or conflict on
their version, and are skipped: `matched` counts the selection, `changed` what this call
changed.

Every changed job's event carries the request id (`bulk_request_id`), so the ledger
lists what a request did (`events_of_bulk_request`). A request id is carried out once
per tenant: a repeat (or a concurrent twin) finds its events and changes nothing more,
answering `repeated` with the jobs the id changed. A request that changed nothing left
no event, so its id may be used again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncpg

from ledger import acting, commands, errors, lifecycle, sqlfile, store, wire
from ledger import events as ev

Q = sqlfile.load("ledger")

CHUNK: Final = 100  # jobs decided and appended per transaction
MAX_LIMIT: Final = wire.MAX_BULK

# The statuses each action can take a job from (as `commands.decide` allows).
STATUSES: Final[dict[wire.BulkAction, tuple[lifecycle.Status, ...]]] = {
    "retry": ("failed", "cancelled"),
    "cancel": ("pending", "retrying", "processing"),
}
_EVENT: Final[dict[wire.BulkAction, str]] = {
    "retry": "job.retried.v1",
    "cancel": "job.cancelled.v1",
}
_ENDED: Final = ("failed", "cancelled")  # the statuses with an end time to bound


class BadFilter(errors.InvalidInput):
    """A bulk action's filter or limit cannot be carried out as asked (400), e.g. no
    status, a status the action cannot change, or a limit past MAX_LIMIT."""


def check(action: wire.BulkAction, job_filter: wire.BulkFilter, limit: int) -> lifecycle.Status:
    """The filter's status, once the filter and limit are usable for `action`; BadFilter
    naming the field otherwise."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadFilter.at("limit", f"limit must be 1 to {MAX_LIMIT}")
    allowed = STATUSES[action]
    status = job_filter.status
    if status is None:
        raise BadFilter.at(
            "filter.status",
            f"a bulk {action} needs filter.status (one of {', '.join(allowed)}): an empty "
            "filter never means every job",
        )
    if status not in allowed:
        raise BadFilter.at(
            "filter.status",
            f"a bulk {action} takes jobs that are {' or '.join(allowed)}, not {status}",
        )
    for field in ("failed_before", "failed_after"):
        if getattr(job_filter, field) is not None and status not in _ENDED:
            raise BadFilter.at(
                f"filter.{field}", f"{field} bounds when a job ended: status failed or cancelled"
            )
    before, after = job_filter.failed_before, job_filter.failed_after
    if before is not None and after is not None and after >= before:
        raise BadFilter.at("filter.failed_after", "failed_after must be before failed_before")
    return status


def matches(job_filter: wire.BulkFilter, state: lifecycle.JobState) -> bool:
    """Whether the job still matches (the selection's query, on a folded state)."""
    f = job_filter
    return (
        state.status == f.status
        and (f.type is None or state.type == f.type)
        and (f.queue is None or state.queue == f.queue)
        and (f.error_contains is None or f.error_contains in (state.error or ""))
        and (f.failed_before is None or _ended_before(state, f.failed_before))
        and (f.failed_after is None or _ended_after(state, f.failed_after))
    )


def _ended_before(state: lifecycle.JobState, moment: datetime) -> bool:
    return state.completed_at is not None and state.completed_at < moment


def _ended_after(state: lifecycle.JobState, moment: datetime) -> bool:
    return state.completed_at is not None and state.completed_at > moment


def command(
    action: wire.BulkAction, request_id: str, reason: str | None = None
) -> commands.Command:
    if action == "retry":
        return commands.RetryJob(bulk_request_id=request_id)
    return commands.CancelJob(reason=reason, bulk_request_id=request_id)


async def act(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    action: wire.BulkAction,
    job_filter: wire.BulkFilter,
    *,
    limit: int = wire.DEFAULT_BULK_LIMIT,
    request_id: str | None = None,
    reason: str | None = None,
    actor: str,
    tenant: str | None = None,
) -> wire.BulkResult:
    """Retry or cancel up to `limit` jobs matching `job_filter` (see the module).

    `conn` must be in no transaction: each chunk is one, acting in `tenant` (None: the
    tenant the transaction names, `default` for a library caller). Raises BadFilter,
    or IdempotencyMismatch when `request_id` was used for the other action."""
    status = check(action, job_filter, limit)
    if conn.is_in_transaction():
        raise RuntimeError("a bulk action runs a transaction per chunk: call it outside one")
    request_id = request_id or str(uuid.uuid4())
    cmd = command(action, request_id, reason)
    async with conn.transaction():
        await _enter(conn, tenant, request_id)
        done = await _done(conn, request_id, action)
        if done:
            return _repeat(request_id, action, done)
        f = job_filter
        selected: list[uuid.UUID] = [
            r["job_id"]
            for r in await conn.fetch(
                Q["jobs_bulk_select"],
                status,
                f.type,
                f.queue,
                f.error_contains,
                f.failed_before,
                f.failed_after,
                limit,
            )
        ]
    changed: list[uuid.UUID] = []
    for start in range(0, len(selected), CHUNK):
        chunk = selected[start : start + CHUNK]
        outcome = await _chunk(
            conn, event_store, chunk, job_filter, cmd, action, actor, tenant, changed, request_id
        )
        if outcome is None:  # a twin request under this id got there first: stop here
            async with conn.transaction():
                await _enter(conn, tenant, request_id)
                done = await _done(conn, request_id, action)
            return _repeat(request_id, action, done, matched=len(selected), changed=len(changed))
        changed.extend(outcome)
    return wire.BulkResult(
        request_id=request_id,
        action=action,
        matched=len(selected),
        changed=len(changed),
        job_ids=changed,
    )


async def _chunk(
    conn: asyncpg.Connection,
    event_store: store.EventStore,
    chunk: Sequence[uuid.UUID],
    job_filter: wire.BulkFilter,
    cmd: commands.Command,
    action: wire.BulkAction,
    actor: str,
    tenant: str | None,
    changed: Sequence[uuid.UUID],
    request_id: str,
) -> list[uuid.UUID] | None:
    """The jobs of `chunk` this transaction changed (a job that conflicts on its version
    is left out and the rest tried again); None when another request under the same id
    appended meanwhile."""
    remaining = list(chunk)
    while remaining:
        try:
            async with conn.transaction():
                await _enter(conn, tenant, request_id)
                mine = set(changed)
                if any(job_id not in mine for job_id in await _done(conn, request_id, action)):
                    return None
                histories = await event_store.histories(conn, remaining)
                decided: list[ev.JobEvent] = []
                before: dict[uuid.UUID, lifecycle.JobState] = {}
                now = event_store.clock()
                for job_id in remaining:
                    state = lifecycle.fold(r.event for r in histories.get(job_id, []))
                    if state is None or not matches(job_filter, state):
                        continue  # moved meanwhile
                    decided.extend(commands.decide(state, cmd, job_id=job_id, actor=actor, now=now))
                    before[job_id] = state
                await event_store.append(conn, decided, before=before)
            return list(before)
        except errors.VersionConflict as exc:
            remaining = [j for j in remaining if j != exc.job_id]  # it moved: skip it
    return []


async def _enter(conn: asyncpg.Connection, tenant: str | None, request_id: str) -> None:
    """Act in the tenant and hold the request id for this transaction."""
    if tenant is None:
        await acting.named(conn)
    else:
        await acting.act_in(conn, tenant)
    await conn.execute(Q["bulk_request_lock"], request_id)


async def _done(
    conn: asyncpg.Connection, request_id: str, action: wire.BulkAction
) -> list[uuid.UUID]:
    """The jobs the request id changed so far; IdempotencyMismatch if it was another action's."""
    rows = await conn.fetch(Q["events_of_bulk_request"], request_id)
    for row in rows:
        if row["type"] != _EVENT[action]:
            raise errors.IdempotencyMismatch(request_id, row["job_id"])
    return [r["job_id"] for r in rows]


def _repeat(
    request_id: str,
    action: wire.BulkAction,
    done: list[uuid.UUID],
    *,
    matched: int = 0,
    changed: int = 0,
) -> wire.BulkResult:
    """The answer to a request id carried out before (by an earlier call or a twin)."""
    return wire.BulkResult(
        request_id=request_id,
        action=action,
        matched=matched,
        changed=changed,
        job_ids=done,
        repeated=True,
    )
