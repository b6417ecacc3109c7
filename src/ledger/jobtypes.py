"""The job-type registry: what a job type is, how handlers declare one, and how plugins load.

A job type pairs a name with a payload type (a msgspec struct the API validates
submissions against), defaults (timeout, attempts, backoff) and a handler. The
handler is async or sync (sync ones run off the event loop); it raises
`Retryable` or `Permanent`, and what it returns is the job's result.

New job types need no change to the service: a module named in LEDGER_HANDLERS
(comma-separated) or exposed under the entry-point group `job_ledger.handlers`
is imported at start and registers its handlers with `@job_type(...)`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import asyncpg
import msgspec

from ledger import errors, retrypolicy, tenancy

ENTRY_POINT_GROUP: Final = "job_ledger.handlers"


class Retryable(errors.LedgerError):
    """The attempt failed but may succeed later: retried with backoff while attempts are left.

    `after`: wait exactly this many seconds before the next attempt instead of the
    policy's backoff (a rate limit's Retry-After); the policy's maximum_attempts and
    max_elapsed_seconds still apply.
    """

    def __init__(self, *args: object, after: float | None = None) -> None:
        super().__init__(*args)
        self.after = after


class Permanent(errors.LedgerError):
    """The job can never succeed as submitted: it fails now, whatever attempts are left."""


MAX_SNOOZE_SECONDS: Final = 366 * 24 * 3600


class Snooze(Exception):
    """Not now: run this attempt again `seconds` from now, without counting it as an attempt.

    A handler raises it (or returns it) when the job cannot make progress yet (a
    resource busy, a partner's window closed). The job goes back to wait
    (job.snoozed.v1) with its attempt number unchanged; after its job type's
    `max_snoozes` snoozes it fails instead, with an error that says so.
    """

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        if not 0 <= seconds <= MAX_SNOOZE_SECONDS:
            raise ValueError(f"a snooze lasts 0 to {MAX_SNOOZE_SECONDS} seconds, not {seconds}")
        super().__init__(seconds, reason)
        self.seconds = float(seconds)
        self.reason = reason

    def __str__(self) -> str:
        text = f"snoozed for {self.seconds:g} s"
        return f"{text}: {self.reason}" if self.reason else text


class UnknownJobType(errors.InvalidInput):
    """No handler is registered for this job type (the field `<where>type`)."""

    def __init__(self, name: str, known: Iterable[str], *, where: str = "") -> None:
        detail = f"unknown job type {name!r}; known types: {', '.join(sorted(known))}"
        super().__init__(detail, [errors.FieldError(path=f"{where}type", message=detail)])
        self.name = name


class InvalidPayload(errors.InvalidInput):
    """The payload does not match its job type's schema; `path` names the field (msgspec's
    `$.a[0]` form) and the field error says where it is (`payload.a[0]`)."""

    def __init__(self, job_type: str, message: str, path: str, *, where: str = "") -> None:
        super().__init__(
            f"invalid payload for {job_type}: {message}",
            [errors.FieldError(path=payload_path(path, f"{where}payload"), message=message)],
        )
        self.job_type = job_type
        self.message = message
        self.path = path

    def under(self, where: str) -> InvalidPayload:
        """The same error for the payload of the item at `where` (e.g. `jobs[3].`)."""
        return InvalidPayload(self.job_type, self.message, self.path, where=where)


def payload_path(msgspec_path: str, prefix: str = "payload") -> str:
    """msgspec's `$.a[0].b` as the request field `payload.a[0].b`."""
    return prefix + msgspec_path.removeprefix("$")


class JobContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler knows about the run besides its payload."""

    job_id: uuid.UUID
    job_type: str
    attempt: int
    max_attempts: int
    storage_root: Path
    # The application's database pool, for handlers that read the ledger (data_export).
    pool: asyncpg.Pool | None = None
    # The tenant the job belongs to: a handler that reads the ledger reads only its
    # rows, in a transaction acting in it (`acting.act_in`).
    tenant: str = tenancy.DEFAULT
    # A workflow job's dependencies' results by their names (None for one that did not
    # complete), as the ledger recorded them when it let the job run (job.unblocked.v1).
    upstream: dict[str, Any] = {}

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts of one job: side effects keyed on it happen once."""
        return f"job-{self.job_id}"


Handler = Callable[[Any, JobContext], Awaitable[Any]] | Callable[[Any, JobContext], Any]


DEFAULT_MAX_SNOOZES: Final = 100


