"""Graceful shutdown: the first SIGTERM or SIGINT asks the pool to stop; a second exits at once.

Stopping gracefully means: claim nothing more, let running jobs finish within the
grace period, hand the unfinished ones back (job.released.v1, so another worker
takes them at once), close the connections and exit 0 (see `pool.Pool.run`).
Exiting at once leaves running jobs to lease recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

from ledger import logs

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def graceful(stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first signal calls `stop()`, the second ends the process."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handle(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.warning("%s received: finishing running jobs, then exiting", name)
            stop()
            return
        log.error("second signal (%s): exiting now; running jobs go to lease recovery", name)
        logs.exit_at_once(signum)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
