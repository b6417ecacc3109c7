"""The app leaves logging to ledger.logs: Litestar installs no handler or format of its own."""

from __future__ import annotations

import logging

import httpx


def _foreign_handlers() -> list[logging.Handler]:
    seen = [*logging.getLogger().handlers, *logging.getLogger("litestar").handlers]
    return [h for h in seen if type(h).__module__.split(".")[0] not in ("ledger", "_pytest")]


async def test_a_running_app_adds_no_log_handlers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert _foreign_handlers() == []
