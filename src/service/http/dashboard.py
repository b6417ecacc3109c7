"""The dashboard at /ui (static HTML, CSS and JavaScript, no build step) and its overview route.

The page itself is public (it holds no data); everything it shows comes from the
authenticated API with the token the person pastes. `GET /api/v1/stats` (scope
jobs:read) gives it the counts by status and queue and the last hour's throughput,
and the tenant the server resolved for the token (the page shows it in its header;
it does not decode it from the token, whose claim name is configurable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from projections import stats
from service.http import security
from service.http.services import services_of

UI_DIR: Final = Path(__file__).parent / "ui"
# The page loads only its own script and stylesheet and talks only to this server.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@get("/ui", include_in_schema=False, media_type="text/html")
async def page() -> Response[bytes]:
    return Response((UI_DIR / "index.html").read_bytes(), media_type="text/html", headers=HEADERS)


def _asset_headers(response: Response[Any]) -> Response[Any]:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


assets = create_static_files_router(
    path="/ui/static",
    directories=[UI_DIR],
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
    after_request=_asset_headers,
)


class Stats(stats.Overview, frozen=True, kw_only=True):
    """The overview and the tenant the request acts in."""

    tenant: str


@get(
    "/api/v1/stats",
    opt=security.scope("jobs:read"),
    tags=["operations"],
    summary="Jobs by status and queue, and throughput per minute over the last hour",
)
async def overview(request: Request[Any, Any, Any]) -> Stats:
    services = services_of(request)
    async with services.reading() as conn:
        counted = await stats.overview(conn, services.store.clock())
    return Stats(tenant=security.tenant_of(request), **msgspec.structs.asdict(counted))
