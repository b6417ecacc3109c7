"""Retry policies: how often and how long a failed job is tried again, and which failures end it.

A `RetryPolicy` names some or all of its fields; the one in force for a job is
resolved field by field, most specific first: the submission's, then the queue's
(`PUT /api/v1/queues/{name}`), then the job type's (`@job_type(retry_policy=...)`),
then `DEFAULTS` (`resolve`). The older submission fields are aliases: `max_attempts`
is `maximum_attempts`, `backoff_base_seconds` is `initial_interval_seconds`,
`backoff_cap_seconds` is `maximum_interval_seconds` (`with_aliases`: giving a field
and its alias with different values is refused).

What a policy decides for one failed attempt (retry after how long, or stop and why)
is a `Decision`, computed by the worker (`workers.retry.decide_failure`) and recorded
in the attempt's event, so the ledger says why a job waited or stopped.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from ledger import errors

Jitter = Literal["equal", "full", "none"]
Source = Literal["submission", "queue", "job_type", "default"]
StopReason = Literal["max_attempts", "max_elapsed", "non_retryable", "permanent"]

# The longest interval or elapsed time a policy may name (the longest delay a submission may).
MAX_SECONDS: Final = 366 * 24 * 3600
ErrorName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
FIELDS: Final = (
    "initial_interval_seconds",
    "backoff_coefficient",
    "maximum_interval_seconds",
    "maximum_attempts",
    "jitter",
    "max_elapsed_seconds",
    "non_retryable_errors",
)
# The submission's older fields and the policy field each stands for.
ALIASES: Final = {
    "max_attempts": "maximum_attempts",
    "backoff_base_seconds": "initial_interval_seconds",
    "backoff_cap_seconds": "maximum_interval_seconds",
}


class RetryPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Some or all of a retry policy's fields; a field left out (None) is decided further out.

    The un-jittered wait after failed attempt n is
    `min(maximum_interval_seconds, initial_interval_seconds * backoff_coefficient**(n-1))`;
    `jitter` then draws the wait from [w/2, w] ("equal"), [0, w] ("full") or takes w
    ("none"). `maximum_attempts` 0 and `max_elapsed_seconds` 0 mean no limit.
    """

    initial_interval_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)] | None = None
    backoff_coefficient: Annotated[float, msgspec.Meta(ge=1, le=1000)] | None = None
    maximum_interval_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)] | None = None
    maximum_attempts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    jitter: Jitter | None = None
    max_elapsed_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)] | None = None
    non_retryable_errors: Annotated[tuple[ErrorName, ...], msgspec.Meta(max_length=100)] | None = (
        None
    )

    def given(self) -> dict[str, Any]:
        """The fields this policy names, by name."""
        return {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}

    def checked(self, where: str = "retry_policy") -> RetryPolicy:
        """This policy when its fields agree with each other; InvalidInput naming the field."""
        low, high = self.initial_interval_seconds, self.maximum_interval_seconds
        if low is not None and high is not None and high < low:
            raise errors.InvalidInput.at(
                f"{where}.maximum_interval_seconds",
                f"maximum_interval_seconds ({high:g}) is less than initial_interval_seconds "
                f"({low:g})",
            )
        return self


class PolicyInForce(msgspec.Struct, frozen=True, kw_only=True):
    """Every field of the policy that decided a retry, and where each came from."""

    initial_interval_seconds: float
    backoff_coefficient: float
    maximum_interval_seconds: float
    maximum_attempts: int
    jitter: Jitter
    max_elapsed_seconds: float
    non_retryable_errors: tuple[str, ...]
    sources: dict[str, Source] = {}

    def describe(self) -> str:
        """One line for a person: `1s x2 up to 5m, 3 attempts, equal jitter`."""
        attempts = (
            "unlimited attempts"
            if self.maximum_attempts == 0
            else f"{self.maximum_attempts} attempts"
        )
        parts = [
            f"{seconds(self.initial_interval_seconds)} x{self.backoff_coefficient:g} up to "
            f"{seconds(self.maximum_interval_seconds)}",
            attempts,
            f"{self.jitter} jitter",
        ]
        if self.max_elapsed_seconds:
            parts.append(f"max elapsed {seconds(self.max_elapsed_seconds)}")
        if self.non_retryable_errors:
            parts.append("non-retryable " + ", ".join(self.non_retryable_errors))
        return ", ".join(parts)


DEFAULTS: Final = PolicyInForce(
    initial_interval_seconds=1.0,
    backoff_coefficient=2.0,
    maximum_interval_seconds=300.0,
    maximum_attempts=3,
    jitter="equal",
    max_elapsed_seconds=0.0,
    non_retryable_errors=(),
)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the policy decided for a failed attempt: retry after `jittered_delay_seconds`,
    or stop (`reason`); the inputs it decided on, for the attempt's event."""

    reason: StopReason | None  # None: retried
    attempt: int
    error_type: str | None
    policy: PolicyInForce
    delay_seconds: float | None = None  # before jitter
    jittered_delay_seconds: float | None = None  # the wait recorded
    requested_delay_seconds: float | None = None  # the handler's `Retryable(after=)`

    @property
    def retry(self) -> bool:
        return self.reason is None


def resolve(levels: list[tuple[Source, RetryPolicy | None]]) -> PolicyInForce:
    """The policy in force: each field from the first of `levels` that names it, else DEFAULTS."""
    fields: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for field in FIELDS:
        for source, policy in levels:
            value = None if policy is None else getattr(policy, field)
            if value is not None:
                fields[field], sources[field] = value, source
                break
        else:
            fields[field], sources[field] = getattr(DEFAULTS, field), "default"
    fields["initial_interval_seconds"] = float(fields["initial_interval_seconds"])
    fields["maximum_interval_seconds"] = float(fields["maximum_interval_seconds"])
    fields["backoff_coefficient"] = float(fields["backoff_coefficient"])
    fields["max_elapsed_seconds"] = float(fields["max_elapsed_seconds"])
    fields["non_retryable_errors"] = tuple(fields["non_retryable_errors"])
    return PolicyInForce(**fields, sources=sources)


def with_aliases(
    policy: RetryPolicy | None, aliases: dict[str, Any], *, where: str = ""
) -> RetryPolicy | None:
    """`policy` with the older fields given (`aliases`, by their old names, None: not given)
    mapped in; a field and its alias that disagree raise InvalidInput naming the alias.
    None when neither names anything."""
    mapped = {ALIASES[name]: value for name, value in aliases.items() if value is not None}
    if not mapped:
        return policy
    given = policy.given() if policy is not None else {}
    for old, new in ALIASES.items():
        if new in mapped and new in given and float(given[new]) != float(mapped[new]):
            raise errors.InvalidInput.at(
                f"{where}{old}",
                f"{old} ({mapped[new]:g}) contradicts retry_policy.{new} ({given[new]:g}); "
                "give one of them",
            )
    return RetryPolicy(**{**mapped, **given}).checked(f"{where}retry_policy")


_decode = msgspec.json.Decoder(RetryPolicy)


def stored(value: Any) -> RetryPolicy | None:
    """A policy as a jsonb column holds it (text or decoded; None: none)."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        return _decode.decode(value)
    return msgspec.convert(value, RetryPolicy, strict=False)


def seconds(value: float) -> str:
    """A duration for a person: 0.5s, 17m 2s, 2h 5m, 3d 4h."""
    if value < 60:
        return f"{value:.3g}s" if value < 10 else f"{round(value)}s"
    whole = round(value)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"
