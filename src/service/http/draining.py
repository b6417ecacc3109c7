"""Requests in flight at shutdown: a write always runs to its end; reads and event streams stop.

Asked to stop (SIGTERM), uvicorn closes its listening socket, closes idle
connections and waits up to API_SHUTDOWN_GRACE_SECONDS for the requests in
flight; past that it cancels them. Here:

- A request that may write (any method but GET, HEAD and OPTIONS) runs in a task
  of its own that this cancellation does not reach, so an append is never cut
  between its statements and its answer; the app's lifespan waits for these
  tasks (`finished`) before it closes the pool.
- An open response stream (the live event feed) ends cleanly as soon as shutdown
  begins (`begin_shutdown`): its client resumes from its Last-Event-ID elsewhere.
- A read still running when the grace is over answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.http import problems

log = logging.getLogger(__name__)

READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_AFTER_SECONDS: Final = 1


class InFlight(ASGIMiddleware):
    """Shields writes from shutdown's cancellation, and ends reads and streams cleanly."""

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._writes: set[asyncio.Task[None]] = set()
        self._streams: set[asyncio.Task[object]] = set()
        self.stopping = False

    def begin_shutdown(self) -> None:
        """Shutdown has begun: end the open response streams now."""
        self.stopping = True
        for task in list(self._streams):
            task.cancel("the server is shutting down")

    async def finished(self) -> None:
        """Return once every write in flight has finished (for the lifespan, before the pool closes)."""
        while self._writes:
            await asyncio.wait(list(self._writes))

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method", "GET") in READS:
            await self._read(scope, receive, send, next_app)
        else:
            await self._write(scope, receive, send, next_app)

    async def _write(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        async def run() -> None:
            await next_app(scope, receive, send)

        task = asyncio.create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        cut = 0
        while True:
            try:
                await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.done():
                    raise  # the write itself was cancelled (the event loop is closing)
                cut += 1
                log.warning(
                    "shutdown grace is over; waiting for %s %s to finish writing",
                    scope.get("method"),
                    scope.get("path"),
                )
        current = asyncio.current_task()
        for _ in range(cut):
            if current is not None:
                current.uncancel()

    async def _read(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        task = asyncio.current_task()
        started = finished = False

        async def watch(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
                headers = {bytes(name).lower() for name, _ in message.get("headers", ())}
                if task is not None and b"content-length" not in headers:
                    self._streams.add(task)  # a stream: it ends when shutdown begins
                    if self.stopping:
                        task.cancel("the server is shutting down")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await next_app(scope, receive, watch)
        except asyncio.CancelledError:
            if not self.stopping or task is None:
                raise
            task.uncancel()
            if not started:
                await send_unavailable(send, "the server is shutting down")
            elif not finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if task is not None:
                self._streams.discard(task)


async def send_unavailable(send: Send, detail: str) -> None:
    """A 503 problem with Retry-After, sent as raw ASGI messages, on a connection that closes."""
    body = msgspec.json.encode(
        problems.Problem(
            type="urn:job-ledger:problem:shutting-down",
            title="Service Unavailable",
            status=503,
            detail=detail,
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", problems.MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
