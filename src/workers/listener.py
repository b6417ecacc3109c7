"""The pool's wake-ups: one dedicated LISTEN connection that reconnects when it drops.

NOTIFY is only a doorbell (DESIGN.md): `ledger_jobs` rings with `tenant:<id>` when
new jobs of that tenant are runnable (once per tenant per committing transaction,
sql/0084; the reserve's claim then looks at that tenant alone), with
`key:["<tenant>","<queue>","<key>"]` when they are a concurrency key's in a
round-robin queue (sql/0087; the reserve's claim looks at that key), with an empty payload
when other work became runnable (a retry due, a queue resumed), with `room` when a
job left `processing` in a restricted queue (sql/0079), `ledger_cancel`
with the id of a running job that was cancelled. The connection may use its own
DSN (LISTEN_DATABASE_URL), so the rest of the pool can sit behind a
transaction-pooling PgBouncer, which breaks LISTEN. A notification lost while
the connection is down only delays work: on every (re)connect the pool is woken
to catch up, and the pool polls slowly anyway. The connection itself is
`ledger.notifications.Listener`'s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Final

import msgspec

from ledger import notifications
from workers import claims

log = logging.getLogger(__name__)

JOBS_CHANNEL: Final = "ledger_jobs"
ROOM_PAYLOAD: Final = "room"
TENANT_PREFIX: Final = "tenant:"  # new runnable jobs of this tenant (sql/0084)
KEY_PREFIX: Final = "key:"  # ... of this concurrency key of a round-robin queue (sql/0087)
WEBHOOKS_CHANNEL: Final = "ledger_webhooks"  # deliveries were created (sql/0080)
CANCEL_CHANNEL: Final = "ledger_cancel"
APPLICATION_NAME: Final = "job-ledger-listener"


class Listener(notifications.Listener):
    """Keeps one LISTEN connection open and turns notifications into calls.

    `on_wake()` runs for every `ledger_jobs` notification and after every
    (re)connect, except those saying room was freed in a restricted queue, which
    run `on_room()` (default: `on_wake`), and those naming the tenant with new
    runnable jobs, which run `on_tenant(tenant)` when given, and those naming a concurrency
    key, which run `on_key(key)` when given (else `on_tenant` with its tenant, else
    `on_wake`); `on_cancel(job_id)` for every
    `ledger_cancel` notification; `on_webhook()` for every `ledger_webhooks` one and
    after every (re)connect. All run on the event loop and must not block.
    """

    def __init__(
        self,
        dsn: str,
        *,
        on_wake: Callable[[], None],
        on_cancel: Callable[[uuid.UUID], None],
        on_room: Callable[[], None] | None = None,
        on_tenant: Callable[[str], None] | None = None,
        on_key: Callable[[claims.QuietKey], None] | None = None,
        on_webhook: Callable[[], None] | None = None,
        check_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._on_cancel = on_cancel
        room = on_room or on_wake

        def jobs(payload: str) -> None:
            if payload == ROOM_PAYLOAD:
                room()
            elif on_tenant is not None and payload.startswith(TENANT_PREFIX):
                on_tenant(payload.removeprefix(TENANT_PREFIX))
            elif payload.startswith(KEY_PREFIX):
                key = _key(payload.removeprefix(KEY_PREFIX))
                if key is not None and on_key is not None:
                    on_key(key)
                elif key is not None and on_tenant is not None:
                    on_tenant(key.tenant)
                else:
                    on_wake()
            else:
                on_wake()

        channels: dict[str, Callable[[str], None]] = {
            JOBS_CHANNEL: jobs,
            CANCEL_CHANNEL: self._cancel,
        }
        if on_webhook is not None:
            channels[WEBHOOKS_CHANNEL] = lambda _payload: on_webhook()

        def connected() -> None:
            on_wake()
            if on_webhook is not None:
                on_webhook()

        super().__init__(
            dsn,
            channels,
            on_connect=connected,
            application_name=APPLICATION_NAME,
            check_seconds=check_seconds,
            max_backoff_seconds=max_backoff_seconds,
        )

    def _cancel(self, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            log.warning("ignoring %s notification with payload %r", CANCEL_CHANNEL, payload)
            return
        self._on_cancel(job_id)


def _key(text: str) -> claims.QuietKey | None:
    """The key a `key:` payload names, or None (logged) if it names none."""
    try:
        tenant, queue, key = msgspec.json.decode(text, type=tuple[str, str, str])
    except msgspec.DecodeError:
        log.warning("ignoring the key in %s notification %r", JOBS_CHANNEL, text)
        return None
    return claims.QuietKey(tenant, queue, key)
