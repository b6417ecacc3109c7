"""A small HTTP/1.1 load generator, run as its own process: `python -m bench.loadgen ...`.

N keep-alive connections, each sending one POST at a time for a fixed time, over
plain asyncio streams (uvloop when present): little client CPU per request, so
on a shared 2-core machine the service, not the client, is what gets measured.
Every answer must be the expected status; prints one JSON object with the count,
the errors, requests/s and latency percentiles (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import msgspec

from bench import stats


class Result(msgspec.Struct, kw_only=True):
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]


async def _connection(
    host: str,
    port: int,
    request: bytes,
    until: float,
    latencies: list[float],
    statuses: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - sent) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(
    host: str, port: int, path: str, token: str, body: bytes, connections: int, seconds: float
) -> Result:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_connection(host, port, request, until, latencies, statuses) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    ok = statuses.get("201", 0)
    return Result(
        requests=len(latencies),
        errors=len(latencies) - ok,
        seconds=elapsed,
        rps=ok / elapsed,
        p50_ms=stats.percentile(latencies, 50),
        p99_ms=stats.percentile(latencies, 99),
        max_ms=max(latencies),
        statuses=statuses,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/jobs")
    parser.add_argument("--token", required=True)
    parser.add_argument("--body", required=True, help="the JSON body of every request")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    result = runner(
        run(
            args.host,
            args.port,
            args.path,
            args.token,
            args.body.encode(),
            args.connections,
            args.seconds,
        )
    )
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
