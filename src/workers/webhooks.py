"""The webhook sender: a task in each worker process, beside the job slots (not in them).

It claims due deliveries of every tenant through `webhook_deliveries_claim` (sql/0080,
a ledger_dispatch function: workers act in no tenant) with a lease, sends each one
signed per the Standard Webhooks specification, and records the attempt as a
`webhook.delivery_attempted.v1` event on the delivery's stream, acting in its tenant.
NOTIFY `ledger_webhooks` (rung by the append that created deliveries) wakes it; a
clock set to the next due delivery and a slow poll do too.

- Headers `webhook-id` (the delivery's, the same on every attempt), `webhook-timestamp`
  (this attempt's Unix seconds) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}">` for every secret that signs now (two during a rotation).
  The body is the one the append serialised, byte for byte, on every attempt.
- Only 2xx delivers. 410 disables the endpoint. Anything else, or no answer, is
  retried per `SCHEDULE` (with ±20 % jitter), or at the `Retry-After` the receiver
  gave with a 429 or 503; after the last, the delivery is exhausted and its endpoint
  disabled (an event each, on the endpoint's stream).
- Server-side request forgery: the image downloads' guard (`fetch.refusal`): every
  address the host resolves to must be public unless in WEBHOOK_ALLOWED_NETWORKS; the
  connection goes to the checked address; redirects are not followed; connect and
  total timeouts; the answer's body is read up to `MAX_RESPONSE_BYTES` and stored cut.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import httpx
import msgspec

from ledger import acting, db, errors, metrics, sqlfile, store, webhooks
from ledger import events as ev
from workers.handlers import fetch

Q = sqlfile.load("workers")
log = logging.getLogger(__name__)

CHANNEL: Final = "ledger_webhooks"
# Seconds before each attempt after the first (which goes at once): about a day in all.
SCHEDULE: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
JITTER: Final = 0.2
MAX_RESPONSE_BYTES: Final = 2048
MAX_RETRY_AFTER_SECONDS: Final = 86400.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SenderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How a worker process sends webhooks (WEBHOOK_* in ledger.config)."""

    allowed_networks: tuple[Network, ...] = ()
    secret: str | None = None  # WEBHOOK_SECRET: signs jobs' own webhooks
    timeout_seconds: float = 15.0
    connect_timeout_seconds: float = 5.0
    schedule: tuple[float, ...] = SCHEDULE
    concurrency: int = 20
    lease_seconds: float = 60.0
    poll_seconds: float = 10.0
    enabled: bool = True


