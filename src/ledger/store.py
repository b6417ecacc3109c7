"""The event store: append events with their hash chain and project them, in one transaction.

Invariant 2 (no state without its event) lives here and in the database: the
INSERT of the events projects them into the current-state view in the same
statement (sql/0051), and `append` runs any further inline projections (a port,
`InlineProjection`, that the projections package implements and the composition
roots wire in; the job metrics are one) on the same connection in the same
transaction. Driver errors are translated to ledger errors here, once.

Invariant 1 lives in the database too: the application's role cannot INSERT into
events; it appends through the SQL function `events_append` (sql/0056), which
decides each event's position, time, transaction id, chain link and hash. The
events a caller decided carry its clock's `occurred_at` as a proposal; the
Recorded events returned carry the time the database stored.
"""

from __future__ import annotations

import collections
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Protocol

import asyncpg
import msgspec

from ledger import commands, errors, lifecycle, sqlfile
from ledger import events as ev

Q = sqlfile.load("ledger")


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the ledger stored it: its global position, writing transaction and chain link."""

    position: int
    txid: int
    prev_hash: bytes
    hash: bytes
    event: ev.JobEvent
    tenant: str = ev.DEFAULT_TENANT  # the database's decision, like the rest


# The jobs' states just before an append, where the caller has them already (it read
# them in the same transaction to decide): projections that need them read no row.
Before = Mapping[uuid.UUID, lifecycle.JobState]

# The events the database appended of its own in an append, by decision: a workflow's
# dependants that the append's trigger unblocked, skipped or cancelled (sql/0082).
Decided = Mapping[str, int]
_decided = msgspec.json.Decoder(dict[str, int]).decode


class InlineProjection(Protocol):
    """A read model kept in step with the events inside the appending transaction.

    For an append of submissions only, outside a caller's transaction, `apply` runs
    just after the single statement that committed them (see EventStore.append):
    given only submissions, it must not touch the database. `decided`: what the
    database appended of its own in the same append (not in `recorded`).
    """

    async def apply(
        self,
        conn: asyncpg.Connection,
        recorded: Sequence[Recorded],
        before: Before,
        decided: Decided,
    ) -> None: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventStore:
    """Appends events and keeps the inline projections in the same transaction."""

    def __init__(
        self, projections: Sequence[InlineProjection] = (), clock: Clock = utc_now
    ) -> None:
        self._projections = tuple(projections)
        self.clock = clock

    async def append(
        self,
        conn: asyncpg.Connection,
        events: Sequence[ev.JobEvent],
        *,
        before: Before | None = None,
    ) -> list[Recorded]:
        """Append `events` (each at its job's next version) and project them, atomically.

        Runs in the caller's transaction when there is one, otherwise in its own.
        Raises VersionConflict when any job moved past the version an event expects.
        `before`: the jobs' states the caller decided against, read in this transaction.

        New jobs only (submissions, one per job) are one INSERT, which projects
        itself into the view in the same statement: outside a caller's transaction
        that statement is its own transaction, without the BEGIN and COMMIT round
        trips. The inline projections then see only submissions, for which none
        reads the database (none may: the statement has committed by then).
        """
        if not events:
            return []
        if conn.is_in_transaction() or _new_jobs_only(events):
            return await self._append(conn, events, before or {})
        async with conn.transaction():
            return await self._append(conn, events, before or {})

    async def project(
        self, conn: asyncpg.Connection, recorded: Sequence[Recorded], *, before: Before
    ) -> None:
        """Run the inline projections for events the database appended in a statement of
        its own (the claim, `jobs_claim_recorded`, sql/0084), as `append` runs them."""
        for projection in self._projections:
            await projection.apply(conn, recorded, before, collections.Counter())

    async def _append(
        self, conn: asyncpg.Connection, events: Sequence[ev.JobEvent], before: Before
    ) -> list[Recorded]:
        try:
            return await self._append_and_project(conn, events, before)
        except asyncpg.DeadlockDetectedError as exc:
            # Two writers of one job took its locks in opposite orders (a claim locks the
            # row, then appends; a cancel appends, then projects into the row). The
            # database broke the tie by failing this one: a lost race, like a taken version.
            raise _conflict(events, exc) from exc

    async def _append_and_project(
        self, conn: asyncpg.Connection, events: Sequence[ev.JobEvent], before: Before
    ) -> list[Recorded]:
        recorded: list[Recorded] = []
        decided: collections.Counter[str] = collections.Counter()
        for batch in one_per_job(events, _event_job):
            rows = await self._insert(conn, batch)
            if rows[0]["workflow_decided"] is not None:  # the statement's, on every row
                decided.update(_decided(rows[0]["workflow_decided"]))
            recorded.extend(
                Recorded(
                    position=row["position"],
                    txid=row["txid"],
                    prev_hash=row["prev_hash"],
                    hash=row["hash"],
                    event=_at(event, row["occurred_at"]),
                    tenant=row["tenant"],
                )
                for event, row in zip(batch, rows, strict=True)
            )
        for projection in self._projections:
            await projection.apply(conn, recorded, before, decided)
        return recorded

    async def _insert(
        self, conn: asyncpg.Connection, batch: Sequence[ev.JobEvent]
    ) -> list[asyncpg.Record]:
        try:
            rows = await conn.fetch(
                Q["events_append"],
                [e.job_id for e in batch],
                [e.version for e in batch],
                [ev.type_tag(e) for e in batch],
                [e.actor for e in batch],
                [ev.data_json(e) for e in batch],
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == IDEMPOTENCY_INDEX:
                raise _key_taken(batch, exc) from exc
            if exc.constraint_name == UNIQUE_INDEX:
                raise _unique_taken(exc) from exc
            if exc.constraint_name == WORKFLOW_KEY:
                raise _workflow_taken(batch) from exc
            if exc.constraint_name != "events_job_id_version_key":
                raise
            raise _conflict(batch, exc) from exc
        except asyncpg.NotNullViolationError as exc:
            if exc.column_name != "prev_hash":
                raise
            raise _conflict(batch, exc) from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != QUOTA_EXCEEDED:
                raise
            raise _over_quota(exc) from exc
        by_key = {(r["job_id"], r["version"]): r for r in rows}
        return [by_key[(e.job_id, e.version)] for e in batch]

    async def history(self, conn: asyncpg.Connection, job_id: uuid.UUID) -> list[Recorded]:
        """Every event of one job, oldest first."""
        rows = await conn.fetch(Q["events_list_for_job"], job_id)
        return [record_from_row(row) for row in rows]

    async def histories(
        self, conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Recorded]]:
        """Every event of each job, oldest first, by job id; unknown ids are left out."""
        found: dict[uuid.UUID, list[Recorded]] = {}
        for row in await conn.fetch(Q["events_list_for_jobs"], list(job_ids)):
            found.setdefault(row["job_id"], []).append(record_from_row(row))
        return found

    async def load(self, conn: asyncpg.Connection, job_id: uuid.UUID) -> lifecycle.JobState | None:
        """The job's current state, folded from its events (None: never submitted)."""
        history = await self.history(conn, job_id)
        state = lifecycle.fold(r.event for r in history)
        if state is not None and state.tenant != history[0].tenant:
            # The tenant is the envelope's (the database's), not an event field.
            state = msgspec.structs.replace(state, tenant=history[0].tenant)
        return state

    async def execute(
        self,
        conn: asyncpg.Connection,
        job_id: uuid.UUID,
        command: commands.Command,
        *,
        actor: str,
    ) -> lifecycle.JobState:
        """Decide `command` against the job's state and append the result, in one transaction;
        the job's state after it."""
        async with conn.transaction():
            state = await self.load(conn, job_id)
            decided = commands.decide(state, command, job_id=job_id, actor=actor, now=self.clock())
            recorded = await self._append(conn, decided, {} if state is None else {job_id: state})
        after = lifecycle.fold((r.event for r in recorded), state)
        assert after is not None  # decide returns at least one event or raises
        return after


def _at(event: ev.JobEvent, occurred_at: datetime) -> ev.JobEvent:
    """`event` at the time the database recorded it (the decider's clock only proposed one)."""
    if event.occurred_at == occurred_at:
        return event
    return msgspec.structs.replace(event, occurred_at=occurred_at)


def _new_jobs_only(events: Sequence[ev.JobEvent]) -> bool:
    """Submissions of distinct jobs: one statement appends and projects them all."""
    if not all(isinstance(e, ev.JobSubmitted) for e in events):
        return False
    return len({e.job_id.int for e in events}) == len(events)


def _event_job(event: ev.JobEvent) -> uuid.UUID:
    return event.job_id


def record_from_row(row: asyncpg.Record) -> Recorded:
    """A stored event row (with data, actor, occurred_at...) as a Recorded event."""
    return Recorded(
        position=row["position"],
        txid=row["txid"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        event=ev.from_row(row),
        tenant=row.get("tenant", ev.DEFAULT_TENANT),
    )


def one_per_job[T](items: Sequence[T], job_id: Callable[[T], uuid.UUID]) -> list[list[T]]:
    """Split into rounds holding at most one item per job, keeping each job's order.

    The append inserts one round per statement (a job's chain link needs the
    previous one stored), and the database projects each statement's round into
    the view as it inserts it.
    """
    rounds: list[list[T]] = []
    depth: dict[int, int] = {}  # keyed by the UUID's int: hashed in C, not by UUID.__hash__
    for item in items:
        key = job_id(item).int
        level = depth.get(key, 0)
        depth[key] = level + 1
        if level == len(rounds):
            rounds.append([])
        rounds[level].append(item)
    return rounds


# The jobs view's unique (submitter, Idempotency-Key): the database projects each
# appended submission into the view inside the INSERT (sql/0051), so a key already
# taken surfaces from the append itself.
IDEMPOTENCY_INDEX = "jobs_idempotency_key_idx"


def _key_taken(
    batch: Sequence[ev.JobEvent], exc: asyncpg.UniqueViolationError
) -> errors.IdempotencyKeyTaken:
    """The submission whose (submitter, Idempotency-Key) another job already holds."""
    detail = str(getattr(exc, "detail", "") or "")
    submissions = [e for e in batch if isinstance(e, ev.JobSubmitted)]
    for event in submissions:
        if event.idempotency_key is not None and event.idempotency_key in detail:
            return errors.IdempotencyKeyTaken(event.actor, event.idempotency_key)
    first = next(e for e in submissions if e.idempotency_key is not None)
    return errors.IdempotencyKeyTaken(first.actor, first.idempotency_key or "")


# The view's unique (tenant, unique_key) among the jobs in their unique states (sql/0076):
# a duplicate submission, or a retried job whose key another job took, is refused there.
UNIQUE_INDEX = "jobs_unique_key_idx"
_UNIQUE_DETAIL: Final = re.compile(r"\(tenant, unique_key\)=\(.*, ([0-9a-f]{64})\)")


def _unique_taken(exc: asyncpg.UniqueViolationError) -> errors.UniqueKeyTaken:
    """The key another job holds, as the index's detail names it."""
    found = _UNIQUE_DETAIL.search(str(getattr(exc, "detail", "") or ""))
    return errors.UniqueKeyTaken(found.group(1) if found else None)


# A workflow's id, unique in its tenant (sql/0077): a racing submission under it took it.
WORKFLOW_KEY = "workflows_pkey"


def _workflow_taken(batch: Sequence[ev.JobEvent]) -> errors.WorkflowConflict:
    first = next(e for e in batch if isinstance(e, ev.JobSubmitted) and e.workflow_id is not None)
    assert isinstance(first, ev.JobSubmitted) and first.workflow_id is not None
    return errors.WorkflowConflict(first.workflow_id, "this id is taken")


# The append's refusal of submissions past the tenant's max_queued (sql/0069); its
# detail is a JSON object of the figures.
QUOTA_EXCEEDED = "LQ429"


def _over_quota(exc: asyncpg.PostgresError) -> errors.TenantQuotaExceeded:
    figures = msgspec.json.decode(str(getattr(exc, "detail", "") or "{}"))
    return errors.TenantQuotaExceeded(
        figures["tenant"], figures["max_queued"], figures["queued"], figures["submitted"]
    )


def _conflict(batch: Sequence[ev.JobEvent], exc: asyncpg.PostgresError) -> errors.VersionConflict:
    detail = str(getattr(exc, "detail", "") or "")
    for event in batch:
        if str(event.job_id) in detail:
            return errors.VersionConflict(event.job_id, event.version - 1)
    first = batch[0]
    return errors.VersionConflict(first.job_id, first.version - 1)
