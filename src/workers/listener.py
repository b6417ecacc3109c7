"""The pool's wake-ups: one dedicated LISTEN connection that reconnects when it drops.

NOTIFY is only a doorbell (DESIGN.md): `ledger_jobs` rings with an empty payload
when runnable work appears (once per committing transaction), `ledger_cancel`
with the id of a running job that was cancelled. The connection may use its own
DSN (LISTEN_DATABASE_URL), so the rest of the pool can sit behind a
transaction-pooling PgBouncer, which breaks LISTEN. A notification lost while
the connection is down only delays work: on every (re)connect the pool is woken
to catch up, and the pool polls slowly anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from typing import Any, Final

import asyncpg

log = logging.getLogger(__name__)

JOBS_CHANNEL: Final = "ledger_jobs"
CANCEL_CHANNEL: Final = "ledger_cancel"
APPLICATION_NAME: Final = "job-ledger-listener"


class Listener:
    """Keeps one LISTEN connection open and turns notifications into calls.

    `on_wake()` runs for every `ledger_jobs` notification and after every
    (re)connect; `on_cancel(job_id)` for every `ledger_cancel` notification.
    Both run on the event loop and must not block.
    """

    def __init__(
        self,
        dsn: str,
        *,
        on_wake: Callable[[], None],
        on_cancel: Callable[[uuid.UUID], None],
        check_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._on_wake = on_wake
        self._on_cancel = on_cancel
        self._check_seconds = check_seconds
        self._max_backoff = max_backoff_seconds
        self._stopped = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it has connected, for the curious

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        """Listen until stopped, reconnecting with a short, jittered backoff."""
        failures = 0
        while not self._stopped.is_set():
            try:
                await self._listen_once()
                failures = 0
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                failures += 1
                log.warning("listener connection failed (%s); reconnecting", exc)
            if self._stopped.is_set():
                return
            delay = min(self._max_backoff, 0.05 * 2 ** min(failures, 10)) * random.uniform(0.5, 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=delay)

    async def _listen_once(self) -> None:
        """One connection's life: listen, wake the pool, and watch the connection until it drops."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": APPLICATION_NAME, "timezone": "UTC"},
            timeout=10,
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(JOBS_CHANNEL, self._jobs)
            await conn.add_listener(CANCEL_CHANNEL, self._cancel)
            self.connections += 1
            self.connected.set()
            log.info("listening on %s and %s", JOBS_CHANNEL, CANCEL_CHANNEL)
            self._on_wake()  # whatever was notified while we were away
            while not self._stopped.is_set() and not lost.is_set():
                stop = asyncio.ensure_future(self._stopped.wait())
                drop = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait(
                        {stop, drop}, timeout=self._check_seconds, return_when="FIRST_COMPLETED"
                    )
                finally:
                    stop.cancel()
                    drop.cancel()
                if not self._stopped.is_set() and not lost.is_set():
                    # A half-open TCP connection says nothing: ask it something.
                    await conn.fetchval("SELECT 1", timeout=self._check_seconds)
            if lost.is_set() and not self._stopped.is_set():
                log.warning("listener connection lost; reconnecting")
        finally:
            self.connected.clear()
            if not conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await conn.close(timeout=2)

    def _jobs(self, _conn: Any, _pid: int, _channel: str, _payload: object) -> None:
        self._on_wake()

    def _cancel(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            job_id = uuid.UUID(str(payload))
        except ValueError:
            log.warning("ignoring %s notification with payload %r", CANCEL_CHANNEL, payload)
            return
        self._on_cancel(job_id)
