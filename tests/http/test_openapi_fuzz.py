"""Schemathesis against the app's own OpenAPI document, in-process, with a valid token.

Every operation is fuzzed (valid and invalid inputs): no response may be a 5xx, and
every response must match what the document says (status code, content type,
headers and body schema).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks as openapi_checks

from ledger import auth, jobtypes, payloads
from service import app as app_module
from tests.conftest import Databases

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 30
# The operations of the jobs and queues APIs and /health. The audit routes (their own tag) are
# another surface, with a live SSE stream that a fuzzer would wait on forever.
FUZZED_TAGS = frozenset({"jobs", "health", "audit", "queues"})
# A live stream never ends: a fuzzer would wait on it forever (tested in test_audit_api).
UNFUZZED_PATHS = frozenset({"/api/v1/events/stream"})


def aim(case: schemathesis.Case, created: list[str], data: st.DataObject) -> None:
    """Point a generated case at things that exist, so it gets past "unknown": the `noop`
    job type (any object without an `n` is its payload) and jobs created earlier in the run."""
    body = case.body
    if isinstance(body, dict):
        for item in [body, *(body.get("jobs") or [])]:
            if isinstance(item, dict) and ("type" in item or item is not body):
                item["type"] = "noop"
                if isinstance(item.get("payload"), dict):
                    item["payload"].pop("n", None)
                if item is not body:  # one bad item refuses a whole batch: keep items plain
                    for key in ("run_at", "delay_seconds"):
                        item.pop(key, None)
    # Always draw, whatever exists yet, so replays make the same choices.
    pick = data.draw(st.integers(min_value=0, max_value=2**16))
    if case.path_parameters and "job_id" in case.path_parameters and created:
        case.path_parameters["job_id"] = created[pick % len(created)]


# Inputs that once answered 500 or were taken loosely (issue #11): the fuzzer mixes them in.
# An instant that is no instant in UTC (before year 1, after 9999) once its offset applies.
def _offset(minutes: int) -> str:
    return f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


EDGE_INSTANTS = st.builds(
    lambda minutes: f"0001-01-01T00:00:00{_offset(minutes)}", st.integers(1, 14 * 60)
) | st.builds(
    lambda minutes: f"9999-12-31T23:59:59.999999{_offset(-minutes)}", st.integers(1, 14 * 60)
)
NUMBERS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.sampled_from([1e23, 1e300, -1e300, 1e-300, 2.0**64, 1e16])
)
NUMERIC_FIELDS = ("delay_seconds", "max_attempts", "timeout_seconds", "backoff_base_seconds")
NOT_JSON = st.sampled_from(
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "text/json"]
)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def spoil(case: schemathesis.Case, data: st.DataObject) -> tuple[str, dict[str, str]]:
    """Mix one known-bad input into the case; what it should answer and extra headers."""
    body = case.body
    items = [body] if isinstance(body, dict) and "payload" in body else []
    if isinstance(body, dict) and isinstance(body.get("jobs"), list):
        items = [i for i in body["jobs"] if isinstance(i, dict)]
    kinds = ["none"]
    instants = sorted(n for n in ("as_of", "since", "until") if n in case.operation.query)
    if instants:
        kinds.append("instant")
    if case.operation.path == "/api/v1/jobs" and case.method.upper() == "GET":
        kinds.append("cursor")
    if items:
        kinds += ["deep", "stringly", "numbers"]
    if len(case.operation.body) and body is not None:  # the operation reads a body
        kinds.append("content-type")
    kind = data.draw(st.sampled_from(kinds))
    if kind == "instant":
        name = data.draw(st.sampled_from(instants))
        case.query = {**(case.query or {}), name: data.draw(EDGE_INSTANTS)}
    elif kind == "cursor":
        raw = f"{data.draw(EDGE_INSTANTS)}|{uuid.uuid4()}".encode()
        case.query = {**(case.query or {}), "cursor": base64.urlsafe_b64encode(raw).decode()}
    elif kind == "deep":
        depth = data.draw(st.integers(payloads.MAX_DEPTH - 5, 900))
        items[0]["payload"] = nested(depth)
        return ("refused" if depth > payloads.MAX_DEPTH else "any"), {}
    elif kind == "stringly":
        items[0][data.draw(st.sampled_from(NUMERIC_FIELDS))] = str(data.draw(st.integers(1, 9)))
    elif kind == "numbers":
        # A plain submission (so it is accepted), with any JSON number in its payload.
        job = {"type": "noop", "payload": {"x": data.draw(NUMBERS), "y": [data.draw(NUMBERS)]}}
        case.body = {"jobs": [job, {"type": "noop", "payload": {}}]} if "jobs" in body else job
        # On the case: a header the case generated itself would win over an extra one.
        case.headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
        return "replayable", {}
    elif kind == "content-type":
        return "415", {"Content-Type": data.draw(NOT_JSON)}
    return ("refused" if kind != "none" else "any"), {}


def test_the_api_conforms_to_its_own_openapi_document(
    dbs: Databases, auth_config: auth.AuthConfig, registry: jobtypes.Registry
) -> None:
    app: Litestar = app_module.create_app(
        dbs.app, auth_config=auth_config, registry=registry, pool_size=2
    )
    token = auth_config.mint("fuzzer", ["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    try:
        operations = [
            op
            for op in (result.ok() for result in schema.get_all_operations())
            if set(op.tags or ()) & FUZZED_TAGS and op.path not in UNFUZZED_PATHS
        ]
        assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
            "POST /api/v1/jobs",
            "POST /api/v1/jobs/batch",
            "GET /api/v1/jobs",
            "GET /api/v1/jobs/{job_id}",
            "POST /api/v1/jobs/{job_id}/cancel",
            "POST /api/v1/jobs/{job_id}/retry",
            "GET /api/v1/queues",
            "PUT /api/v1/queues/{name}",
            "POST /api/v1/queues/{name}/pause",
            "GET /health",
        }

        @settings(
            max_examples=EXAMPLES_PER_OPERATION * len(operations),
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def fuzz(data: st.DataObject) -> None:
            operation = data.draw(st.sampled_from(operations))
            case = data.draw(operation.as_strategy())
            if data.draw(st.booleans()):
                aim(case, created, data)
            expect, extra = spoil(case, data)
            spoiled.add(expect)
            response = case.call_and_validate(headers={**headers, **extra}, checks=CHECKS)
            if expect == "refused":
                assert 400 <= response.status_code < 500, response.text
            elif expect == "415":
                assert response.status_code in (401, 403, 404, 405, 413, 415), response.text
            elif expect == "replayable" and response.status_code == 201:
                again = case.call_and_validate(headers={**headers, **extra}, checks=CHECKS)
                assert again.status_code == 201, again.text
                assert again.headers.get("idempotent-replayed") == ["true"], again.headers
                spoiled.add("replayed")
                jobs = [response.json(), again.json()]
                assert [[j["job_id"] for j in b.get("jobs", [b])] for b in jobs] == [
                    [j["job_id"] for j in jobs[0].get("jobs", [jobs[0]])]
                ] * 2
            seen.add((f"{operation.method.upper()} {operation.path}", response.status_code))
            if response.status_code == 201 and operation.path.startswith("/api/v1/jobs"):
                body = response.json()
                if "job" in body:  # a replay answers the new job beside replay_of
                    body = body["job"]
                created.extend(j["job_id"] for j in body.get("jobs", [body]))

        created: list[str] = []
        seen: set[tuple[str, int]] = set()
        spoiled: set[str] = set()
        fuzz()
        assert spoiled >= {"refused", "415", "replayed"}, spoiled
        # The fuzzing reached past validation: jobs were created and read, and cancel
        # or retry got as far as the job's state.
        assert {
            ("POST /api/v1/jobs", 201),
            ("POST /api/v1/jobs/batch", 201),
            ("GET /api/v1/jobs/{job_id}", 200),
        } <= seen, sorted(seen)
        assert any(
            path.endswith(("/cancel", "/retry")) and status in (200, 409) for path, status in seen
        ), sorted(seen)
    finally:
        asgi.shutdown_lifespans()
