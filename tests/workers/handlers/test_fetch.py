"""The guarded download: refusals of private addresses and oversized bodies, and real
downloads from a local HTTP server on 127.0.0.1 once configuration allows it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ledger import jobtypes
from tests.workers.handlers.conftest import HttpServer, Route, tls_server_context
from workers.handlers import fetch, settings


def config(**overrides: Any) -> settings.FetchSettings:
    return settings.FetchSettings(**overrides)


def allow_loopback(**overrides: Any) -> settings.FetchSettings:
    networks = settings.from_env({"FETCH_ALLOWED_NETWORKS": "127.0.0.1/32"}).fetch.allowed_networks
    return config(allowed_networks=networks, **overrides)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/a.png", "loopback"),
        ("http://127.8.9.10:8080/a.png", "loopback"),
        ("http://10.1.2.3/a.png", "private"),
        ("https://192.168.0.1/a.png", "private"),
        ("http://172.16.5.4/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[fe80::1]/a.png", "link-local"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("http://100.64.0.1/a.png", "not globally routable"),
        ("http://localhost/a.png", "loopback"),
    ],
)
async def test_private_addresses_are_refused_without_configuration(url: str, reason: str) -> None:
    with pytest.raises(jobtypes.Permanent, match=reason):
        await fetch.download(url, config())


async def test_a_refused_address_is_never_contacted(http_server: HttpServer) -> None:
    http_server.routes["/a.png"] = Route(body=b"png")
    with pytest.raises(jobtypes.Permanent, match="loopback"):
        await fetch.download(http_server.url("/a.png"), config())
    assert http_server.requests == []


async def test_download_from_an_allowed_local_server(http_server: HttpServer) -> None:
    body = bytes(range(256)) * 100
    http_server.routes["/data.bin"] = Route(
        body=body, headers={"Content-Type": "application/octet-stream"}
    )
    got = await fetch.download(http_server.url("/data.bin"), allow_loopback())
    assert got.content == body
    assert got.content_type == "application/octet-stream"


async def test_allow_private_lets_every_address_through(
    http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.routes["/ok"] = Route(body=b"fine")
    monkeypatch.setenv("FETCH_ALLOW_PRIVATE", "1")
    got = await fetch.download(http_server.url("/ok"), settings.from_env().fetch)
    assert got.content == b"fine"


async def test_a_declared_oversized_body_is_refused_before_reading(http_server: HttpServer) -> None:
    http_server.routes["/big"] = Route(body=b"x" * 5000)
    with pytest.raises(jobtypes.Permanent, match="5000 bytes, more than the limit of 1000"):
        await fetch.download(http_server.url("/big"), allow_loopback(max_bytes=1000))


async def test_an_undeclared_oversized_body_is_cut_off(http_server: HttpServer) -> None:
    http_server.routes["/stream"] = Route(body=b"x" * 200_000, content_length=False)
    with pytest.raises(jobtypes.Permanent, match="more than the limit of 1000 bytes"):
        await fetch.download(http_server.url("/stream"), allow_loopback(max_bytes=1000))


async def test_a_body_at_the_limit_is_accepted(http_server: HttpServer) -> None:
    http_server.routes["/exact"] = Route(body=b"y" * 1000, content_length=False)
    got = await fetch.download(http_server.url("/exact"), allow_loopback(max_bytes=1000))
    assert len(got.content) == 1000


async def test_a_download_over_the_time_limit_is_retryable(http_server: HttpServer) -> None:
    http_server.routes["/slow"] = Route(hang=True)
    with pytest.raises(jobtypes.Retryable, match="did not finish within"):
        await fetch.download(http_server.url("/slow"), allow_loopback(timeout_seconds=0.3))


async def test_redirects_are_followed_and_each_target_vetted(http_server: HttpServer) -> None:
    http_server.routes["/old"] = Route(status=302, headers={"Location": "/new"})
    http_server.routes["/new"] = Route(body=b"moved")
    got = await fetch.download(http_server.url("/old"), allow_loopback())
    assert got.content == b"moved"
    assert got.url == http_server.url("/new")


async def test_a_redirect_to_a_private_address_is_refused(http_server: HttpServer) -> None:
    http_server.routes["/hop"] = Route(
        status=301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    with pytest.raises(jobtypes.Permanent, match="link-local"):
        await fetch.download(http_server.url("/hop"), allow_loopback())


async def test_too_many_redirects_are_refused(http_server: HttpServer) -> None:
    http_server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with pytest.raises(jobtypes.Permanent, match="redirected more than 2 times"):
        await fetch.download(http_server.url("/loop"), allow_loopback(max_redirects=2))
    assert len(http_server.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, jobtypes.Permanent), (503, jobtypes.Retryable), (429, jobtypes.Retryable)],
)
async def test_http_errors_are_classified(
    http_server: HttpServer, status: int, error: type[Exception]
) -> None:
    http_server.routes["/e"] = Route(status=status)
    with pytest.raises(error, match=f"HTTP {status}"):
        await fetch.download(http_server.url("/e"), allow_loopback())


@pytest.mark.parametrize("url", ["ftp://example.com/a", "file:///etc/passwd"])
async def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(jobtypes.Permanent, match="only http and https"):
        await fetch.download(url, config(allow_private=True))


async def test_a_name_is_resolved_once_and_the_vetted_address_is_dialled(
    http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the connection goes to the address that was checked, Host keeps the name."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a second lookup would get a private address
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: Any) -> list[Any]:
        assert host == "images.example.test"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in next(answers)
        ]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    http_server.routes["/cat.png"] = Route(body=b"cat")
    url = f"http://images.example.test:{http_server.port}/cat.png"
    got = await fetch.download(url, allow_loopback())
    assert got.content == b"cat"
    assert http_server.requests[0][1]["host"] == f"images.example.test:{http_server.port}"


async def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    with pytest.raises(jobtypes.Permanent, match=r"10\.0\.0\.7 is a private address"):
        await fetch.download("https://mixed.example.test/a.png", config())


@pytest_asyncio.fixture(loop_scope="session")
async def https_server(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, Path, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for images.example.test; records SNI names."""
    context, cert = tls_server_context(tmp_path, "images.example.test")
    server_names: list[str | None] = []

    def remember(_sock: Any, name: str | None, _context: Any) -> None:
        server_names.append(name)

    context.sni_callback = remember
    state = HttpServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=context)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state, cert, server_names
    finally:
        state.stopping.set()
        server.close()
        await server.wait_closed()


def resolve_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)


async def test_https_dials_the_vetted_address_and_checks_the_certificate_for_the_name(
    https_server: tuple[HttpServer, Path, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert, server_names = https_server
    resolve_to_loopback(monkeypatch)
    server.routes["/cat.png"] = Route(body=b"secure cat")
    url = f"https://images.example.test:{server.port}/cat.png"

    got = await fetch.download(url, allow_loopback(ca_file=str(cert)))

    assert got.content == b"secure cat"
    assert server_names == ["images.example.test"]
    assert server.requests[0][1]["host"] == f"images.example.test:{server.port}"


async def test_https_refuses_a_certificate_for_another_name(
    https_server: tuple[HttpServer, Path, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert, _ = https_server
    resolve_to_loopback(monkeypatch)
    server.routes["/cat.png"] = Route(body=b"cat")
    url = f"https://other.example.test:{server.port}/cat.png"
    with pytest.raises(jobtypes.Retryable, match="certificate"):
        await fetch.download(url, allow_loopback(ca_file=str(cert)))
    assert server.requests == []
