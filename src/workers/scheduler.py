"""The component that fires schedules' slots, run by `ledger serve`, `ledger api` and
`ledger worker` alike: any number may run, and any may die.

It decides nothing alone: each round lists every tenant's due schedules through
`schedules_due` (sql/0073; the process acts in no tenant) and records each one's due
slots in a transaction acting in the schedule's tenant (`ledger.schedules`). Two
processes recording the same slot append the same version of its stream: one wins,
the other's transaction (its job too) rolls back, and it moves on.

APScheduler is only the alarm clock, set for the earliest next slot across schedules;
a NOTIFY on `ledger_schedules` (a schedule changed) and a slow poll wake it too, and
a round also runs when a process starts, so slots due while every process was down
are recorded then (fired late within the catch-up window, or skipped saying so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final

import asyncpg

from ledger import db, errors, notifications, schedules, sqlfile
from workers import retry

log = logging.getLogger(__name__)
Q = sqlfile.load("ledger")

CHANNEL: Final = "ledger_schedules"
APPLICATION_NAME: Final = "job-ledger-scheduler"
MAX_DUE: Final = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Records due slots of every tenant's schedules until stopped."""

    def __init__(
        self,
        dsn: str,
        *,
        listen_dsn: str | None = None,
        schedules_: schedules.Schedules | None = None,
        clock: Callable[[], datetime] = utc_now,
        poll_seconds: float = 1.0,
        on_recorded: Callable[[list[object]], None] = lambda _events: None,
    ) -> None:
        self.dsn = dsn
        self.listen_dsn = listen_dsn or dsn
        self.schedules = schedules_ or schedules.Schedules()
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._alarm = retry.RetryClock(self._wake.set)
        self.rounds = 0
        # The schedules whose due slots could not be recorded, by the next slot that failed
        # (an error is logged once per slot, not once per round; /metrics counts them).
        self.failing: dict[tuple[str, str], datetime] = {}

    def request_stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def tick(self, conn: asyncpg.Connection, now: datetime | None = None) -> int:
        """One round at `now` (the clock's): record every due slot; how many events."""
        now = now or self.clock()
        recorded = 0
        due = await conn.fetch(Q["schedules_due"], now, MAX_DUE)
        for row in due:
            key = (row["tenant"], row["schedule_id"])
            try:
                events = await self.schedules.record_due(conn, *key, now)
            except (errors.VersionConflict, errors.IdempotencyKeyTaken):
                # Another process recorded these slots first: the ledger has them once.
                log.debug("schedule %s recorded by another process", row["schedule_id"])
                continue
            except asyncpg.PostgresConnectionError:
                raise  # the round fails (run() tries again), not this schedule
            except (errors.LedgerError, asyncpg.PostgresError):
                # Its slot's job cannot be submitted (a job type this process does not
                # know, a tenant over its quota, ...): nothing of it was stored, it is
                # tried again next round, and the other schedules (every tenant's) go on.
                self._failed(key, row["next_slot"])
                continue
            self.failing.pop(key, None)
            recorded += len(events)
        if len(due) < MAX_DUE:  # every due schedule was looked at: one not due fails no more
            seen = {(row["tenant"], row["schedule_id"]) for row in due}
            self.failing = {k: v for k, v in self.failing.items() if k in seen}
        self.rounds += 1
        return recorded

    def _failed(self, key: tuple[str, str], next_slot: datetime | None) -> None:
        if next_slot is not None and self.failing.get(key) == next_slot:
            log.debug("schedule %s of tenant %s still fails", key[1], key[0], exc_info=True)
            return
        if next_slot is not None:
            self.failing[key] = next_slot
        log.error(
            "schedule %s of tenant %s: its due slots (from %s) could not be recorded;"
            " trying again each round",
            key[1],
            key[0],
            next_slot,
            exc_info=True,
        )

    async def run(self) -> None:
        """Rounds until `request_stop`: at start, at each alarm, notification and poll."""
        listener = notifications.Listener(
            self.listen_dsn,
            {CHANNEL: lambda _payload: self._wake.set()},
            on_connect=self._wake.set,
            application_name=APPLICATION_NAME,
        )
        listening = asyncio.create_task(listener.run(), name="ledger-scheduler-listener")
        self._alarm.start()
        try:
            async with _connection(self.dsn) as conn:
                while not self._stopped.is_set():
                    self._wake.clear()
                    try:
                        await self.tick(conn)
                        next_slot = await conn.fetchval(Q["schedules_next_slot"])
                    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                        log.warning("scheduler round failed; trying again", exc_info=True)
                        next_slot = None
                    if next_slot is not None and next_slot > self.clock():
                        self._alarm.wake_at(next_slot)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        finally:
            self._alarm.shutdown()
            listener.stop()
            await listening


@contextlib.asynccontextmanager
async def _connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with db.connect(dsn, name=APPLICATION_NAME) as conn:
        yield conn


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """`scheduler` running in the background while inside; stopped (and awaited) on exit."""
    task = asyncio.create_task(scheduler.run(), name="ledger-scheduler")
    try:
        yield scheduler
    finally:
        scheduler.request_stop()
        await task
