"""The one way jobs are submitted and changed, for every caller: the HTTP routes, the CLI,
resubmissions, the benchmark and Python applications; and queues' settings changed
(`configure_queue`, `pause_queue`, `resume_queue`: ledger.queues, by the same append),
and tenants' settings (`configure_tenant`: ledger.tenants).

A submission that would take its tenant's queued jobs past the tenant's `max_queued`
raises `errors.TenantQuotaExceeded` from the append (the database's check, sql/0069)
and stores nothing: a batch is all or nothing. An idempotent repeat of a stored
submission answers the stored job, whatever the quota.

`submit(conn, job_type, payload, ..., actor=)` validates the payload against the
registered job type, fills in the type's defaults, honours an idempotency key (the
same submission again returns the first job; another one under the key raises
`IdempotencyMismatch`) and appends the job's first event through the event store.

It joins the caller's transaction when `conn` is in one: the job exists if and
only if the caller commits, and the workers' wake-up (a NOTIFY from the jobs
view) is delivered only on that commit. That is transactional enqueue: an
application's own rows and its jobs commit or roll back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from ledger import (
    acting,
    commands,
    errors,
    jobtypes,
    lifecycle,
    payloads,
    queues,
    sqlfile,
    store,
    tenants,
    wire,
)
from ledger import events as ev

Q = sqlfile.load("ledger")

MAX_BATCH: Final = wire.MAX_BATCH
MAX_DELAY_SECONDS: Final = wire.MAX_DELAY_SECONDS
MAX_PAST: Final = timedelta(days=100 * 365)  # far-past times could not be represented in UTC
Job = wire.Job
Submission = wire.Submission


class Submitted(msgspec.Struct, frozen=True):
    """A submission's job, and whether this call created it (False: an idempotent repeat)."""

    jobs: list[Job]
    created: bool


