"""The HTTP server (uvicorn) for `ledger api` and `ledger serve`, and how signals stop it.

The first SIGTERM or SIGINT drains: uvicorn stops accepting connections, lets the
requests in flight finish within API_SHUTDOWN_GRACE_SECONDS (writes always run to
their end, see `draining`), then the app's lifespan closes the database pool; a
worker pool in the same process stops claiming and finishes its jobs meanwhile.
A second signal exits at once. The signals are handled here, on the event loop,
and nowhere else: uvicorn's own handlers (which re-raise the signal once it has
stopped) are not installed, and nothing cancels the server's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Final

import uvicorn
from litestar import Litestar

from ledger import config, logs
from service.http import draining, heads

log = logging.getLogger(__name__)

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class Server(uvicorn.Server):
    """uvicorn's server, without its signal handlers (`Shutdown` stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build(application: Litestar, settings: config.Settings) -> Server:
    return Server(
        uvicorn.Config(
            application,
            host=settings.server_host,
            port=settings.server_port,
            log_level=settings.log_level,
            log_config=None,
            lifespan="on",
            # the C parser (a dependency), never the pure-Python fallback; heads capped
            http=heads.protocol(settings.max_header_bytes),
            timeout_graceful_shutdown=settings.api_shutdown_grace_seconds,
        )
    )


def in_flight(application: Litestar) -> draining.InFlight:
    requests: draining.InFlight = application.state.in_flight
    return requests


class Shutdown:
    """Stops what registered with `on_stop` at the first signal (or `request()`); a second signal exits."""

    def __init__(self) -> None:
        self.requested = False
        self._stops: list[Callable[[], None]] = []
        self._signals = 0

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)
        if self.requested:
            stop()

    def stop_server(self, server: Server) -> None:
        """Drain `server` on shutdown: end its streams, stop accepting, finish what is in flight."""
        app = server.config.app
        assert isinstance(app, Litestar)
        requests = in_flight(app)

        def stop() -> None:
            requests.begin_shutdown()
            server.should_exit = True

        self.on_stop(stop)

    def request(self) -> None:
        if self.requested:
            return
        self.requested = True
        for stop in self._stops:
            stop()

    def _signalled(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("%s received: draining requests in flight, then exiting", name)
            self.request()
            return
        log.error("second signal (%s): exiting now, without draining", name)
        logs.exit_at_once(signum)

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[Shutdown]:
        """Within the block, SIGTERM and SIGINT go to this object (and cancel nothing)."""
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._signalled, sig)
        try:
            yield self
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
