"""httpx transports for watching `wait` on the events stream: the real transport, with a
hook run on each stream request and, on demand, a stream cut after its first event."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

STREAM_PATH = "/api/v1/events/stream"


class _CutAfterFirstEvent(httpx.SyncByteStream):
    """The stream's bytes up to the end of its first event with an id, then a dropped connection."""

    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self.inner = inner
        self.cut_after: str | None = None  # the id of the last event let through

    def __iter__(self) -> Iterator[bytes]:
        seen = b""
        for chunk in self.inner:
            seen += chunk
            yield chunk
            text = seen.decode().replace("\r\n", "\n")
            for message in text.split("\n\n")[:-1]:  # complete messages only
                for line in message.split("\n"):
                    if line.startswith("id: "):
                        self.cut_after = line.removeprefix("id: ")
                        raise httpx.ReadError("connection dropped by the test")

    def close(self) -> None:
        self.inner.close()


UNAVAILABLE = {
    "type": "urn:job-ledger:problem:database-unavailable",
    "title": "Service Unavailable",
    "status": 503,
    "detail": "the database cannot be reached now; try again later",
}


class Watched(httpx.HTTPTransport):
    """Records each events-stream request and calls `on_stream(n)` (n counts from 1) as it is
    sent; with `cut_first`, the first stream drops after its first event; with
    `refuse_first`, the first stream request is answered 503 (as in an outage) unsent."""

    def __init__(
        self,
        on_stream: Callable[[int], None],
        *,
        cut_first: bool = False,
        refuse_first: bool = False,
    ) -> None:
        super().__init__()
        self.on_stream = on_stream
        self.cut_first = cut_first
        self.refuse_first = refuse_first
        self.streams: list[httpx.Request] = []
        self.cut: _CutAfterFirstEvent | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == STREAM_PATH:
            self.streams.append(request)
            self.on_stream(len(self.streams))
            if self.refuse_first and len(self.streams) == 1:
                return httpx.Response(
                    503,
                    json=UNAVAILABLE,
                    headers={"Content-Type": "application/problem+json", "Retry-After": "0"},
                )
        response = super().handle_request(request)
        if request.url.path == STREAM_PATH and self.cut_first and self.cut is None:
            assert isinstance(response.stream, httpx.SyncByteStream)
            self.cut = _CutAfterFirstEvent(response.stream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=self.cut,
                extensions=response.extensions,
            )
        return response


class AsyncWatched(httpx.AsyncHTTPTransport):
    """Records each events-stream request and calls `on_stream(n)` as it is sent."""

    def __init__(self, on_stream: Callable[[int], None]) -> None:
        super().__init__()
        self.on_stream = on_stream
        self.streams: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == STREAM_PATH:
            self.streams.append(request)
            self.on_stream(len(self.streams))
        return await super().handle_async_request(request)
