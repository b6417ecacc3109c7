"""Service processes for the benchmark: real `ledger worker` / `ledger api` from the venv.

Each runs as its own process with the documented environment (DATABASE_URL,
WORKER_COUNT, LEDGER_HANDLERS=bench.noop, ...), pointed at the benchmark's
cluster. Peak RSS is read from the kernel's VmHWM of each process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench import cluster

ROOT = Path(__file__).resolve().parents[1]


def ledger_command() -> list[str]:
    """The installed `ledger` console script beside this interpreter."""
    script = Path(sys.executable).with_name("ledger")
    if script.exists():
        return [str(script)]
    found = shutil.which("ledger")
    if found is None:
        raise RuntimeError("the `ledger` command is not installed (make bench installs it)")
    return [found]


def service_env(c: cluster.Cluster, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEDGER_", "DATABASE_URL", "WORKER_", "SERVER_", "JWT_"))
    }
    env.update(
        {
            "DATABASE_URL": c.app_dsn,
            "MIGRATE_DATABASE_URL": c.admin_dsn,
            "LEDGER_HANDLERS": "bench.noop",
            "WORKER_METRICS_PORT": "0",
            "LOG_LEVEL": "warning",
            "LEDGER_DATA_DIR": str(c.data_dir / "service"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra)
    return env


class Service:
    """A started `ledger <command>` process; stopped with SIGTERM (graceful), killed if it hangs."""

    def __init__(self, command: str, env: Mapping[str, str], log: Path) -> None:
        self.command = command
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [*ledger_command(), command],
            env=dict(env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_rss_bytes(self) -> int:
        """VmHWM: the resident set's high-water mark since the process started."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmHWM for pid {self.pid}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"`ledger {self.command}` exited with {self.proc.returncode}; see {self._log.name}"
            )


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate()` until true, or fail after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