def checked_key(raw: str | None, *, field: str = "idempotency_key") -> str | None:
    """An idempotency key without surrounding spaces: 1 to 255 printable characters."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise errors.InvalidInput.at(field, f"{field} must be 1 to 255 printable characters")
    return key


def item_key(key: str, index: int) -> str:
    """The idempotency key of item `index` of a batch submitted under `key`."""
    return f"{key}/{index}"


class Submitter:
    """Submits and changes jobs with one registry of job types and one event store."""

    def __init__(
        self,
        registry: jobtypes.Registry = jobtypes.REGISTRY,
        event_store: store.EventStore | None = None,
    ) -> None:
        self.registry = registry
        self.store = event_store or store.EventStore()

    # -- deciding ----------------------------------------------------------------

    def prepare(
        self,
        submission: Submission,
        *,
        now: datetime,
        idempotency_key: str | None = None,
        where: str = "",
    ) -> commands.SubmitJob:
        """The SubmitJob `submission` asks for, with its type's defaults.

        Raises UnknownJobType or InvalidPayload (both InvalidInput, naming the field
        under `where`), or InvalidInput for times and delays out of range.
        """
        unstorable = payloads.check(submission.payload)  # before anything walks a deep payload
        if unstorable is not None:
            raise errors.InvalidInput.at(f"{where}payload{unstorable.path}", unstorable.message)
        job_type = self._job_type(submission.job_type, where)
        try:
            job_type.validate(submission.payload)
        except jobtypes.InvalidPayload as exc:
            raise exc.under(where) from None
        run_at = submission.run_at
        if run_at is not None and submission.delay_seconds is not None:
            raise errors.InvalidInput.at(
                f"{where}delay_seconds", "give run_at or delay_seconds, not both"
            )
        if run_at is not None and not (
            -MAX_PAST <= run_at - now <= timedelta(seconds=MAX_DELAY_SECONDS)
        ):
            raise errors.InvalidInput.at(
                f"{where}run_at",
                f"run_at must be at most {MAX_DELAY_SECONDS // 86400} days ahead "
                "(a past time runs now)",
            )
        if submission.delay_seconds is not None:
            run_at = now + timedelta(seconds=submission.delay_seconds)
        return commands.SubmitJob(
            job_type=submission.job_type,
            payload=submission.payload,
            queue=submission.queue,
            priority=submission.priority,
            max_attempts=submission.max_attempts or job_type.max_attempts,
            timeout_seconds=submission.timeout_seconds or job_type.timeout_seconds,
            backoff_base_seconds=_or(
                submission.backoff_base_seconds, job_type.backoff_base_seconds
            ),
            backoff_cap_seconds=_or(submission.backoff_cap_seconds, job_type.backoff_cap_seconds),
            run_at=run_at,
            idempotency_key=idempotency_key,
            concurrency_key=submission.concurrency_key,
            webhook=None
            if submission.webhook is None
            else ev.JobWebhook(url=submission.webhook.url),
        )

    def prepare_all(
        self,
        submissions: Sequence[Submission],
        *,
        now: datetime,
        idempotency_key: str | None = None,
        where: str = "jobs",
        built: bool = False,
    ) -> list[commands.SubmitJob]:
        """Each submission's SubmitJob; InvalidInput naming every invalid item's field.

        `built`: the submissions were built in Python, not decoded: check each first.
        """
        if not 1 <= len(submissions) <= MAX_BATCH:
            raise errors.InvalidInput.at(where, f"submit 1 to {MAX_BATCH} jobs at once")
        wanted: list[commands.SubmitJob] = []
        invalid: list[errors.FieldError] = []
        checked_all = wire.validated_all(submissions) if built else submissions
        for index, item in enumerate(submissions):
            key = None if idempotency_key is None else item_key(idempotency_key, index)
            at = f"{where}[{index}]."
            try:
                checked = item.validated() if checked_all is None else checked_all[index]
            except errors.InvalidInput as exc:
                invalid.extend(exc.under(at).field_errors)
                continue
            try:
                wanted.append(self.prepare(checked, now=now, idempotency_key=key, where=at))
            except errors.InvalidInput as exc:
                invalid.extend(exc.field_errors)
        if invalid:
            raise errors.InvalidInput(
                f"{len(invalid)} of {len(submissions)} jobs are invalid; none was submitted",
                invalid,
            )
        return wanted

    def _job_type(self, name: str, where: str) -> jobtypes.JobType:
        try:
            return self.registry.get(name)
        except jobtypes.UnknownJobType:
            if self.registry is jobtypes.REGISTRY and jobtypes.load_installed_once():
                return self._job_type(name, where)
            raise jobtypes.UnknownJobType(name, self.registry.names(), where=where) from None

    # -- queues --------------------------------------------------------------------
    # Each acts on the queue of the tenant `conn`'s transaction acts in (acting.act_in;
    # `default` outside one): queues are per tenant (sql/0065).

    async def configure_queue(
        self,
        conn: asyncpg.Connection,
        name: str,
        settings: wire.QueueSettings,
        *,
        actor: str,
    ) -> queues.QueueState:
        """Set a queue's limits, all of them (a `queue.configured.v1` unless unchanged)."""
        return await queues.configure(conn, self.store, name, settings, actor=actor)

    async def pause_queue(
        self, conn: asyncpg.Connection, name: str, *, reason: str | None = None, actor: str
    ) -> queues.QueueState:
        """Stop claiming a queue's jobs; running ones finish (a `queue.paused.v1`)."""
        return await queues.pause(conn, self.store, name, actor=actor, reason=reason)

    async def resume_queue(
        self, conn: asyncpg.Connection, name: str, *, actor: str
    ) -> queues.QueueState:
        """Claim a paused queue's jobs again (a `queue.resumed.v1`)."""
        return await queues.resume(conn, self.store, name, actor=actor)

    # -- tenants -------------------------------------------------------------------

    async def configure_tenant(
        self, conn: asyncpg.Connection, tenant: str, changes: dict[str, Any], *, actor: str
    ) -> tenants.TenantState:
        """Change a tenant's settings named in `changes` (`max_queued`, `max_running`,
        `weight`; None clears a limit): a `tenant.configured.v1` in that tenant, unless
        unchanged. `conn` must be in no transaction (this one acts in `tenant`)."""
        return await tenants.configure(conn, self.store, tenant, changes, actor=actor)

    # -- appending ---------------------------------------------------------------

    async def submit(
        self,
        conn: asyncpg.Connection,
        job_type: str,
        payload: dict[str, Any],
        *,
        queue: str | None = None,
        priority: ev.Priority | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        backoff_base_seconds: float | None = None,
        backoff_cap_seconds: float | None = None,
        concurrency_key: str | None = None,
        idempotency_key: str | None = None,
        actor: str,
    ) -> Job:
        """Submit one job, in the caller's transaction when there is one (see the module)."""
        submission = Submission.checked(
            job_type,
            payload,
            queue=queue,
            priority=priority,
            run_at=run_at,
            delay_seconds=delay_seconds,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
            concurrency_key=concurrency_key,
        )
        done = await self.place(conn, [submission], idempotency_key=idempotency_key, actor=actor)
        return done.jobs[0]

    async def submit_many(
        self,
        conn: asyncpg.Connection,
        submissions: Sequence[Submission],
        *,
        idempotency_key: str | None = None,
        actor: str,
    ) -> list[Job]:
        """Submit up to 1,000 jobs, all or none; item i is keyed `<idempotency_key>/<i>`."""
        done = await self.place(
            conn, submissions, idempotency_key=idempotency_key, actor=actor, batch=True, built=True
        )
        return done.jobs

    async def place(
        self,
        conn: asyncpg.Connection,
        submissions: Sequence[Submission],
        *,
        idempotency_key: str | None,
        actor: str,
        batch: bool = False,
        built: bool = False,
    ) -> Submitted:
        """`submit` / `submit_many`, telling also whether the jobs were created by this call.

        `built`: the submissions were built in Python, not decoded (they are checked).
        """
        idempotency_key = checked_key(idempotency_key)
        now = self.store.clock()
        if batch:
            wanted = self.prepare_all(
                submissions, now=now, idempotency_key=idempotency_key, built=built
            )
        else:
            wanted = [self.prepare(submissions[0], now=now, idempotency_key=idempotency_key)]
        if idempotency_key is None:
            recorded = await self.store.append(conn, new_jobs(wanted, actor=actor, now=now))
            return Submitted(jobs_of(recorded), created=True)
        for _ in range(3):
            async with acting.in_a_tenant(conn):
                found = await self._find_repeat(
                    conn, actor, idempotency_key, wanted, submissions, batch=batch
                )
            if found is not None:
                return Submitted(found, created=False)
            try:
                recorded = await self._append_keyed(conn, new_jobs(wanted, actor=actor, now=now))
            except errors.IdempotencyKeyTaken:
                continue  # a racing submission under this key won: answer with its jobs
            return Submitted(jobs_of(recorded), created=True)
        raise errors.IdempotencyKeyTaken(actor, idempotency_key)

    async def _append_keyed(
        self, conn: asyncpg.Connection, events: list[ev.JobEvent]
    ) -> list[store.Recorded]:
        """Append; inside the caller's transaction, a key taken meanwhile undoes only this."""
        if not conn.is_in_transaction():
            return await self.store.append(conn, events)
        async with conn.transaction():  # a savepoint
            return await self.store.append(conn, events)

    async def _find_repeat(
        self,
        conn: asyncpg.Connection,
        actor: str,
        key: str,
        wanted: list[commands.SubmitJob],
        submissions: Sequence[Submission],
        *,
        batch: bool,
    ) -> list[Job] | None:
        """The jobs `actor` already submitted under `key` (None: none yet).

        A batch commits whole, so its items' keys are all taken or none is; any other
        mix, or an item that differs from what was first submitted, is IdempotencyMismatch.
        """
        keys = [c.idempotency_key or key for c in wanted]
        asked = [*keys, item_key(key, len(wanted))] if batch else keys
        rows = await conn.fetch(Q["jobs_find_by_idempotency_keys"], actor, asked)
        found: dict[str, uuid.UUID] = {r["idempotency_key"]: r["job_id"] for r in rows}
        if not found:
            return None
        if len(found) != len(keys) or any(k not in found for k in keys):
            raise errors.IdempotencyMismatch(key, next(iter(found.values())))
        job_ids = [found[k] for k in keys]
        histories = await self.store.histories(conn, job_ids)
        jobs = []
        for job_id, command, submission in zip(job_ids, wanted, submissions, strict=True):
            history = [r.event for r in histories.get(job_id, [])]
            first = history[0] if history else None
            if not isinstance(first, ev.JobSubmitted) or not _same_submission(
                first, command, submission
            ):
                raise errors.IdempotencyMismatch(key, job_id)
            state = lifecycle.fold(history)
            assert state is not None
            jobs.append(Job.of(state))
        return jobs

    # -- changing ----------------------------------------------------------------

    async def cancel(
        self, conn: asyncpg.Connection, job_id: uuid.UUID, *, reason: str | None = None, actor: str
    ) -> Job:
        """Cancel a pending, retrying or processing job (InvalidTransition otherwise)."""
        return await self.act(conn, job_id, commands.CancelJob(reason=reason), actor=actor)

    async def retry(
        self,
        conn: asyncpg.Connection,
        job_id: uuid.UUID,
        *,
        max_attempts: int | None = None,
        actor: str,
    ) -> Job:
        """Run a failed or cancelled job again, its attempts starting over."""
        return await self.act(
            conn, job_id, commands.RetryJob(max_attempts=max_attempts), actor=actor
        )

    async def resubmit(
        self, conn: asyncpg.Connection, job_id: uuid.UUID, *, actor: str
    ) -> tuple[Job, Job]:
        """Submit `job_id`'s type and payload again as a new job; (new job, original).

        The new job's `job.submitted.v1` names the original (`replay_of`) and the
        original records `job.replayed.v1` naming the new one, in one transaction.
        Raises UnknownJob, or VersionConflict when the original moved meanwhile.
        """
        async with conn.transaction():
            await acting.named(conn)
            state = await self.store.load(conn, job_id)
            if state is None:
                raise errors.UnknownJob(job_id)
            decided = commands.resubmit(
                state, new_job_id=uuid.uuid4(), actor=actor, now=self.store.clock()
            )
            recorded = await self.store.append(conn, decided, before={job_id: state})
        new = lifecycle.fold([recorded[0].event])
        original = lifecycle.fold([recorded[1].event], state)
        assert new is not None and original is not None
        return Job.of(new), Job.of(original)

    async def act(
        self,
        conn: asyncpg.Connection,
        job_id: uuid.UUID,
        command: commands.Command,
        *,
        actor: str,
    ) -> Job:
        """Run `command` on an existing job, deciding once more if another writer got there first."""
        async with acting.in_a_tenant(conn):
            try:
                state = await self.store.execute(conn, job_id, command, actor=actor)
            except errors.VersionConflict:
                state = await self.store.execute(conn, job_id, command, actor=actor)
        return Job.of(state)


