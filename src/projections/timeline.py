"""A job's timeline for debugging: each event with the status it left the job in, the gap
before it, and for a failed attempt why it was retried when it was, or why retrying stopped.

`note` is the one place an event's explanation is written: `ledger replay` prints it as the
`why:` line under the event, and the history route (`GET /api/v1/jobs/{id}/events`) serves
it as each event's `note`, which the dashboard's timeline shows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ledger import events as ev
from ledger import lifecycle, retrypolicy, store

_decode = msgspec.json.Decoder()


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a job and the state right after it."""

    version: int
    position: int
    occurred_at: datetime
    event: str
    actor: str
    status: str
    since_previous_seconds: float | None
    data: dict[str, Any]
    hash: str
    # Why, for a failed attempt: "attempt 3 failed: ...; retry in 17m 2s (policy: ...)".
    note: str | None = None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    as_of: datetime | None
    steps: list[Step]
    state: lifecycle.JobState | None  # after the last step shown


def build(
    job_id: uuid.UUID, history: Sequence[store.Recorded], as_of: datetime | None = None
) -> Timeline:
    """The steps of `history` (oldest first), up to `as_of` when given."""
    steps: list[Step] = []
    state: lifecycle.JobState | None = None
    previous: datetime | None = None
    for recorded, explained, after in _folded(history):
        event = recorded.event
        if as_of is not None and event.occurred_at > as_of:
            break
        state = after
        data = _decode.decode(ev.data_json(event))
        steps.append(
            Step(
                version=event.version,
                position=recorded.position,
                occurred_at=event.occurred_at,
                event=ev.type_tag(event),
                actor=event.actor,
                status=state.status,
                since_previous_seconds=(
                    None if previous is None else (event.occurred_at - previous).total_seconds()
                ),
                data=data,
                hash=recorded.hash.hex(),
                note=explained,
            )
        )
        previous = event.occurred_at
    return Timeline(job_id=job_id, as_of=as_of, steps=steps, state=state)


def notes(history: Sequence[store.Recorded]) -> list[str | None]:
    """Each event's note (oldest first), as `build` gives its steps: None where there is
    nothing to explain."""
    return [explained for _, explained, _ in _folded(history)]


def note(event: ev.Event, attempt: int = 0) -> str | None:
    """Why the event happened, for a person, or None: a failed attempt's retry or stop
    (`why`), else the reason the event records (`explain`). `attempt`: the job's attempt
    before the event."""
    return why(event, attempt) or explain(event)


def _folded(
    history: Sequence[store.Recorded],
) -> Iterator[tuple[store.Recorded, str | None, lifecycle.JobState]]:
    """Each event with its note and the job's state right after it (one fold for both)."""
    state: lifecycle.JobState | None = None
    for recorded in history:
        attempt = state.attempt if state is not None else 0
        state = lifecycle.evolve(state, recorded.event)
        yield recorded, note(recorded.event, attempt), state


def explain(event: ev.Event) -> str | None:
    """Why the event happened, in words, for the events that record a reason."""
    if isinstance(event, ev.JobSnoozed):
        reason = f": {event.reason}" if event.reason else ""
        return (
            f"attempt {event.attempt} snoozed {gap(event.seconds).lstrip('+')} until "
            f"{event.run_at.strftime('%Y-%m-%d %H:%M:%S')} (snooze {event.snooze} of "
            f"{event.max_snoozes}; not counted as an attempt){reason}"
        )
    if isinstance(event, ev.JobSubmitted) and event.unique is not None:
        return unique_why(event.unique)
    if isinstance(event, ev.JobReplaced):
        return (
            f"a duplicate unique submission by {event.actor} replaced the payload and run time "
            f"(on_conflict replace); due {event.run_at.strftime('%Y-%m-%d %H:%M:%S')}"
        )
    if isinstance(event, ev.JobUnblocked):
        return (
            f"its last dependency, job {event.upstream_job_id}, ended {event.upstream_status} "
            f"(event {event.cause[:16]}): it may run"
        )
    if isinstance(event, ev.JobSkipped):
        return (
            f"skipped without running: dependency job {event.upstream_job_id} ended "
            f"{event.upstream_status} (event {event.cause[:16]}) and it skips on upstream failure"
        )
    if isinstance(event, ev.JobCancelled) and event.upstream_job_id is not None:
        return (
            f"cancelled: dependency job {event.upstream_job_id} ended {event.upstream_status} "
            f"(event {(event.cause or '')[:16]})"
        )
    if isinstance(event, ev.JobSubmitted) and event.depends_on:
        return (
            f"workflow {event.workflow_id} job {event.name!r}: waits for "
            f"{len(event.depends_on)} job(s), on upstream failure: "
            f"{event.on_upstream_failure or 'cancel'}"
        )
    if isinstance(event, ev.JobRetried) and event.blocked:
        return "re-run by its workflow's retry: waits again for its dependencies"
    return None


