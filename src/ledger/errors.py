"""The ledger's exceptions: one root, a few subclasses that carry their fields."""

from __future__ import annotations

import uuid

import msgspec


class LedgerError(Exception):
    """Root of every error this service raises on purpose."""


class UnknownJob(LedgerError):
    """No job has this id."""

    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class VersionConflict(LedgerError):
    """Another writer appended to this job first; re-read and decide again."""

    def __init__(self, job_id: uuid.UUID, expected_version: int) -> None:
        super().__init__(f"job {job_id} changed concurrently (expected version {expected_version})")
        self.job_id = job_id
        self.expected_version = expected_version


class ClaimRaced(LedgerError):
    """A claim lost a deadlock to another writer of one of the jobs it had locked (the
    claim locks the job rows, then appends; a cancel appends, then projects into the
    row): the database failed the claim's statement, so nothing was claimed. Claim again."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the claim lost a deadlock to another writer of one of its jobs: {detail}"
        )


class InvalidTransition(LedgerError):
    """The command does not apply to the job in its current status."""

    def __init__(self, job_id: uuid.UUID | None, status: str | None, command: str) -> None:
        where = f"job {job_id} is {status}" if job_id else "job does not exist"
        super().__init__(f"cannot {command}: {where}")
        self.job_id = job_id
        self.status = status
        self.command = command


class BadCursor(LedgerError):
    """A paging cursor (of the feed or of a job list) is not one this service handed out (400)."""


class ConfigError(LedgerError):
    """The service's configuration is missing or inconsistent."""


class EmbeddedDatabaseError(LedgerError):
    """The embedded PostgreSQL could not be set up, started or stopped."""


class MigrationError(LedgerError):
    """A migration failed; the database was left as it was before it."""

    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"migration {name} failed and was rolled back: {cause}")
        self.name = name
        self.cause = cause


class Unauthorized(LedgerError):
    """The request carries no bearer token (`error` None), or one that does not verify (401)."""

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.error = error


class Forbidden(LedgerError):
    """The token verified but lacks the scope the operation needs (403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"this operation needs the {scope!r} scope")
        self.scope = scope


class TenantRequired(Unauthorized):
    """The token names no tenant and the deployment runs with `TENANCY=required` (401)."""

    def __init__(self, claim: str) -> None:
        super().__init__(
            f"this service needs a tenant: the token has no {claim!r} claim (TENANCY=required)"
        )
        self.claim = claim


class InvalidTenant(LedgerError):
    """A tenant id that breaks the rule (letters, digits and `._:-`, starting with a letter
    or digit, at most 128 characters); as `?tenant=`, a 400."""

    RULE = "1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"

    def __init__(self, value: object) -> None:
        super().__init__(f"{repr(value)[:140]} is not a tenant id ({self.RULE})")
        self.value = value


class TenantParameterOnWrite(LedgerError):
    """`?tenant=` was given on a request that writes: writes act in the token's tenant
    only, whoever sends them (400)."""

    def __init__(self, method: str) -> None:
        super().__init__(
            f"?tenant= is accepted on reads (GET, HEAD) only, not on {method}: "
            "a write acts in the token's own tenant"
        )
        self.method = method


class TenantQuotaExceeded(LedgerError):
    """The submission would take its tenant's queued jobs past the tenant's `max_queued`
    (429): nothing of it was stored. `queued` were waiting, `submitted` would be added."""

    def __init__(self, tenant: str, max_queued: int, queued: int, submitted: int) -> None:
        super().__init__(
            f"tenant {tenant!r} has {queued} queued jobs and a quota of {max_queued} "
            f"(max_queued): {submitted} more would pass it; nothing was submitted"
        )
        self.tenant = tenant
        self.max_queued = max_queued
        self.queued = queued
        self.submitted = submitted


class IdempotencyKeyTaken(LedgerError):
    """This submitter already used this idempotency key (for the same or another request)."""

    def __init__(self, submitted_by: str, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used by {submitted_by}")
        self.submitted_by = submitted_by
        self.key = key


class IdempotencyMismatch(LedgerError):
    """The idempotency key was first used with a different request (409)."""

    def __init__(self, key: str, job_id: uuid.UUID) -> None:
        super().__init__(
            f"idempotency key {key!r} was first used for job {job_id} with a different request"
        )
        self.key = key
        self.job_id = job_id


class UniqueKeyTaken(LedgerError):
    """The append would give a second job of the tenant a unique key another job holds
    (the view's index, sql/0076): a duplicate submission, which the submitter answers by
    its `on_conflict`, or a retried job whose key another job took meanwhile (409)."""

    def __init__(self, unique_key: str | None) -> None:
        super().__init__(
            f"another job holds the unique key {unique_key}"
            if unique_key
            else "another job holds this job's unique key"
        )
        self.unique_key = unique_key


class DuplicateJob(LedgerError):
    """A unique submission's key is held by `job_id` and its `on_conflict` refuses it:
    `error`, or `replace` of a job that no longer waits (processing, finished) (409)."""

    def __init__(self, message: str, *, job_id: uuid.UUID | None, unique_key: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.unique_key = unique_key


class FieldError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One invalid field: where (`path`, e.g. `payload.width` or `jobs[3].type`) and why."""

    path: str
    message: str


class InvalidInput(LedgerError):
    """What a caller asked for breaks a rule; `field_errors` names each field and why (422)."""

    def __init__(self, detail: str, field_errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.field_errors = field_errors

    @classmethod
    def at(cls, path: str, message: str) -> InvalidInput:
        """One field's error, its message the whole detail."""
        return cls(message, [FieldError(path=path, message=message)])

    def under(self, where: str) -> InvalidInput:
        """The same errors for fields of the item at `where` (e.g. `jobs[3].`)."""
        return InvalidInput(
            str(self),
            [FieldError(path=where + e.path, message=e.message) for e in self.field_errors],
        )


class UnknownWorkflow(LedgerError):
    """No workflow has this id (in the tenant the request acts in) (404)."""

    def __init__(self, workflow_id: uuid.UUID) -> None:
        super().__init__(f"workflow {workflow_id} does not exist")
        self.workflow_id = workflow_id


class WorkflowConflict(LedgerError):
    """The workflow cannot do this now: its id is taken, or nothing is left to retry (409)."""

    def __init__(self, workflow_id: uuid.UUID, message: str) -> None:
        super().__init__(f"workflow {workflow_id}: {message}")
        self.workflow_id = workflow_id