class JobType(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    payload_type: type[msgspec.Struct]
    handler: Handler
    timeout_seconds: float = 300.0
    max_attempts: int = 3
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    # How many times one job may snooze (raise Snooze) before it fails; a manual
    # retry starts the count again.
    max_snoozes: int = DEFAULT_MAX_SNOOZES
    # The rest of the job type's retry policy (its maximum_attempts and intervals are the
    # three fields above, which the decorator sets from it).
    retry_policy: retrypolicy.RetryPolicy | None = None

    def policy(self) -> retrypolicy.RetryPolicy:
        """The job type's retry policy, every field it names (the three above always)."""
        given = self.retry_policy.given() if self.retry_policy is not None else {}
        return retrypolicy.RetryPolicy(
            **{
                "maximum_attempts": self.max_attempts,
                "initial_interval_seconds": self.backoff_base_seconds,
                "maximum_interval_seconds": self.backoff_cap_seconds,
                **given,
            }
        )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def validate(self, payload: Any) -> msgspec.Struct:
        """The payload as its typed struct, or InvalidPayload naming the field."""
        try:
            return msgspec.convert(payload, self.payload_type, strict=True)
        except msgspec.ValidationError as exc:
            message = str(exc)
            path = message.rsplit(" - at `", 1)[-1].rstrip("`") if " - at `" in message else "$"
            raise InvalidPayload(self.name, message, path) from exc

    def schema(self) -> dict[str, Any]:
        """The payload's JSON Schema."""
        return msgspec.json.schema(self.payload_type)


class Registry:
    """Job types by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job: JobType) -> None:
        existing = self._types.get(job.name)
        if existing is not None and existing.handler is not job.handler:
            raise errors.ConfigError(f"job type {job.name!r} is registered twice")
        self._types[job.name] = job

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, self._types) from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


REGISTRY: Final = Registry()


def job_type(
    name: str,
    payload: type[msgspec.Struct],
    *,
    timeout_seconds: float = 300.0,
    max_attempts: int = 3,
    backoff_base_seconds: float = 1.0,
    backoff_cap_seconds: float = 300.0,
    max_snoozes: int = DEFAULT_MAX_SNOOZES,
    retry_policy: retrypolicy.RetryPolicy | None = None,
    registry: Registry = REGISTRY,
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of job type `name`.

    `retry_policy`: the job type's retry policy; the fields it names win over
    `max_attempts`, `backoff_base_seconds` and `backoff_cap_seconds` (its aliases).
    """
    if max_snoozes < 0:
        raise errors.ConfigError(f"job type {name!r}: max_snoozes must not be negative")
    if retry_policy is not None:
        retry_policy = retry_policy.checked(f"job type {name!r} retry_policy")
        max_attempts = _or(retry_policy.maximum_attempts, max_attempts)
        backoff_base_seconds = _or(retry_policy.initial_interval_seconds, backoff_base_seconds)
        backoff_cap_seconds = _or(retry_policy.maximum_interval_seconds, backoff_cap_seconds)

    def register(handler: Handler) -> Handler:
        registry.add(
            JobType(
                name=name,
                payload_type=payload,
                handler=handler,
                timeout_seconds=timeout_seconds,
                max_attempts=max_attempts,
                backoff_base_seconds=backoff_base_seconds,
                backoff_cap_seconds=backoff_cap_seconds,
                max_snoozes=max_snoozes,
                retry_policy=retry_policy,
            )
        )
        return handler

    return register


def _or[T: (int, float)](given: T | None, default: T) -> T:
    return default if given is None else given


BUILTIN_HANDLERS: Final = "workers.handlers"
"""The built-in job types' module: a plugin like any other (also an entry point)."""


def load_handlers(modules: Iterable[str]) -> list[str]:
    """Import the built-in handlers (when present), the LEDGER_HANDLERS modules and entry points."""
    builtin = [BUILTIN_HANDLERS] if importlib.util.find_spec(BUILTIN_HANDLERS) else []
    return load_plugins([*builtin, *modules])


def load_plugins(modules: Iterable[str], *, entry_points: bool = True) -> list[str]:
    """Import handler modules (LEDGER_HANDLERS and the entry-point group); returns what loaded."""
    loaded: list[str] = []
    for name in modules:
        name = name.strip()
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise errors.ConfigError(f"cannot import handler module {name!r}: {exc}") from exc
        loaded.append(name)
    if entry_points:
        for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                point.load()
            except ImportError as exc:
                raise errors.ConfigError(
                    f"cannot import handler module {point.value!r} (entry point "
                    f"{point.name!r} in {ENTRY_POINT_GROUP}): {exc}"
                ) from exc
            loaded.append(point.value)
    return loaded


@functools.cache
def _installed() -> tuple[str, ...]:
    return tuple(load_plugins((), entry_points=True))


def load_installed_once() -> bool:
    """Load the installed plugins' job types (the entry-point group) into REGISTRY, once.

    True on the call that loaded them: a process that only submits jobs finds the
    types without loading handlers itself.
    """
    first = _installed.cache_info().currsize == 0
    _installed()
    return first
