"""Retry policies without a database: the delay over the whole policy space (properties),
the decision's order of checks, precedence field by field, aliases, and old events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import errors, retrypolicy
from ledger import events as ev
from workers import retry

NOW = datetime(2026, 1, 1, tzinfo=UTC)

policies = st.builds(
    retrypolicy.PolicyInForce,
    initial_interval_seconds=st.floats(0, retrypolicy.MAX_SECONDS),
    backoff_coefficient=st.floats(1, 1000),
    maximum_interval_seconds=st.floats(0, retrypolicy.MAX_SECONDS),
    maximum_attempts=st.just(0),
    jitter=st.sampled_from(["equal", "full", "none"]),
    max_elapsed_seconds=st.just(0.0),
    non_retryable_errors=st.just(()),
)
attempts = st.integers(1, 10**6)


@settings(max_examples=300)
@given(policy=policies, attempt=attempts, draw=st.floats(0, 1, exclude_max=True))
def test_the_delay_is_within_its_jitter_modes_bounds_never_negative_nor_past_the_maximum(
    policy: retrypolicy.PolicyInForce, attempt: int, draw: float
) -> None:
    decision = retry.decide_failure(
        policy, attempt=attempt, error_type="E", submitted_at=NOW, now=NOW, rand=lambda: draw
    )
    ceiling = retry.policy_ceiling(attempt, policy)
    assert 0 <= ceiling <= policy.maximum_interval_seconds
    lower = {"equal": ceiling / 2, "full": 0.0, "none": ceiling}[policy.jitter]
    assert decision.retry and decision.delay_seconds == ceiling
    wait = decision.jittered_delay_seconds
    assert wait is not None and lower <= wait <= ceiling
    # A wait this long is a time: the next attempt is never before the failure.
    assert NOW + retry.wait_of(decision) >= NOW


@settings(max_examples=300)
@given(policy=policies, attempt=st.integers(1, 10**6 - 1))
def test_the_unjittered_delay_never_shrinks_from_one_attempt_to_the_next(
    policy: retrypolicy.PolicyInForce, attempt: int
) -> None:
    this = retry.policy_ceiling(attempt, policy)
    assert retry.policy_ceiling(attempt + 1, policy) >= this
    first = min(policy.maximum_interval_seconds, policy.initial_interval_seconds)
    assert retry.policy_ceiling(1, policy) == first


def test_attempt_ten_thousand_and_a_million_wait_the_maximum_without_overflow() -> None:
    policy = retrypolicy.resolve(
        [("submission", retrypolicy.RetryPolicy(backoff_coefficient=1000, jitter="none"))]
    )
    for attempt in (10_000, 10**6):
        assert retry.policy_ceiling(attempt, policy) == 300.0


def test_the_default_policy_doubles_from_one_second_up_to_five_minutes() -> None:
    policy = retrypolicy.DEFAULTS
    assert [retry.policy_ceiling(n, policy) for n in (1, 2, 3, 9, 10)] == [1, 2, 4, 256, 300]


def _decide(policy: retrypolicy.PolicyInForce, **kw: object) -> retrypolicy.Decision:
    fields: dict[str, object] = {
        "attempt": 1,
        "error_type": "ValueError",
        "submitted_at": NOW,
        "now": NOW,
    }
    fields.update(kw)
    return retry.decide_failure(policy, **fields)  # type: ignore[arg-type]


def test_stop_reasons_are_checked_permanent_then_non_retryable_then_attempts_then_elapsed() -> None:
    policy = retrypolicy.resolve(
        [
            (
                "queue",
                retrypolicy.RetryPolicy(
                    maximum_attempts=2,
                    max_elapsed_seconds=60,
                    non_retryable_errors=("OSError",),
                    jitter="none",
                ),
            )
        ]
    )
    assert _decide(policy, permanent=True, error_names=["OSError"]).reason == "permanent"
    assert _decide(policy, error_names=["ConnectionError", "OSError"]).reason == "non_retryable"
    assert _decide(policy, attempt=2).reason == "max_attempts"
    late = _decide(policy, submitted_at=NOW - timedelta(seconds=59.5))
    assert late.reason == "max_elapsed" and late.jittered_delay_seconds == 1.0
    assert _decide(policy).retry


def test_after_asks_for_an_exact_delay_still_bounded_by_max_elapsed() -> None:
    policy = retrypolicy.resolve([("queue", retrypolicy.RetryPolicy(max_elapsed_seconds=100))])
    asked = _decide(policy, after=30)
    assert (asked.delay_seconds, asked.jittered_delay_seconds, asked.requested_delay_seconds) == (
        30,
        30,
        30,
    )
    assert _decide(policy, after=101).reason == "max_elapsed"
    assert _decide(policy, after=-5).jittered_delay_seconds == 0


def test_unlimited_attempts_retry_at_any_attempt() -> None:
    policy = retrypolicy.resolve([("submission", retrypolicy.RetryPolicy(maximum_attempts=0))])
    assert _decide(policy, attempt=10**6).retry


def test_precedence_is_field_by_field_and_records_each_fields_source() -> None:
    policy = retrypolicy.resolve(
        [
            ("submission", retrypolicy.RetryPolicy(maximum_attempts=7)),
            ("queue", retrypolicy.RetryPolicy(maximum_attempts=5, jitter="full")),
            ("job_type", retrypolicy.RetryPolicy(jitter="none", initial_interval_seconds=2)),
        ]
    )
    assert (policy.maximum_attempts, policy.jitter, policy.initial_interval_seconds) == (
        7,
        "full",
        2,
    )
    assert policy.backoff_coefficient == 2.0
    assert policy.sources["maximum_attempts"] == "submission"
    assert policy.sources["jitter"] == "queue"
    assert policy.sources["initial_interval_seconds"] == "job_type"
    assert policy.sources["backoff_coefficient"] == "default"


def test_the_older_fields_are_aliases_and_contradicting_one_names_it() -> None:
    mapped = retrypolicy.with_aliases(
        retrypolicy.RetryPolicy(jitter="none"), {"max_attempts": 4, "backoff_base_seconds": 2}
    )
    assert mapped == retrypolicy.RetryPolicy(
        jitter="none", maximum_attempts=4, initial_interval_seconds=2
    )
    same = retrypolicy.with_aliases(
        retrypolicy.RetryPolicy(maximum_attempts=4), {"max_attempts": 4}
    )
    assert same == retrypolicy.RetryPolicy(maximum_attempts=4)
    with pytest.raises(errors.InvalidInput) as refused:
        retrypolicy.with_aliases(
            retrypolicy.RetryPolicy(maximum_attempts=4), {"max_attempts": 5}, where="jobs[0]."
        )
    assert refused.value.field_errors[0].path == "jobs[0].max_attempts"


def test_a_maximum_below_the_initial_interval_is_refused_naming_the_field() -> None:
    with pytest.raises(errors.InvalidInput) as refused:
        retrypolicy.RetryPolicy(initial_interval_seconds=10, maximum_interval_seconds=5).checked()
    assert refused.value.field_errors[0].path == "retry_policy.maximum_interval_seconds"


def test_error_names_are_the_class_and_its_bases() -> None:
    assert retry.error_names(ConnectionRefusedError()) == [
        "ConnectionRefusedError",
        "ConnectionError",
        "OSError",
        "Exception",
        "BaseException",
    ]


def test_events_stored_before_retry_policies_still_decode_and_store_the_same_data() -> None:
    job_id = uuid.uuid4()
    row = {
        "type": "job.retry_scheduled.v1",
        "job_id": job_id,
        "version": 3,
        "actor": "w",
        "occurred_at": NOW,
        "data": '{"error": "boom", "next_attempt_at": "2026-01-01T00:00:05Z"}',
    }
    event = ev.from_row(row)
    assert isinstance(event, ev.JobRetryScheduled) and event.policy is None
    assert msgspec.json.decode(ev.data_json(event)) == {
        "error": "boom",
        "next_attempt_at": "2026-01-01T00:00:05Z",
    }
    failed = ev.from_row({**row, "type": "job.failed.v1", "data": '{"error": "boom"}'})
    assert isinstance(failed, ev.JobFailed) and failed.reason is None
    assert ev.data_json(failed) == '{"error":"boom"}'


def test_image_fetches_honour_retry_after_in_seconds_or_as_an_http_date() -> None:
    import httpx

    from ledger import jobtypes
    from workers.handlers import fetch

    assert fetch.retry_after("120") == 120
    assert fetch.retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=NOW) == 30
    assert fetch.retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=NOW) == 0
    assert fetch.retry_after("soon") is None and fetch.retry_after(None) is None
    with pytest.raises(jobtypes.Retryable) as limited:
        fetch._check_status(
            httpx.URL("https://images.example/a.png"),
            httpx.Response(429, headers={"Retry-After": "7"}),
        )
    assert limited.value.after == 7
    with pytest.raises(jobtypes.Retryable) as plain:
        fetch._check_status(httpx.URL("https://images.example/a.png"), httpx.Response(503))
    assert plain.value.after is None
