"""Which tenant a request acts in: the tenant id rule and `tenancy.resolve`'s whole table."""

from __future__ import annotations

import pytest

from ledger import auth, config, errors, tenancy


def principal(*scopes: str, tenant: str | None = None) -> auth.Principal:
    return auth.Principal(subject="alice", scopes=frozenset(scopes), tenant=tenant)


READER = ("jobs:read",)
OPERATOR = ("jobs:read", tenancy.ADMIN_SCOPE)


@pytest.mark.parametrize(
    "value", ["default", "acme", "a", "A9", "org_1.eu-west:prod", "x" * 128, "9lives"]
)
def test_tenant_ids_that_follow_the_rule_are_accepted(value: str) -> None:
    assert tenancy.checked(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "-acme", ".acme", "_acme", "acme corp", "acme/eu", "x" * 129, "acme\n", "é", 7, None],
)
def test_tenant_ids_that_break_the_rule_are_refused(value: object) -> None:
    with pytest.raises(errors.InvalidTenant):
        tenancy.checked(value)


# (scopes, claim, ?tenant=, mode, method) -> the tenant, or the error raised
TABLE: dict[str, tuple[tuple[str, ...], str | None, str | None, tenancy.Mode, str, object]] = {
    "claim, optional": (READER, "acme", None, "optional", "GET", "acme"),
    "claim, required": (READER, "acme", None, "required", "GET", "acme"),
    "claim, on a write": (READER, "acme", None, "required", "POST", "acme"),
    "no claim, optional": (READER, None, None, "optional", "GET", "default"),
    "no claim, optional, on a write": (READER, None, None, "optional", "POST", "default"),
    "no claim, required": (READER, None, None, "required", "GET", errors.TenantRequired),
    "no claim, required, on a write": (
        READER,
        None,
        None,
        "required",
        "POST",
        errors.TenantRequired,
    ),
    "?tenant= without tenants:admin": (READER, "acme", "other", "optional", "GET", errors.Forbidden),
    "?tenant= of its own tenant without tenants:admin": (
        READER,
        "acme",
        "acme",
        "optional",
        "GET",
        errors.Forbidden,
    ),
    "?tenant= with admin (not tenants:admin)": (
        ("admin",),
        "acme",
        "other",
        "optional",
        "GET",
        errors.Forbidden,
    ),
    "?tenant= with tenants:admin on GET": (OPERATOR, "acme", "other", "optional", "GET", "other"),
    "?tenant= with tenants:admin on HEAD": (OPERATOR, None, "other", "required", "HEAD", "other"),
    "?tenant= with tenants:admin, no claim, required": (
        OPERATOR,
        None,
        "other",
        "required",
        "GET",
        "other",
    ),
    "?tenant= with tenants:admin on POST": (
        OPERATOR,
        "acme",
        "other",
        "optional",
        "POST",
        errors.TenantParameterOnWrite,
    ),
    "?tenant= without tenants:admin on POST": (
        READER,
        "acme",
        "other",
        "optional",
        "POST",
        errors.TenantParameterOnWrite,
    ),
    "?tenant= with tenants:admin on DELETE": (
        OPERATOR,
        None,
        "other",
        "optional",
        "delete",
        errors.TenantParameterOnWrite,
    ),
    "malformed ?tenant= with tenants:admin": (
        OPERATOR,
        None,
        "no spaces",
        "optional",
        "GET",
        errors.InvalidTenant,
    ),
    "tenants:admin, no claim, no ?tenant=, optional": (
        OPERATOR,
        None,
        None,
        "optional",
        "GET",
        "default",
    ),
    "tenants:admin, no claim, no ?tenant=, required": (
        OPERATOR,
        None,
        None,
        "required",
        "GET",
        "default",
    ),
    "tenants:admin with a claim, no ?tenant=": (OPERATOR, "acme", None, "required", "GET", "acme"),
}


@pytest.mark.parametrize("case", list(TABLE), ids=list(TABLE))
def test_the_tenant_a_request_acts_in(case: str) -> None:
    scopes, claim, requested, mode, method, expected = TABLE[case]
    who = principal(*scopes, tenant=claim)
    if isinstance(expected, str):
        assert tenancy.resolve(who, requested, mode=mode, method=method) == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            tenancy.resolve(who, requested, mode=mode, method=method)


def test_a_refusal_under_tenancy_required_names_the_claim_and_is_a_401() -> None:
    with pytest.raises(errors.TenantRequired, match="'org_id'") as refused:
        tenancy.resolve(principal(*READER), None, mode="required", method="GET", claim="org_id")
    assert isinstance(refused.value, errors.Unauthorized)


def test_tenancy_settings_have_defaults_and_anything_else_refuses_to_start() -> None:
    settings = config.from_env({})
    assert (settings.tenancy_mode, settings.jwt_tenant_claim) == ("optional", "tenant")
    assert settings.metrics_tenant_label is False
    changed = config.from_env(
        {"TENANCY": "required", "JWT_TENANT_CLAIM": "org_id", "METRICS_TENANT_LABEL": "1"}
    )
    assert (changed.tenancy_mode, changed.jwt_tenant_claim) == ("required", "org_id")
    assert changed.metrics_tenant_label is True
    assert config.from_env({"METRICS_TENANT_LABEL": "off"}).metrics_tenant_label is False
    for bad in ("strict", "none", "on"):
        with pytest.raises(errors.ConfigError, match="TENANCY"):
            config.from_env({"TENANCY": bad})
    with pytest.raises(errors.ConfigError, match="METRICS_TENANT_LABEL"):
        config.from_env({"METRICS_TENANT_LABEL": "maybe"})


@pytest.mark.parametrize("claim", ["sub", "scope", "exp"])
def test_a_tenant_claim_the_service_reads_for_itself_refuses_to_start(claim: str) -> None:
    settings = config.Settings(jwt_secret="s" * 40, jwt_tenant_claim=claim)
    with pytest.raises(errors.ConfigError, match="JWT_TENANT_CLAIM"):
        auth.from_settings(settings)
