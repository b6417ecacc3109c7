"""The benchmark's no-op job type, a plugin like any other: `LEDGER_HANDLERS=bench.noop`.

It is registered with the documented `@job_type` decorator and loaded by real
`ledger worker` processes through LEDGER_HANDLERS, so the measurement uses the
same mechanism a user adds a job type with. With BENCH_NOOP_STARTS set to a file
path, the handler appends `<job id> <time.time_ns()>` to it the moment it starts
(one O_APPEND write per job): the latency measurement's end point.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec

from ledger import jobtypes

NAME = "bench.noop"


class NoopPayload(msgspec.Struct, frozen=True):
    n: int = 0
    wait_seconds: float = 0.0  # stands for work that waits on I/O (bench.queues)


_starts_path = os.environ.get("BENCH_NOOP_STARTS")
_starts_fd = (
    os.open(_starts_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _starts_path else None
)


@jobtypes.job_type(NAME, NoopPayload, max_attempts=1, timeout_seconds=60)
async def noop(payload: NoopPayload, context: jobtypes.JobContext) -> Any:
    """Does nothing; records when it started if asked to."""
    if _starts_fd is not None:
        os.write(_starts_fd, f"{context.job_id} {time.time_ns()}\n".encode())
    if payload.wait_seconds > 0:
        await asyncio.sleep(payload.wait_seconds)
    return None
