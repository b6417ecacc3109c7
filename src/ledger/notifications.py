"""One dedicated LISTEN connection per use that reconnects when it drops.

NOTIFY is only a doorbell (DESIGN.md): a channel rings, the listener calls the
channel's callback with the payload (empty, or at most a job id), and whoever
listens goes to read the database. A notification lost while the connection is
down can only delay a reader, never mislead it: `on_connect` runs after every
(re)connect so that readers catch up, and readers keep a slow poll as a fallback.

The worker pool (`workers.listener`) and the API's live feed (`projections.live`)
each hold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# What a dropped or unreachable LISTEN connection raises; the listener reconnects.
_LOST: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    TimeoutError,
)


class Listener:
    """Keeps one LISTEN connection open and turns notifications into calls.

    `channels[name](payload)` runs for every notification on `name`,
    `on_connect()` after every (re)connect and `on_disconnect()` when a listening
    connection ends. All run on the event loop and must not block. `connected` is
    set while the connection listens. `session(conn)`, if given, runs on the
    listening connection after each connect (before `on_connect`) and after each
    `poke()`, one at a time: for session state kept beside the LISTEN.
    """

    def __init__(
        self,
        dsn: str,
        channels: Mapping[str, Callable[[str], None]],
        *,
        on_connect: Callable[[], None],
        on_disconnect: Callable[[], None] = lambda: None,
        session: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
        application_name: str,
        check_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channels = dict(channels)
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._session = session
        self._poked = asyncio.Event()
        self._application_name = application_name
        self._check_seconds = check_seconds
        self._max_backoff = max_backoff_seconds
        self._stopped = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it has connected, for the curious

    def stop(self) -> None:
        self._stopped.set()

    def poke(self) -> None:
        """Run `session(conn)` again soon (at once if connected, else on the next connect)."""
        self._poked.set()

    async def run(self) -> None:
        """Listen until stopped, reconnecting with a short, jittered backoff."""
        failures = 0
        while not self._stopped.is_set():
            try:
                await self._listen_once()
                failures = 0
            except _LOST as exc:
                failures += 1
                log.warning("listener connection failed (%s); reconnecting", exc)
            if self._stopped.is_set():
                return
            delay = min(self._max_backoff, 0.05 * 2 ** min(failures, 10)) * random.uniform(0.5, 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=delay)

    async def _listen_once(self) -> None:
        """One connection's life: listen, call `on_connect`, watch the connection until it drops."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": self._application_name, "timezone": "UTC"},
            timeout=10,
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            for channel in self._channels:
                await conn.add_listener(channel, self._notified)
            self._poked.clear()
            if self._session is not None:
                await self._session(conn)
            self.connections += 1
            self.connected.set()
            log.info("listening on %s", " and ".join(self._channels))
            self._on_connect()  # whatever was notified while we were away
            while not self._stopped.is_set() and not lost.is_set():
                stop = asyncio.ensure_future(self._stopped.wait())
                drop = asyncio.ensure_future(lost.wait())
                poke = asyncio.ensure_future(self._poked.wait())
                try:
                    await asyncio.wait(
                        {stop, drop, poke},
                        timeout=self._check_seconds,
                        return_when="FIRST_COMPLETED",
                    )
                finally:
                    stop.cancel()
                    drop.cancel()
                    poke.cancel()
                if self._stopped.is_set() or lost.is_set():
                    break
                if self._poked.is_set():
                    self._poked.clear()
                    if self._session is not None:
                        await self._session(conn)
                else:
                    # A half-open TCP connection says nothing: ask it something.
                    await conn.fetchval("SELECT 1", timeout=self._check_seconds)
            if lost.is_set() and not self._stopped.is_set():
                log.warning("listener connection lost; reconnecting")
        finally:
            if self.connected.is_set():
                self.connected.clear()
                self._on_disconnect()
            if not conn.is_closed():
                with contextlib.suppress(*_LOST):
                    await conn.close(timeout=2)

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        self._channels[channel](str(payload))
