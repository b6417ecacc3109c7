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
    bulk,
    commands,
    errors,
    jobtypes,
    lifecycle,
    metrics,
    payloads,
    queues,
    retrypolicy,
    sqlfile,
    store,
    tenants,
    uniqueness,
    wire,
    workflows,
)
from ledger import events as ev

Q = sqlfile.load("ledger")

MAX_BATCH: Final = wire.MAX_BATCH
MAX_DELAY_SECONDS: Final = wire.MAX_DELAY_SECONDS
MAX_PAST: Final = timedelta(days=100 * 365)  # far-past times could not be represented in UTC
Job = wire.Job
Submission = wire.Submission


class Submitted(msgspec.Struct, frozen=True):
    """A submission's jobs, and whether this call created them (False: an idempotent
    repeat, or `deduplicated`: every job was a unique job's duplicate, none created)."""

    jobs: list[Job]
    created: bool
    deduplicated: bool = False


# Tries of a unique submission: each one lost a race (a key or idempotency key taken,
# a holder gone) and the next one sees the winner. Replacements of one job by racing
# duplicates serialize through its version: each loser (VersionConflict) tries again,
# without counting, as long as other writers make progress (at most REPLACE_RACES).
UNIQUE_TRIES: Final = 5
REPLACE_RACES: Final = 1000


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
        *,
        process_metrics: metrics.Metrics | None = None,
    ) -> None:
        """`process_metrics`: where unique jobs' duplicates are counted (/metrics)."""
        self.registry = registry
        self.store = event_store or store.EventStore()
        self.metrics = process_metrics

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
        policy = submission.retry_policy
        if policy is not None:
            policy = policy.checked(f"{where}retry_policy") if policy.given() else None
        if (
            policy is not None
            or submission.max_attempts is not None
            or submission.backoff_base_seconds is not None
            or submission.backoff_cap_seconds is not None
        ):
            # The policy the submission gave, aliases mapped in: stored on the job.
            policy = retrypolicy.with_aliases(
                policy,
                {
                    "max_attempts": submission.max_attempts,
                    "backoff_base_seconds": submission.backoff_base_seconds,
                    "backoff_cap_seconds": submission.backoff_cap_seconds,
                },
                where=where,
            )
        command = commands.SubmitJob(
            job_type=submission.job_type,
            payload=submission.payload,
            queue=submission.queue,
            priority=submission.priority,
            max_attempts=_or(
                None if policy is None else policy.maximum_attempts, job_type.max_attempts
            ),
            timeout_seconds=submission.timeout_seconds or job_type.timeout_seconds,
            backoff_base_seconds=_or(
                None if policy is None else policy.initial_interval_seconds,
                job_type.backoff_base_seconds,
            ),
            backoff_cap_seconds=_or(
                None if policy is None else policy.maximum_interval_seconds,
                job_type.backoff_cap_seconds,
            ),
            run_at=run_at,
            idempotency_key=idempotency_key,
            concurrency_key=submission.concurrency_key,
            retry_policy=policy,
            webhook=None
            if submission.webhook is None
            else ev.JobWebhook(url=submission.webhook.url),
        )
        if submission.unique is None:
            return command
        unique = uniqueness.checked(submission.unique, where=where)
        key = uniqueness.key_of(unique, command, now=now)
        return msgspec.structs.replace(command, unique=key)

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
        retry_policy: retrypolicy.RetryPolicy | None = None,
        unique: wire.Unique | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        actor: str,
    ) -> Job:
        """Submit one job, in the caller's transaction when there is one (see the module).

        `unique`: at most one such job at a time (wire.Unique; a duplicate answers the job
        that holds the key, `deduplicated`, or by its `on_conflict`)."""
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
            retry_policy=retry_policy,
            unique=unique,
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
        if any(c.unique is not None for c in wanted):
            return await self._place_unique(
                conn, wanted, submissions, idempotency_key, actor=actor, now=now, batch=batch
            )
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

    async def submit_scheduled(
        self,
        conn: asyncpg.Connection,
        job: Submission,
        *,
        schedule_id: str,
        slot: datetime | None,
        run_at: datetime | None,
        idempotency_key: str,
        actor: str,
    ) -> Job:
        """Submit a schedule's job for `slot` (None: triggered outside its slots), in the
        caller's transaction: its `job.submitted.v1` names the schedule and the slot
        (ledger.schedules). A repeat of the key answers the job stored under it."""
        now = self.store.clock()
        command = msgspec.structs.replace(
            self.prepare(job.validated(), now=now, idempotency_key=idempotency_key),
            schedule_id=schedule_id,
            schedule_slot=slot,
            run_at=run_at,
        )
        async with acting.in_a_tenant(conn):
            found = await self._find_repeat(
                conn, actor, idempotency_key, [command], [job], batch=False
            )
        if found is not None:
            return found[0]
        recorded = await self._append_keyed(conn, new_jobs([command], actor=actor, now=now))
        return jobs_of(recorded)[0]

    async def _place_unique(
        self,
        conn: asyncpg.Connection,
        wanted: list[commands.SubmitJob],
        submissions: Sequence[Submission],
        idempotency_key: str | None,
        *,
        actor: str,
        now: datetime,
        batch: bool,
    ) -> Submitted:
        """`place` for submissions of which some are unique (ledger.uniqueness).

        The first try appends them all, reading nothing first: the database refuses a
        key another job holds inside the append's own statement, storing nothing. A
        later try reads the jobs holding the keys (in READ COMMITTED, the winner the
        refusal waited for is committed by then), answers each duplicate by its
        `on_conflict` and appends only what is left; a holder that left its states
        meanwhile holds nothing any more, and the next try creates the job.
        """
        keys = [c.unique.key for c in wanted if c.unique is not None]
        holders: dict[str, lifecycle.JobState] = {}
        attempt = races = 0
        while attempt < UNIQUE_TRIES and races < REPLACE_RACES:
            if idempotency_key is not None or attempt > 0:
                async with acting.in_a_tenant(conn):
                    if idempotency_key is not None:
                        found = await self._find_repeat(
                            conn, actor, idempotency_key, wanted, submissions, batch=batch
                        )
                        if found is not None:
                            return Submitted(found, created=False)
                    if attempt > 0:
                        holders = await self._holders(conn, keys)
            duplicates = uniqueness.duplicates(wanted, holders)
            refused = next((d for d in duplicates if d.unique.on_conflict == "error"), None)
            if refused is not None:
                self._count(wanted, [refused])
                raise _duplicate(refused, batch=batch)
            try:
                return await self._append_unique(conn, wanted, duplicates, actor=actor, now=now)
            except errors.TenantQuotaExceeded:
                if attempt > 0:
                    raise  # the duplicates were left out: what is left is over the quota
            except errors.VersionConflict:
                races += 1  # another writer moved a job to replace: read it again
                attempt = max(attempt, 1)
                continue
            except errors.UniqueKeyTaken as exc:
                # A racing writer won: the next try sees what it wrote, unless the caller's
                # transaction reads a snapshot older than that (it read the holders already).
                if attempt > 0:
                    await self._refuse_if_snapshot(conn, exc.unique_key or keys[0])
            except errors.IdempotencyKeyTaken:
                pass  # a racing writer won: the next try sees what it wrote
            attempt += 1
        raise errors.DuplicateJob(
            f"the unique keys of this submission kept changing hands ({UNIQUE_TRIES} tries); "
            "try again",
            job_id=None,
            unique_key=keys[0],
        )

    async def _refuse_if_snapshot(self, conn: asyncpg.Connection, key: str) -> None:
        """A key refused again after reading its holders: at REPEATABLE READ or SERIALIZABLE
        the holder committed after the caller's snapshot, which can never see it, so no
        try of this transaction can answer with it (DuplicateJob: retry the transaction).
        Outside a caller's transaction each try is a transaction of its own: tried again."""
        if not conn.is_in_transaction():
            return
        isolation = await conn.fetchval(Q["transaction_isolation"])
        if isolation == "read committed":
            return
        raise errors.DuplicateJob(
            f"unique key {key} is held by a job committed after this transaction's "
            f"snapshot ({isolation}), which it cannot see: retry the transaction (a new "
            "snapshot finds the job), or submit at READ COMMITTED",
            job_id=None,
            unique_key=key,
        )

    async def _append_unique(
        self,
        conn: asyncpg.Connection,
        wanted: list[commands.SubmitJob],
        duplicates: list[uniqueness.Duplicate],
        *,
        actor: str,
        now: datetime,
    ) -> Submitted:
        """Append the jobs of `wanted` that are not `duplicates`, and the replacements the
        duplicates ask for; each item's job, in order."""
        skipped = {d.index for d in duplicates}
        created = [c for i, c in enumerate(wanted) if i not in skipped]
        events = new_jobs(created, actor=actor, now=now)
        new_ids = iter(e.job_id for e in events)
        job_of = {i: next(new_ids) for i in range(len(wanted)) if i not in skipped}
        states: dict[uuid.UUID, lifecycle.JobState] = {}
        for event in events:
            states[event.job_id] = lifecycle.evolve(None, event)
        before: dict[uuid.UUID, lifecycle.JobState] = {}
        replaced: set[int] = set()
        for duplicate in duplicates:
            held = duplicate.job
            if held is None:
                assert duplicate.of_item is not None
                job_id = job_of[duplicate.of_item]
            else:
                job_id = held.job_id
            job_of[duplicate.index] = job_id
            if held is not None:
                states.setdefault(job_id, held)
                before.setdefault(job_id, held)
            if duplicate.unique.on_conflict != "replace":
                continue
            command = wanted[duplicate.index]
            state = states[job_id]
            if state.status not in lifecycle.RUNNABLE:
                self._count(wanted, [duplicate])
                raise errors.DuplicateJob(
                    f"job {job_id} holds the unique key and is {state.status}: only a pending "
                    "or retrying job can be replaced",
                    job_id=job_id,
                    unique_key=duplicate.unique.key,
                )
            decided = commands.decide(
                state,
                commands.ReplaceJob(payload=command.payload, run_at=command.run_at or now),
                job_id=job_id,
                actor=actor,
                now=now,
            )
            events += decided
            states[job_id] = lifecycle.fold(decided, state) or state
            replaced.add(duplicate.index)
        recorded = await self._append_keyed(conn, events, before=before) if events else []
        after = dict(before)
        for r in recorded:
            after[r.event.job_id] = lifecycle.evolve(after.get(r.event.job_id), r.event)
        self._count(wanted, duplicates)
        jobs = []
        for index, command in enumerate(wanted):
            job = Job.of(after[job_of[index]])
            if command.unique is not None:
                job = msgspec.structs.replace(
                    job,
                    deduplicated=index in skipped,
                    replaced=index in replaced or msgspec.UNSET,
                )
            jobs.append(job)
        return Submitted(jobs, created=bool(created), deduplicated=not created)

    async def _holders(
        self, conn: asyncpg.Connection, keys: list[str]
    ) -> dict[str, lifecycle.JobState]:
        """The jobs of the transaction's tenant holding any of `keys` now, by key."""
        rows = await conn.fetch(Q["jobs_holding_unique_keys"], keys)
        histories = await self.store.histories(conn, [r["job_id"] for r in rows])
        found: dict[str, lifecycle.JobState] = {}
        for row in rows:
            state = lifecycle.fold(r.event for r in histories.get(row["job_id"], []))
            if state is not None:
                found[row["unique_key"]] = state
        return found

    def _count(
        self, wanted: list[commands.SubmitJob], duplicates: list[uniqueness.Duplicate]
    ) -> None:
        if self.metrics is None:
            return
        for duplicate in duplicates:
            command = wanted[duplicate.index]
            self.metrics.jobs_deduplicated.labels(
                command.job_type, command.queue, duplicate.unique.on_conflict
            ).inc()

    async def _append_keyed(
        self,
        conn: asyncpg.Connection,
        events: list[ev.JobEvent],
        *,
        before: store.Before | None = None,
    ) -> list[store.Recorded]:
        """Append; inside the caller's transaction, a key taken meanwhile undoes only this."""
        if not conn.is_in_transaction():
            return await self.store.append(conn, events, before=before)
        async with conn.transaction():  # a savepoint
            return await self.store.append(conn, events, before=before)

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

    # -- workflows (ledger.workflows) --------------------------------------------

    async def submit_workflow(
        self,
        conn: asyncpg.Connection,
        jobs: Sequence[wire.WorkflowJobIn],
        *,
        workflow_id: uuid.UUID | None = None,
        actor: str,
        built: bool = True,
    ) -> wire.WorkflowOut:
        """Submit a workflow's jobs, all in one append or none (InvalidInput naming the job
        and field at fault: a payload, a name, a dependency, a cycle; WorkflowConflict when
        `workflow_id` is taken). Jobs with dependencies start `blocked`; the database lets
        each run when they end (see ledger.workflows). In the caller's transaction if any.

        `built`: the jobs were built in Python, not decoded (they are checked first).
        """
        if built:
            jobs = _checked_workflow_jobs(jobs)
        graph = workflows.checked(jobs)
        now = self.store.clock()
        wanted = self.prepare_all(jobs, now=now, where="jobs")
        workflow_id = workflow_id or uuid.uuid4()
        if workflow_id is not None:
            async with acting.in_a_tenant(conn):
                if await conn.fetchval(Q["workflow_exists"], workflow_id):
                    raise errors.WorkflowConflict(workflow_id, "this id is taken")
        job_ids = {name: uuid.uuid4() for name in graph}
        decided = [
            event
            for command in workflows.with_workflow(
                wanted, jobs, workflow_id=workflow_id, job_ids=job_ids
            )
            for event in commands.decide(
                None, command, job_id=job_ids[command.name or ""], actor=actor, now=now
            )
        ]
        recorded = await self.store.append(conn, decided)
        out = []
        for job, r in zip(jobs, recorded, strict=True):
            assert isinstance(r.event, ev.JobSubmitted)
            out.append(
                wire.WorkflowJobOut(
                    name=job.name,
                    job_id=r.event.job_id,
                    status="blocked" if job.depends_on else "pending",
                    depends_on=list(job.depends_on),
                    on_upstream_failure=job.on_upstream_failure,
                    result=None,
                    error=None,
                )
            )
        return wire.WorkflowOut(id=workflow_id, status="running", jobs=out)

    async def workflow(self, conn: asyncpg.Connection, workflow_id: uuid.UUID) -> wire.WorkflowOut:
        """The workflow as it is now (UnknownWorkflow: none of this id in the tenant)."""
        async with acting.in_a_tenant(conn):
            return await workflows.read(conn, workflow_id)

    async def cancel_workflow(
        self,
        conn: asyncpg.Connection,
        workflow_id: uuid.UUID,
        *,
        reason: str | None = None,
        actor: str,
    ) -> wire.WorkflowOut:
        """Cancel every job of the workflow that has not ended, downstream ones first, each
        in a transaction of its own (a job that ends meanwhile is left as it ended)."""
        async with acting.in_a_tenant(conn):
            workflow = await workflows.read(conn, workflow_id)
        why = reason or f"workflow {workflow_id} cancelled"
        for job in workflows.to_cancel(workflow):
            try:
                await self.act(conn, job.job_id, commands.CancelJob(reason=why), actor=actor)
            except errors.InvalidTransition:
                continue  # it ended meanwhile (an upstream's cascade, its worker)
        async with acting.in_a_tenant(conn):
            return await workflows.read(conn, workflow_id)

    async def retry_workflow(
        self,
        conn: asyncpg.Connection,
        workflow_id: uuid.UUID,
        *,
        start: str = "failed",
        actor: str,
    ) -> wire.WorkflowOut:
        """Re-run the workflow's failed jobs (`start="failed"`) or the job named `start`, and
        everything downstream of them that ended, in one transaction (`job.retried.v1`):
        each with dependencies goes back to `blocked` and runs when they have completed
        (at once, in this transaction, if they already have: sql/0078), the others run
        again now. Completed upstream work and every job's history are kept."""
        async with acting.in_a_tenant(conn), conn.transaction():
            workflow = await workflows.read(conn, workflow_id)
            for job, blocked in workflows.to_rerun(workflow, start):
                await self.store.execute(
                    conn, job.job_id, commands.RerunJob(blocked=blocked), actor=actor
                )
            return await workflows.read(conn, workflow_id)

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

    async def retry_matching(
        self,
        conn: asyncpg.Connection,
        job_filter: wire.BulkFilter,
        *,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
        actor: str,
        tenant: str | None = None,
    ) -> wire.BulkResult:
        """Run again up to `limit` failed or cancelled jobs matching `job_filter`, each
        `job.retried.v1` carrying `request_id`; a repeated request id changes nothing more.
        `conn` in no transaction: a transaction per chunk of jobs (ledger.bulk)."""
        return await bulk.act(
            conn,
            self.store,
            "retry",
            job_filter,
            limit=limit,
            request_id=request_id,
            actor=actor,
            tenant=tenant,
        )

    async def cancel_matching(
        self,
        conn: asyncpg.Connection,
        job_filter: wire.BulkFilter,
        *,
        limit: int = wire.DEFAULT_BULK_LIMIT,
        request_id: str | None = None,
        reason: str | None = None,
        actor: str,
        tenant: str | None = None,
    ) -> wire.BulkResult:
        """Cancel up to `limit` pending, retrying or processing jobs matching `job_filter`,
        like `retry_matching`."""
        return await bulk.act(
            conn,
            self.store,
            "cancel",
            job_filter,
            limit=limit,
            request_id=request_id,
            reason=reason,
            actor=actor,
            tenant=tenant,
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


def _duplicate(duplicate: uniqueness.Duplicate, *, batch: bool) -> errors.DuplicateJob:
    """The refusal of a duplicate whose `on_conflict` is `error`."""
    where = f"jobs[{duplicate.index}] " if batch else ""
    if duplicate.job is not None:
        holder = f"job {duplicate.job.job_id} ({duplicate.job.status})"
    else:
        holder = f"jobs[{duplicate.of_item}] of the same batch"
    return errors.DuplicateJob(
        f"{where}duplicates {holder}: it holds unique key {duplicate.unique.key}; "
        "nothing was submitted",
        job_id=None if duplicate.job is None else duplicate.job.job_id,
        unique_key=duplicate.unique.key,
    )


_encode_jobs = msgspec.json.Encoder().encode
_decode_workflow_job = msgspec.json.Decoder(wire.WorkflowJobIn).decode


def _checked_workflow_jobs(jobs: Sequence[wire.WorkflowJobIn]) -> list[wire.WorkflowJobIn]:
    """Workflow jobs built in Python held to a request body's rules, each field at fault named."""
    checked = []
    invalid: list[errors.FieldError] = []
    for index, job in enumerate(jobs):
        try:
            checked.append(_decode_workflow_job(_encode_jobs(job)))
        except msgspec.EncodeError as exc:
            invalid.append(errors.FieldError(path=f"jobs[{index}].payload", message=str(exc)))
        except msgspec.ValidationError as exc:
            message, _, at = str(exc).partition(" - at `$")
            path = at.rstrip("`").lstrip(".")
            invalid.append(
                errors.FieldError(
                    path=f"jobs[{index}]" + (f".{path}" if path else ""), message=message
                )
            )
    if invalid:
        raise errors.InvalidInput(f"the workflow is invalid: {invalid[0].message}", invalid)
    return checked


def _or[T: (int, float)](given: T | None, default: T) -> T:
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
        and uniqueness.same_options(first.unique, command.unique)
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
retry_matching = DEFAULT.retry_matching
cancel_matching = DEFAULT.cancel_matching
configure_queue = DEFAULT.configure_queue
pause_queue = DEFAULT.pause_queue
resume_queue = DEFAULT.resume_queue
configure_tenant = DEFAULT.configure_tenant
submit_workflow = DEFAULT.submit_workflow
cancel_workflow = DEFAULT.cancel_workflow
retry_workflow = DEFAULT.retry_workflow
