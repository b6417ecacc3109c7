"""Bearer authentication for every /api/v1 route: a guard that verifies the token and the route's scope.

Each route declares the scope it needs in its `opt` (`opt={"scope": "jobs:read"}`);
a route that declares none is refused outright, so forgetting one cannot open it.
The verified principal is kept on the request's state for the route to read:
its subject is the actor of every event the request causes.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityScheme

from ledger import auth, errors

SCHEME: Final = "bearer"
SECURITY: Final[list[dict[str, list[str]]]] = [{SCHEME: []}]
COMPONENTS: Final = Components(
    security_schemes={
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="A JWT whose space-separated `scope` claim holds the scopes "
            "jobs:write, jobs:read, jobs:cancel, audit:read or admin",
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
    """Guard: 401 without a valid token, 403 when it lacks the route's scope."""
    needed = handler.opt.get("scope")
    if not isinstance(needed, str):
        raise errors.Forbidden("<undeclared>")
    verifier: auth.TokenVerifier = connection.app.state.auth
    principal = verifier.verify(connection.headers.get("authorization"))
    principal.require(needed)
    connection.state.principal = principal


def principal_of(request: Request[Any, Any, Any]) -> auth.Principal:
    """The caller the guard verified."""
    principal: auth.Principal = request.state.principal
    return principal
