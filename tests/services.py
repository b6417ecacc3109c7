"""Real `ledger` processes for the tests that drive one: started on a free port, stopped
(terminated, then killed if it lingers) at the end, their output in a log file."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from ledger import embedded


class Running:
    """A `ledger` process: its handle, its base URL and its log."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def answers(self, path: str = "/health") -> bool:
        """Whether it answers `path` with a 2xx yet (it must still be running)."""
        assert self.process.poll() is None, self.output()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{self.base}{path}")).is_success
        except httpx.TransportError:
            return False


def environment(tmp_path: Path, port: int, **settings: str) -> dict[str, str]:
    """The process's environment: this one's, a quiet service on `port`, then `settings`."""
    env = {
        **os.environ,
        "SERVER_PORT": str(port),
        "SERVER_HOST": "127.0.0.1",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AUDIT_INTEGRATE_INTERVAL_SECONDS": "0",
        "LEDGER_DATA_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
    }
    env.update(settings)
    return env


@contextlib.contextmanager
def ledger(
    command: str, tmp_path: Path, *, port: int | None = None, **settings: str
) -> Iterator[Running]:
    """`ledger <command>` with `settings` (environment variables) for the block's life."""
    port = port or embedded.free_port()
    log = tmp_path / f"{command}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", command],
            env=environment(tmp_path, port, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Running(process, port, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