def why(event: ev.Event, attempt: int = 0) -> str | None:
    """For a failed attempt's event, why the job waits or stopped, for a person; else None.

    `attempt`: the job's attempt before the event, for events recorded before retry
    policies (which do not name it)."""
    if not isinstance(event, ev.JobRetryScheduled | ev.JobFailed | ev.JobLeaseExpired):
        return None
    number = event.attempt or attempt
    failed = (
        f"attempt {number} lease expired"
        if isinstance(event, ev.JobLeaseExpired)
        else f"attempt {number} failed: {event.error}"
    )
    policy = event.policy
    if isinstance(event, ev.JobFailed) or event.next_attempt_at is None:
        reason = event.reason if not isinstance(event, ev.JobRetryScheduled) else None
        return f"{failed}; stopped retrying: {_stop(reason, event, policy)}"
    wait = event.jittered_delay_seconds
    if wait is None:
        wait = (event.next_attempt_at - event.occurred_at).total_seconds()
    text = f"{failed}; retry in {retrypolicy.seconds(max(wait, 0.0))}"
    if isinstance(event, ev.JobRetryScheduled) and event.requested_delay_seconds is not None:
        text += " (the handler asked for it)"
    elif event.delay_seconds is not None and event.delay_seconds != wait:
        text += f" (backoff {retrypolicy.seconds(event.delay_seconds)}, jittered)"
    if policy is not None:
        text += f" (policy: {policy.describe()})"
    return text


def _stop(
    reason: str | None,
    event: ev.JobFailed | ev.JobLeaseExpired | ev.JobRetryScheduled,
    policy: retrypolicy.PolicyInForce | None,
) -> str:
    match reason:
        case "max_attempts" if policy is not None:
            return f"max_attempts {policy.maximum_attempts} reached"
        case "max_elapsed" if policy is not None:
            return f"max_elapsed {policy.max_elapsed_seconds:g} s reached"
        case "non_retryable":
            return f"{event.error_type} is non-retryable"
        case "permanent":
            return "permanent error"
        case None:
            return "no attempts left or a permanent error (recorded before retry reasons)"
    return reason.replace("_", " ")


def unique_why(unique: ev.UniqueKey) -> str:
    """A unique job's key in words: by what, while when, and what a duplicate gets."""
    period = ""
    if unique.period_seconds is not None and unique.period_start is not None:
        start = unique.period_start.strftime("%Y-%m-%d %H:%M:%S")
        period = f" in the {unique.period_seconds} s period from {start}"
    return (
        f"unique by {', '.join(unique.by)}{period} (key {unique.key[:12]}…), held while "
        f"{'/'.join(unique.states)}; a duplicate gets {unique.on_conflict}"
    )


def gap(seconds: float | None) -> str:
    """A short, human reading of the time between two events: +0.042s, +3m05s, +2h10m, +3d04h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"+{seconds:.3f}s"
    whole = timedelta(seconds=round(seconds))
    minutes, secs = divmod(int(whole.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"+{days}d{hours:02d}h"
    if hours:
        return f"+{hours}h{minutes:02d}m"
    return f"+{minutes}m{secs:02d}s"


def render(timeline: Timeline) -> str:
    """The timeline as an aligned table for a terminal."""
    header = ("VER", "TIME (UTC)", "EVENT", "ACTOR", "STATUS AFTER", "SINCE PREV")
    rows = [
        (
            str(s.version),
            s.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            s.event,
            s.actor,
            s.status,
            gap(s.since_previous_seconds),
        )
        for s in timeline.steps
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row, step in zip([header, *rows], [None, *timeline.steps], strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if step is not None and step.note:
            lines.append(f"    why: {step.note}")
    return "\n".join(lines)
