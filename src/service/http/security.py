"""Bearer authentication for every /api/v1 route: a guard that verifies the token and the route's scope.

Each route declares the scope it needs in its `opt` (`opt={"scope": "jobs:read"}`);
a route that declares none is refused outright, so forgetting one cannot open it.
The verified principal is kept on the request's state for the route to read:
its subject is the actor of every event the request causes. So is the tenant the
request acts in (`tenant_of`), resolved from the token's tenant claim, the request's
`?tenant=` and TENANCY by `ledger.tenancy.resolve` (no route filters by it yet).
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityScheme

from ledger import auth, errors, tenancy

SCHEME: Final = "bearer"
SECURITY: Final[list[dict[str, list[str]]]] = [{SCHEME: []}]
COMPONENTS: Final = Components(
    security_schemes={
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="A JWT whose space-separated `scope` claim holds the scopes "
            "jobs:write, jobs:read, jobs:cancel, audit:read, admin (every one but tenants:admin) "
            "or tenants:admin (reads may name another tenant with `?tenant=`); its tenant "
            "claim (`tenant`, or JWT_TENANT_CLAIM) names the token's tenant",
        )
    }
)


def scope(name: str) -> dict[str, str]:
    """A route's `opt`: the scope its caller needs."""
    if name not in auth.SCOPES:
        raise ValueError(f"unknown scope {name!r}")
    return {"scope": name}


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: 401 without a valid token, 403 when it lacks the route's scope; then the
    tenant the request acts in (401, 403 or 400 as `tenancy.resolve` says)."""
    needed = handler.opt.get("scope")
    if not isinstance(needed, str):
        raise errors.Forbidden("<undeclared>")
    verifier: auth.TokenVerifier = connection.app.state.auth
    principal = verifier.verify(connection.headers.get("authorization"))
    principal.require(needed)
    requested: list[str] = connection.query_params.getall(tenancy.PARAMETER, [])
    mode: tenancy.Mode = connection.app.state.tenancy
    tenant = tenancy.resolve(
        principal,
        requested[0] if requested else None,
        mode=mode,
        method=connection.method if isinstance(connection, Request) else "GET",
        claim=verifier.config.tenant_claim,
    )
    if len(set(requested)) > 1:
        raise errors.InvalidTenant(requested)
    connection.state.principal = principal
    connection.state.tenant = tenant


def principal_of(request: Request[Any, Any, Any]) -> auth.Principal:
    """The caller the guard verified."""
    principal: auth.Principal = request.state.principal
    return principal


def tenant_of(request: Request[Any, Any, Any]) -> str:
    """The tenant the guard resolved for this request."""
    tenant: str = request.state.tenant
    return tenant
