"""The global feed, live: NOTIFY wake-ups fanned out to every reader in this process.

One LISTEN connection per process (`Wakeups`) hears `ledger_feed`, which the
database rings once per INSERT statement into `events` (sql/0055), and sets the
wake-up event of every subscriber; each subscriber (`follow`) then reads the feed
from its own cursor with `feed.read`. The notification is only a doorbell: what a
reader sees comes from the feed, read only below the snapshot's xmin (DESIGN.md
invariant 5), so a wake-up can never make a reader skip or repeat an event.

Why a wake-up can find nothing, and why that cannot leave an event waiting:
PostgreSQL delivers a NOTIFY after its transaction committed (and became visible),
but an older transaction still open anywhere on the cluster holds the snapshot's
xmin below the new events, and the feed does not return them until it ends. That
transaction may never notify (it may write no event), so the reader cannot wait
for another wake-up. `feed.read` says so (`Page.held_back`, from the same
snapshot as the page: committed events exist at or above its horizon), and while it
does the reader reads again after a short delay that doubles from 10 ms up to
the outage poll (0.5 s). Any wake-up also ends a wait at once. The event is
cleared before each read, so a notification that lands during a read is not lost.

The database notifies only while some process has readers (the gate, see
`Wakeups`): a reader that arrives may have missed the NOTIFY of an append whose
trigger ran just before, so it also re-reads that way until its horizon passes the
moment the gate opened.

Polling remains only as a fallback: every `poll_seconds` (FEED_POLL_SECONDS, 5 s)
while the listener is connected, every `outage_poll_seconds` (0.5 s, the rate of
the feed before wake-ups) while it is not; on every (re)connect every subscriber is
woken to catch up on what was committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Final

import asyncpg

from ledger import notifications, sqlfile, store
from projections import feed

Q = sqlfile.load("projections")

log = logging.getLogger(__name__)

FEED_CHANNEL: Final = "ledger_feed"
APPLICATION_NAME: Final = "job-ledger-feed-listener"
POLL_SECONDS: Final = 5.0
OUTAGE_POLL_SECONDS: Final = 0.5
HELD_BACK_FIRST_SECONDS: Final = 0.01
# A busy ledger rings continuously: one reader reads at most every 10 ms, and the
# wake-ups in between fold into that read (a pooled connection is not taken per commit).
MIN_READ_SECONDS: Final = 0.01


class Wakeups:
    """The process's one `ledger_feed` listener and the wake-up event of each subscriber.

    Memory is one `asyncio.Event` per open subscription, removed when it closes;
    ringing sets them all (setting a set event costs nothing and queues nothing).

    The gate: appends notify only while some session holds the feed's advisory lock in
    share mode (sql/0055), so with no reader anywhere the workers' transactions pay
    nothing for the feed. The listener's session takes it when the first subscriber
    comes and lets it go when the last one leaves (or the connection drops). An
    append whose trigger ran before the lock was taken has a transaction id below
    `gate_opened_at` and may commit without a NOTIFY after a reader's first read: a
    reader counts as held back until its horizon passes that id (see `follow`).
    """

    def __init__(
        self,
        listen_dsn: str,
        *,
        poll_seconds: float = POLL_SECONDS,
        outage_poll_seconds: float = OUTAGE_POLL_SECONDS,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.outage_poll_seconds = outage_poll_seconds
        self._subscribers: set[asyncio.Event] = set()
        self.gate_opened_at: int | None = None  # a txid while this session holds the gate
        self._gate_conn: asyncpg.Connection | None = None
        self.listener = notifications.Listener(
            listen_dsn,
            {FEED_CHANNEL: lambda _payload: self.ring()},
            on_connect=self.ring,
            on_disconnect=self._lost,  # readers then wait with the outage poll's timeout
            session=self._sync_gate,
            application_name=APPLICATION_NAME,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Listening with the gate open: every append from now on wakes the readers."""
        return self.gate_opened_at is not None and self.listener.connected.is_set()

    def behind_gate(self, cursor: feed.Cursor) -> bool:
        """A reader at `cursor` (after a short page) may still miss an append that
        skipped its NOTIFY before the gate opened: it must read again soon."""
        opened = self.gate_opened_at
        return opened is not None and cursor.txid + 1 < opened

    async def _sync_gate(self, conn: asyncpg.Connection) -> None:
        """On the listening connection: hold the gate while there are subscribers."""
        if conn is not self._gate_conn:  # a new connection holds no lock yet
            self.gate_opened_at, self._gate_conn = None, None
        if self._subscribers and self.gate_opened_at is None:
            await conn.execute(Q["feed_gate_open"])
            self.gate_opened_at = await conn.fetchval(Q["feed_gate_opened_at"])
            self._gate_conn = conn
            self.ring()
        elif not self._subscribers and self.gate_opened_at is not None:
            self.gate_opened_at, self._gate_conn = None, None
            await conn.execute(Q["feed_gate_close"])

    def _lost(self) -> None:
        self.gate_opened_at, self._gate_conn = None, None  # the session's lock went with it
        self.ring()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def fallback_seconds(self) -> float:
        """How long a reader with nothing to read waits when no wake-up comes."""
        return self.poll_seconds if self.listening else self.outage_poll_seconds

    def ring(self) -> None:
        """Wake every subscriber."""
        for wake in self._subscribers:
            wake.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Event]:
        """A wake-up event of its own, set by every ring until the block exits."""
        wake = asyncio.Event()
        self._subscribers.add(wake)
        if len(self._subscribers) == 1:
            self.listener.poke()  # open the gate
        try:
            yield wake
        finally:
            self._subscribers.discard(wake)
            if not self._subscribers:
                self.listener.poke()  # close it

    def start(self) -> None:
        """Listen in the background (reconnecting with backoff) until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self.listener.run(), name="ledger-feed-listener")

    async def stop(self) -> None:
        self.listener.stop()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                log.warning("the feed listener did not stop within 10 s; cancelled")


async def follow(
    connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    wakeups: Wakeups,
    start: feed.Cursor,
    filters: feed.Filters = feed.NO_FILTERS,
    *,
    limit: int = 500,
    heartbeat_seconds: float = 15.0,
) -> AsyncGenerator[list[store.Recorded], None]:
    """The events after `start` as they commit, page by page; `[]` after each quiet spell.

    Each page continues the last one's cursor (none skipped, none twice, invariant
    5). An empty list goes out when nothing was sent for `heartbeat_seconds`.
    `connect()` lends a connection for one read.
    """
    loop = asyncio.get_running_loop()
    cursor = start
    quiet_since = loop.time()
    held_back_wait = 0.0
    with wakeups.subscribe() as wake:
        while True:
            wake.clear()  # from here on, a ring makes the wait below return at once
            read_at = loop.time()
            async with connect() as conn:
                page = await feed.read(conn, cursor, limit, filters)
            cursor = page.cursor
            if page.events:
                quiet_since = loop.time()
                yield page.events
            if page.more:
                continue  # a full page, or a filtered scan that stopped at its bound
            if page.held_back or wakeups.behind_gate(page.cursor):  # a short page here
                held_back_wait = min(
                    wakeups.outage_poll_seconds, 2 * held_back_wait or HELD_BACK_FIRST_SECONDS
                )
                timeout = held_back_wait
            else:
                held_back_wait = 0.0
                timeout = wakeups.fallback_seconds()
            heartbeat_in = quiet_since + heartbeat_seconds - loop.time()
            if heartbeat_in <= 0:
                quiet_since = loop.time()
                heartbeat_in = heartbeat_seconds
                yield []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(timeout, heartbeat_in))
            too_soon = read_at + MIN_READ_SECONDS - loop.time()
            if too_soon > 0:
                await asyncio.sleep(too_soon)
