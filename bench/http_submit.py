"""HTTP submission: `POST /api/v1/jobs` with a valid token against a real `ledger api` process.

The load comes from a separate process (bench.loadgen): 32 keep-alive connections,
one request in flight on each. The token is minted by `ledger token`, the
documented way. The API process's peak RSS (VmHWM) is read at the end of each run.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from bench import cluster, loadgen, procs
from ledger import embedded

BODY = json.dumps({"type": "bench.noop", "payload": {"n": 1}, "max_attempts": 1})


class HttpRun(msgspec.Struct, kw_only=True):
    result: loadgen.Result
    api_peak_rss: int


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def measure_once(
    c: cluster.Cluster, *, connections: int, seconds: float, logs: Path, extra: dict[str, str]
) -> HttpRun:
    port = embedded.free_port()
    env = procs.service_env(
        c,
        {"SERVER_PORT": str(port), "JWT_SECRET": secrets.token_urlsafe(32), **extra},
    )
    token = subprocess.run(
        [*procs.ledger_command(), "token", "--sub", "bench", "--ttl", "1h"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    api = procs.Service("api", env, logs / "api.log")
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            api.check()
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start listening within 60 s")
            time.sleep(0.05)
        gen = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--token",
                token,
                "--body",
                BODY,
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
            ],
            cwd=procs.ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed: {gen.stderr.strip()}")
        api.check()
        rss = api.peak_rss_bytes()
    finally:
        api.stop()
    result = msgspec.json.decode(gen.stdout, type=loadgen.Result)
    if result.errors:
        raise RuntimeError(f"the API answered errors: {result.statuses}")
    return HttpRun(result=result, api_peak_rss=rss)
