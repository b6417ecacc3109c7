"""Schemathesis against the app's own OpenAPI document, in-process, with a valid token.

Every operation is fuzzed (valid and invalid inputs): no response may be a 5xx, and
every response must match what the document says (status code, content type,
headers and body schema).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks as openapi_checks

from ledger import app as app_module
from ledger import auth, jobtypes
from tests.conftest import Databases

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 30
# The operations of the jobs API and /health. The audit routes (their own tag) are
# another surface, with a live SSE stream that a fuzzer would wait on forever.
FUZZED_TAGS = frozenset({"jobs", "health", "audit"})
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
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            seen.add((f"{operation.method.upper()} {operation.path}", response.status_code))
            if response.status_code == 201 and operation.path.startswith("/api/v1/jobs"):
                body = response.json()
                if "job" in body:  # a replay answers the new job beside replay_of
                    body = body["job"]
                created.extend(j["job_id"] for j in body.get("jobs", [body]))

        created: list[str] = []
        seen: set[tuple[str, int]] = set()
        fuzz()
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
