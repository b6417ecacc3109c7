"""A cap on the size of a request's head (request line and headers), for uvicorn's httptools.

uvicorn's C parser (httptools) has no limit of its own: a client could send megabytes
of headers, all held in memory. `protocol(limit)` is uvicorn's httptools protocol
counting the bytes that arrive while a request's head is incomplete; past `limit`
it answers `431 Request Header Fields Too Large` (problem details) and closes the
connection. Bytes are counted as they arrive, so a head is refused within one read
of the limit; a body is never counted.

Closing a socket whose peer is still sending makes the kernel reset the connection,
and a reset can destroy the answer before the client reads it. So, as web servers
do ("lingering close"), the answer is followed by the end of our half of the
connection, and what the client still sends is read and dropped (never kept) until
it closes its half or `LINGER_SECONDS` have passed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.http import problems

DEFAULT_MAX_HEADER_BYTES: Final = 32 * 1024
LINGER_SECONDS: Final = 2.0
log = logging.getLogger(__name__)


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over `max_head_bytes`."""

    max_head_bytes: int = DEFAULT_MAX_HEADER_BYTES
    _in_head = True  # waiting for (the rest of) a request's head
    _head_bytes = 0  # bytes received since that head began, at most
    _refused: asyncio.TimerHandle | None = None  # closes the connection after a refusal

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # lingering after a refusal: dropped
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._in_head and self._head_bytes > self.max_head_bytes
        if over and not self.transport.is_closing():
            self._refuse()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # a keep-alive connection's next request starts now
        self._head_bytes = 0

    def _refuse(self) -> None:
        log.warning("refused a request whose head exceeds %d bytes", self.max_head_bytes)
        body = msgspec.json.encode(
            problems.Problem(
                type="about:blank",
                title="Request Header Fields Too Large",
                status=431,
                detail=f"the request line and headers exceed {self.max_head_bytes} bytes",
            )
        )
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(f"content-type: {problems.MEDIA_TYPE}\r\n".encode())
        head.append(f"content-length: {len(body)}\r\n".encode())
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self._refused = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused is not None:
            self._refused.cancel()
        super().connection_lost(exc)


def protocol(max_head_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> type[LimitedHttpTools]:
    """The protocol class to give uvicorn (`Config(http=...)`) for this limit."""
    return type("LimitedHttpTools", (LimitedHttpTools,), {"max_head_bytes": max_head_bytes})