class Refused(Exception):
    """The URL may not be sent to (scheme, host or address)."""


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery leased to this sender, with what sending it needs."""

    delivery_id: uuid.UUID
    tenant: str
    endpoint_id: uuid.UUID | None
    url: str
    job_id: uuid.UUID | None
    body: str
    version: int
    attempts: int
    tries: int
    secrets: list[str]


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    status_code: int | None
    error: str | None
    body: str | None
    retry_after: float | None
    seconds: float


def networks(text: str | None) -> tuple[Network, ...]:
    """WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDRs."""
    found: list[Network] = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError as exc:
                raise errors.ConfigError(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from None
    return tuple(found)


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(webhooks.SECRET_PREFIX))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def delay_after(tries: int, schedule: Sequence[float]) -> float | None:
    """Seconds to wait after the `tries`-th failed try (None: the schedule is over)."""
    if tries > len(schedule):
        return None
    base = schedule[tries - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # jitter, not secrecy


async def vet_url(url: str, allowed: Sequence[Network]) -> tuple[httpx.URL, str]:
    """The parsed URL and the address to connect to; Refused when the guard says no."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Refused(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Refused(f"only http and https URLs with a host are sent to, not {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(parsed.host)]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                parsed.host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:
            raise Refused(f"cannot resolve {parsed.host!r}: {exc.strerror}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"{parsed.host!r} resolves to no address")
    for address in addresses:
        reason = fetch.refusal(address)
        plain = (
            address.ipv4_mapped
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
            else address
        )
        if reason is not None and not any(plain in n for n in allowed):
            raise Refused(
                f"refused to send to {parsed.host!r}: {address} is a {reason} address"
                " (WEBHOOK_ALLOWED_NETWORKS can allow it)"
            )
    return parsed, str(addresses[0])


def vetter(allowed: Sequence[Network]) -> webhooks.Vet:
    """The check of an endpoint's URL at registration (a refusal is InvalidInput, 422)."""

    async def vet(url: str) -> None:
        try:
            await vet_url(url, allowed)
        except Refused as exc:
            raise errors.InvalidInput.at("url", str(exc)) from None

    return vet


async def post(
    client: httpx.AsyncClient, claimed: Claimed, secrets: Sequence[str], settings: SenderSettings
) -> Answer:
    """One attempt: the body POSTed, signed, to the vetted address; what came back."""
    started = time.monotonic()
    msg_id = webhooks.webhook_id(claimed.delivery_id)
    body = claimed.body.encode()
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            url, address = await vet_url(claimed.url, settings.allowed_networks)
            stamp = int(time.time())
            headers = {
                "Host": url.netloc.decode("ascii"),
                "Content-Type": "application/json",
                "User-Agent": "job-ledger-webhooks",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(secrets, msg_id, stamp, body),
            }
            extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
            request = client.build_request(
                "POST",
                url.copy_with(host=address),
                headers=headers,
                content=body,
                extensions=extensions,
            )
            response = await client.send(request, stream=True)
            try:
                read = await _read_capped(response)
            finally:
                await response.aclose()
    except Refused:
        raise
    except TimeoutError:
        return Answer(
            status_code=None,
            error=f"no answer within {settings.timeout_seconds:g} s",
            body=None,
            retry_after=None,
            seconds=time.monotonic() - started,
        )
    except httpx.HTTPError as exc:
        return Answer(
            status_code=None,
            error=f"{type(exc).__name__}: {exc}"[:500],
            body=None,
            retry_after=None,
            seconds=time.monotonic() - started,
        )
    status = response.status_code
    retry_after = None
    if status in (429, 503):
        retry_after = _retry_after(response.headers.get("retry-after"))
    return Answer(
        status_code=status,
        error=None if 200 <= status < 300 else f"HTTP {status}",
        body=read,
        retry_after=retry_after,
        seconds=time.monotonic() - started,
    )


async def _read_capped(response: httpx.Response) -> str:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_RESPONSE_BYTES:
            break
    return bytes(body[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace").replace("\x00", "")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max((when.timestamp() - time.time()), 0.0), MAX_RETRY_AFTER_SECONDS)


class Sender:
    """Sends due deliveries until `stop()`; `wake()` when some may be due."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        event_store: store.EventStore,
        settings: SenderSettings,
        *,
        worker_id: str,
        process_metrics: metrics.Metrics,
    ) -> None:
        self._db = pool
        self._store = event_store
        self.settings = settings
        self._worker_id = worker_id
        self._metrics = process_metrics
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self._room = asyncio.Semaphore(settings.concurrency)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until stopped; the attempts under way are awaited (their
        leases cover them if the process dies instead)."""
        limits = httpx.Limits(max_connections=self.settings.concurrency)
        timeout = httpx.Timeout(
            self.settings.timeout_seconds, connect=self.settings.connect_timeout_seconds
        )
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=timeout, limits=limits
        ) as client:
            try:
                while not self._stopping.is_set():
                    self._wake.clear()
                    claimed = await self._claim()
                    for item in claimed:
                        await self._room.acquire()
                        task = asyncio.create_task(self._send(client, item))
                        self._sending.add(task)
                        task.add_done_callback(self._sending.discard)
                    if claimed and len(claimed) == self.settings.concurrency:
                        continue
                    await self._sleep()
            finally:
                if self._sending:
                    await asyncio.gather(*self._sending, return_exceptions=True)

    async def _sleep(self) -> None:
        wait = self.settings.poll_seconds
        with contextlib.suppress(*db.UNREACHABLE):
            async with db.acquire(self._db) as conn:
                due = await conn.fetchval(Q["webhook_deliveries_next_due"])
            if due is not None:
                wait = min(wait, max(float(due), 0.01))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wake.wait()

    async def _claim(self) -> list[Claimed]:
        free = self.settings.concurrency - len(self._sending)
        if free <= 0:
            return []
        try:
            async with db.acquire(self._db) as conn:
                rows = await conn.fetch(
                    Q["webhook_deliveries_claim"],
                    self._worker_id,
                    free,
                    self.settings.lease_seconds,
                )
        except db.UNREACHABLE:
            log.warning("webhook sender: database unreachable; trying again later")
            return []
        return [
            Claimed(
                delivery_id=r["delivery_id"],
                tenant=r["tenant"],
                endpoint_id=r["endpoint_id"],
                url=r["url"],
                job_id=r["job_id"],
                body=r["body"],
                version=r["version"],
                attempts=r["attempts"],
                tries=r["tries"],
                secrets=list(r["secrets"]),
            )
            for r in rows
        ]

    async def _send(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        try:
            await self._attempt(client, claimed)
        except errors.VersionConflict:
            log.info("webhook delivery %s changed while sent; not recorded", claimed.delivery_id)
        except db.UNREACHABLE:
            log.warning(
                "webhook delivery %s: attempt not recorded (database unreachable); "
                "its lease runs out and it is sent again",
                claimed.delivery_id,
            )
        finally:
            self._room.release()

    async def _attempt(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        secrets = claimed.secrets if claimed.endpoint_id else _deployment(self.settings)
        refused: str | None = None
        if not secrets:
            refused = "no secret to sign with (WEBHOOK_SECRET is unset)"
            answer = None
        else:
            try:
                answer = await post(client, claimed, secrets, self.settings)
            except Refused as exc:
                refused = str(exc)
                answer = None
        if answer is None:
            answer = Answer(status_code=None, error=refused, body=None, retry_after=None, seconds=0)
        tries = claimed.tries + 1
        next_at: datetime | None = None
        disable: str | None = None
        if answer.status_code is not None and 200 <= answer.status_code < 300:
            outcome: ev.DeliveryOutcome = "delivered"
        elif refused is not None:
            outcome = "exhausted"
        elif answer.status_code == 410:
            outcome = "disabled"
            disable = "the endpoint answered 410 Gone"
        else:
            wait = delay_after(tries, self.settings.schedule)
            if answer.retry_after is not None and wait is not None:
                wait = answer.retry_after
            if wait is None:
                outcome = "exhausted"
                disable = (
                    f"delivery {claimed.delivery_id} failed for its whole retry schedule "
                    f"({tries} tries; last: {answer.error})"
                )
            else:
                outcome = "retrying"
                next_at = self._store.clock() + timedelta(seconds=wait)
        await self._record(claimed, answer, outcome, next_at, disable)
        self._metrics.webhook_deliveries.labels(outcome).inc()
        self._metrics.webhook_attempt_seconds.observe(answer.seconds)

    async def _record(
        self,
        claimed: Claimed,
        answer: Answer,
        outcome: ev.DeliveryOutcome,
        next_at: datetime | None,
        disable: str | None,
    ) -> None:
        clock = self._store.clock()
        attempted = ev.WebhookDeliveryAttempted(
            job_id=claimed.delivery_id,
            version=claimed.version + 1,
            actor=self._worker_id,
            occurred_at=clock,
            endpoint_id=claimed.endpoint_id,
            about_job=claimed.job_id,
            attempt=claimed.attempts + 1,
            outcome=outcome,
            status_code=answer.status_code,
            duration_ms=round(answer.seconds * 1000, 3),
            error=answer.error,
            response_body=answer.body,
            next_attempt_at=next_at,
        )
        events: list[ev.JobEvent] = [attempted]
        async with db.acquire(self._db) as conn, conn.transaction():
            await acting.act_in(conn, claimed.tenant)
            if disable is not None and claimed.endpoint_id is not None:
                endpoint = await conn.fetchrow(Q["webhook_endpoint_version"], claimed.endpoint_id)
                if endpoint is not None and not endpoint["disabled"]:
                    events.append(
                        ev.WebhookEndpointDisabled(
                            job_id=claimed.endpoint_id,
                            version=endpoint["version"] + 1,
                            actor=self._worker_id,
                            occurred_at=clock,
                            reason=disable,
                            delivery_id=claimed.delivery_id,
                        )
                    )
                    self._metrics.webhook_endpoints_disabled.inc()
            await self._store.append(conn, events)


def _deployment(settings: SenderSettings) -> list[str]:
    return [settings.secret] if settings.secret else []
