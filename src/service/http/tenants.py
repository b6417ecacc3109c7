"""The tenants API under /api/v1/tenants: list tenants' settings, read one, change one.

For operators: every route needs the `tenants:admin` scope (`admin` does not grant it).
Settings change only by events (`ledger.tenants`: tenant.configured.v1, appended in the
tenant named in the path, so that tenant's auditor sees it), whose actor is the token's
subject. A tenant never configured answers its defaults with version 0 (no limits,
weight 1), like a queue never configured.
"""

from __future__ import annotations

from typing import Annotated, Final

from litestar import Controller, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter

from ledger import errors, tenancy, tenants, wire
from ledger.auth import Principal
from service.http import problems, security
from service.http.services import Services, services_of_any_tenant

PREFIX: Final = "/api/v1/tenants"
TenantId = Annotated[str, PathParameter(description=errors.InvalidTenant.RULE)]

CLOSED_REQUESTS: Final = (wire.TenantSettings,)


def _tenant(value: str) -> str:
    """The path's tenant id, or a 400 naming it."""
    try:
        return tenancy.checked(value)
    except errors.InvalidTenant as exc:
        raise problems.InvalidParameter(
            str(exc), [errors.FieldError(path="tenant", message=str(exc))]
        ) from None


class TenantsController(Controller):
    path = PREFIX
    tags = ["tenants"]  # noqa: RUF012 - Litestar reads these as class attributes
    dependencies = {  # noqa: RUF012
        "services": Provide(services_of_any_tenant, sync_to_thread=False),
        "principal": Provide(security.principal_of, sync_to_thread=False),
    }

    @get(
        "/",
        opt=security.scope(tenancy.ADMIN_SCOPE),
        responses=problems.responses(401, 403),
        summary="Every configured tenant's settings",
        description="`max_queued` (enforced at submission), `max_running` and `weight` "
        "(recorded, not yet enforced by the claim), by tenant id.",
    )
    async def list_tenants(self, services: NamedDependency[Services]) -> wire.TenantList:
        async with services.connection() as conn:
            found = await tenants.all_tenants(conn)
        return wire.TenantList(tenants=[t.shown() for t in found])

    @get(
        "/{tenant:str}",
        opt=security.scope(tenancy.ADMIN_SCOPE),
        responses=problems.responses(400, 401, 403),
        summary="A tenant's settings (version 0 and the defaults: never configured)",
    )
    async def read(self, tenant: TenantId, services: NamedDependency[Services]) -> wire.TenantOut:
        async with services.connection() as conn:
            state = await tenants.get(conn, _tenant(tenant))
        return state.shown()

    @put(
        "/{tenant:str}",
        opt=security.scope(tenancy.ADMIN_SCOPE),
        responses=problems.responses(400, 401, 403, 409, 413, 415, 422),
        summary="Change a tenant's settings",
        description="Any of `max_queued` (queued jobs at most: pending, also scheduled for "
        "later, and retrying; a submission past it answers 429), `max_running` and "
        "`weight` (recorded only: the claim does not enforce them yet); a field left out "
        "keeps its value, `null` clears a limit. Recorded as a tenant.configured.v1 event "
        "in that tenant (none when nothing changes); answers the settings with their "
        "`version`. A concurrent change answers 409.",
    )
    async def configure(
        self,
        tenant: TenantId,
        data: JSONBody[wire.TenantSettings],
        services: NamedDependency[Services],
        principal: NamedDependency[Principal],
    ) -> wire.TenantOut:
        async with services.connection() as conn:
            state = await services.submitter.configure_tenant(
                conn, _tenant(tenant), data.changes(), actor=principal.subject
            )
        return state.shown()
