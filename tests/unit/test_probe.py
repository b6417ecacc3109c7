"""`ledger probe`, the container health check: 2xx is healthy, anything else is not."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from ledger import embedded
from service import cli


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/health" else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_probe_succeeds_on_2xx(server: int) -> None:
    assert cli.main(["probe", "--port", str(server)]) == 0


def test_probe_fails_on_an_error_status(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["probe", "--port", str(server), "--path", "/ready"]) == 1
    assert "answered 503" in capsys.readouterr().err


def test_probe_fails_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["probe", "--port", str(embedded.free_port())]) == 1
    assert "probe: http://127.0.0.1:" in capsys.readouterr().err
