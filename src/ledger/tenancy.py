"""Which tenant a request acts in: the rule for a tenant id, and how a token decides it.

A deployment that never mentions tenants has one, `default`. A token names its tenant
in a claim (`tenant`, or `JWT_TENANT_CLAIM`). `resolve` is the whole decision:

- `?tenant=X` is for operators: only a token with the `tenants:admin` scope may send it
  (403 otherwise), and only on reads, GET or HEAD. On a write it is a 400 whoever sends
  it: no scope makes a write act outside the token's tenant.
- otherwise the token's claim names the tenant;
- a token without the claim acts in `default` under `TENANCY=optional` (the default),
  and is refused (401) under `TENANCY=required`, except a `tenants:admin` token, which
  acts in `default` unless it asks for another tenant with `?tenant=`.

Pure: no database, no I/O. The database does not isolate tenants yet; this only decides
which tenant a request names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Literal

from ledger import errors

if TYPE_CHECKING:
    from ledger import auth

DEFAULT: Final = "default"
ADMIN_SCOPE: Final = "tenants:admin"
PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
Mode = Literal["optional", "required"]
MODES: Final[tuple[Mode, ...]] = ("optional", "required")
READS: Final = frozenset({"GET", "HEAD"})
PARAMETER: Final = "tenant"  # the query parameter naming another tenant


def checked(value: object) -> str:
    """`value` if it is a tenant id, else InvalidTenant."""
    # fullmatch: `$` alone would also accept a trailing newline.
    if not isinstance(value, str) or PATTERN.fullmatch(value) is None:
        raise errors.InvalidTenant(value)
    return value


def resolve(
    principal: auth.Principal,
    requested: str | None,
    *,
    mode: Mode,
    method: str,
    claim: str = "tenant",
) -> str:
    """The tenant a request of `principal` acts in (`requested`: its `?tenant=`, if any;
    `claim`: the claim's name, for the 401's detail)."""
    if requested is not None:
        if method.upper() not in READS:
            raise errors.TenantParameterOnWrite(method.upper())
        if not principal.allows(ADMIN_SCOPE):
            raise errors.Forbidden(ADMIN_SCOPE)
        return checked(requested)
    if principal.tenant is not None:
        return principal.tenant
    if mode == "optional" or principal.allows(ADMIN_SCOPE):
        return DEFAULT
    raise errors.TenantRequired(claim)