def new_jobs(
    wanted: Sequence[commands.SubmitJob], *, actor: str, now: datetime
) -> list[ev.JobEvent]:
    """The first events of new jobs (fresh ids: nothing to read before deciding)."""
    return [
        event
        for command in wanted
        for event in commands.decide(None, command, job_id=uuid.uuid4(), actor=actor, now=now)
    ]


def jobs_of(recorded: Sequence[store.Recorded]) -> list[Job]:
    """The new jobs that appended submissions created, as the database recorded them."""
    jobs = []
    for r in recorded:
        assert isinstance(r.event, ev.JobSubmitted)
        jobs.append(Job.submitted(r.event))
    return jobs


def _or(given: float | None, default: float) -> float:
    """The caller's value when it gave one (0 is a value), else the job type's default."""
    return default if given is None else given


def _same_submission(
    first: ev.JobSubmitted, command: commands.SubmitJob, submission: Submission
) -> bool:
    """Whether `command` repeats the submission recorded as `first` (run_at only if given)."""
    same = (
        first.job_type == command.job_type
        and payloads.same(first.payload, command.payload)  # as stored: 1e23 reads back as int
        and first.queue == command.queue
        and first.priority == command.priority
        and first.max_attempts == command.max_attempts
        and first.timeout_seconds == command.timeout_seconds
        and first.backoff_base_seconds == command.backoff_base_seconds
        and first.backoff_cap_seconds == command.backoff_cap_seconds
        and first.concurrency_key == command.concurrency_key
    )
    if submission.run_at is not None:
        same = same and first.run_at == submission.run_at
    return same


DEFAULT: Final = Submitter()
"""Job types from the process's registry (and installed plugins), a plain event store."""

submit = DEFAULT.submit
submit_many = DEFAULT.submit_many
cancel = DEFAULT.cancel
retry = DEFAULT.retry
configure_queue = DEFAULT.configure_queue
pause_queue = DEFAULT.pause_queue
resume_queue = DEFAULT.resume_queue
configure_tenant = DEFAULT.configure_tenant
