"""Which tenant a request acts in: the tenant id rule and `tenancy.resolve`'s whole table."""

from __future__ import annotations

import pytest

from ledger import auth, config, errors, tenancy


def principal(*scopes: str, tenant: str | None = None) -> auth.Principal:
    return auth.Principal(subject="alice", scopes=frozenset(scopes), tenant=tenant)


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


R, OP, ADMIN = ("jobs:read",), ("jobs:read", tenancy.ADMIN_SCOPE), ("admin",)
NO_CLAIM = errors.TenantRequired
SCOPE = errors.Forbidden
ON_WRITE = errors.TenantParameterOnWrite
BAD_ID = errors.InvalidTenant
# case: (scopes, tenant claim, ?tenant=, TENANCY, method, the tenant or the error raised)
TABLE: dict[str, tuple[tuple[str, ...], str | None, str | None, tenancy.Mode, str, object]] = {
    "claim, optional": (R, "acme", None, "optional", "GET", "acme"),
    "claim, required": (R, "acme", None, "required", "GET", "acme"),
    "claim, required, on a write": (R, "acme", None, "required", "POST", "acme"),
    "no claim, optional": (R, None, None, "optional", "GET", "default"),
    "no claim, optional, on a write": (R, None, None, "optional", "POST", "default"),
    "no claim, required": (R, None, None, "required", "GET", NO_CLAIM),
    "no claim, required, on a write": (R, None, None, "required", "POST", NO_CLAIM),
    "?tenant= without tenants:admin": (R, "acme", "other", "optional", "GET", SCOPE),
    "?tenant= of its own, without tenants:admin": (R, "acme", "acme", "optional", "GET", SCOPE),
    "?tenant= with admin only": (ADMIN, "acme", "other", "optional", "GET", SCOPE),
    "?tenant= with tenants:admin on GET": (OP, "acme", "other", "optional", "GET", "other"),
    "?tenant= with tenants:admin on HEAD": (OP, None, "other", "required", "HEAD", "other"),
    "?tenant= with tenants:admin, no claim": (OP, None, "other", "required", "GET", "other"),
    "?tenant= with tenants:admin on POST": (OP, "acme", "other", "optional", "POST", ON_WRITE),
    "?tenant= without tenants:admin on POST": (R, "acme", "other", "optional", "POST", ON_WRITE),
    "?tenant= with tenants:admin on DELETE": (OP, None, "other", "optional", "delete", ON_WRITE),
    "malformed ?tenant= with tenants:admin": (OP, None, "a b", "optional", "GET", BAD_ID),
    "tenants:admin, no claim, optional": (OP, None, None, "optional", "GET", "default"),
    "tenants:admin, no claim, required": (OP, None, None, "required", "GET", "default"),
    "tenants:admin with a claim": (OP, "acme", None, "required", "GET", "acme"),
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
        tenancy.resolve(principal(*R), None, mode="required", method="GET", claim="org_id")
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
