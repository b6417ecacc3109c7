"""`wait` without I/O: where the events stream resumes, the deadline, which messages matter.

The stream starts after the job's last event, whose cursor is read (with its history)
before the job's state is: a transition after that read is in the stream, so none
falls between the look and the subscription. The stream is filtered to the job's
type by the server and to the job here. Each event about the job sends the client
to read the job again; the first terminal status ends the wait.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Final

import httpx
import msgspec

from ledger.client import calls, errors, wire

DEFAULT_RETRY_SECONDS: Final = 2.0  # SSE's reconnection time until the server sets one

_recorded = msgspec.json.Decoder(wire.RecordedEvent).decode


@dataclass(slots=True)
class _Message:
    """One Server-Sent Events message, as its lines arrive."""

    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None


class Wait:
    """The state of one `wait`; `Client` and `AsyncClient` drive it with their own I/O."""

    def __init__(self, job_id: uuid.UUID | str, timeout: float) -> None:
        self.job_id = uuid.UUID(str(job_id))
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.last_id: str | None = None
        self.job_type: str | None = None
        self.reconnect_delay = DEFAULT_RETRY_SECONDS
        self.opened_at = 0.0
        self.live = False  # the stream open now answered at least one message
        self.message = _Message()
        # A stream's reads may each wait as long as the time left when it opened. Once it
        # has been open longer than `slack`, it reopens (from the last event id) on its
        # next message, so a wait overshoots its deadline by `slack` at most.
        self.slack = max(1.0, timeout / 10)

    def start(self, history: wire.History) -> None:
        """Follow the stream from after the job's last event (read before its state)."""
        self.last_id = history.events[-1].cursor
        first = history.events[0]
        self.job_type = first.data.get("job_type") if first.type == "job.submitted.v1" else None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self, job: wire.Job) -> errors.WaitTimeout | None:
        """The error to raise if the time is up (`job` as last seen), else None."""
        return errors.WaitTimeout(job, self.timeout) if self.remaining() <= 0 else None

    def stream(self) -> calls.Call[None]:
        """The request that opens (or reopens) the stream after the last event seen."""
        self.opened_at = time.monotonic()
        self.live = False
        self.message = _Message()
        params = {} if self.job_type is None else {"job_type": self.job_type}
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return calls.Call(
            "GET", f"{calls.API}/events/stream", calls.no_body, params=params, headers=headers
        )

    def read_timeout(self) -> httpx.Timeout:
        """Each read of the stream opened now waits at most the time left."""
        return httpx.Timeout(max(0.001, self.remaining()))

    def line(self, line: str) -> bool | None:
        """Take one line of the stream. True: an event about the job arrived (read the job
        again); False: reopen the stream (see `slack`); None: read on."""
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self.message.data.append(value)
            elif name == "event":
                self.message.event = value
            elif name == "id":
                self.message.id = value
            elif name == "retry" and value.isdigit():
                self.reconnect_delay = int(value) / 1000
            return None
        message, self.message = self.message, _Message()
        self.live = True
        if message.id is not None:
            self.last_id = message.id
            if message.data:
                try:
                    recorded = _recorded("\n".join(message.data))
                except msgspec.DecodeError as exc:
                    raise errors.UnexpectedResponse(f"event {message.id}: {exc}", 200) from exc
                if recorded.job_id == self.job_id:
                    return True
        if time.monotonic() - self.opened_at > self.slack:
            return False
        return None

    def pause(self, failure: Exception) -> float:
        """How long to wait before reopening the stream after `failure`: not at all if it
        dropped once open, else the server's Retry-After or SSE `retry`, within the deadline."""
        if self.live:
            return 0.0
        delay = self.reconnect_delay
        if isinstance(failure, errors.Unavailable) and failure.retry_after is not None:
            delay = failure.retry_after
        return min(delay, max(0.0, self.remaining()))
