"""`ledger probe`: the container health check. GET a local URL; exit 0 on 2xx, 1 otherwise.

Needs nothing but the standard library, so it answers even when the service it
probes is wedged; the slim image has no curl.
"""

from __future__ import annotations

import http.client
import sys


def probe(
    port: int, path: str = "/health", *, host: str = "127.0.0.1", timeout: float = 3.0
) -> int:
    """0 when `http://host:port/path` answers 2xx within `timeout`, else 1 (reason on stderr)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
    except OSError as exc:
        print(f"probe: http://{host}:{port}{path}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return 0
    print(f"probe: http://{host}:{port}{path} answered {response.status}", file=sys.stderr)
    return 1
