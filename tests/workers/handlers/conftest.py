"""Fixtures for the job handlers: a storage root, a job context, a local HTTP and SMTP server.

Every server listens on 127.0.0.1 only and is stopped when its test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ledger import jobtypes
from workers import handlers as _registered  # noqa: F401 - registers the four job types


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    return root


@pytest.fixture
def make_ctx(storage_root: Path) -> Callable[..., jobtypes.JobContext]:
    def make(job_type: str = "test", **overrides: object) -> jobtypes.JobContext:
        fields: dict[str, object] = {
            "job_id": uuid.uuid4(),
            "job_type": job_type,
            "attempt": 1,
            "max_attempts": 3,
            "storage_root": storage_root,
        }
        fields.update(overrides)
        return jobtypes.JobContext(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean handler environment: none of the handlers' variables inherited from the shell."""
    for name in (
        "SMTP_URL",
        "SMTP_FROM",
        "SMTP_TLS_VERIFY",
        "SMTP_CA_FILE",
        "SMTP_TIMEOUT_SECONDS",
        "FETCH_ALLOW_PRIVATE",
        "FETCH_ALLOWED_NETWORKS",
        "FETCH_MAX_BYTES",
        "FETCH_TIMEOUT_SECONDS",
        "FETCH_MAX_REDIRECTS",
        "IMAGE_MAX_PIXELS",
        "IMAGE_DECODE_BUDGET_PIXELS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = (
        True  # False: no Content-Length, the body ends when the connection closes
    )
    hang: bool = False  # True: send nothing until the server stops


@dataclass
class HttpServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 that answers from `routes` and records each request."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            _method, target, _version = request_line.decode("latin-1").split(" ", 2)
            self.requests.append((target, headers))
            route = self.routes.get(target, Route(status=404, body=b"not found"))
            if route.hang:
                await self.stopping.wait()
                return
            head = [f"HTTP/1.1 {route.status} X", "Connection: close"]
            head += [f"{k}: {v}" for k, v in route.headers.items()]
            if route.content_length:
                head.append(f"Content-Length: {len(route.body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + route.body)
            await writer.drain()
        except ConnectionError:
            pass  # the client hung up early (the oversized-body test does that on purpose)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def http_server() -> AsyncIterator[HttpServer]:
    state = HttpServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.stopping.set()
        server.close()
        await server.wait_closed()


class SmtpRecorder:
    """An aiosmtpd handler that keeps what it receives and can refuse on demand."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rcpt_answer: dict[str, str] = {}
        self.data_answer: str | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        answer = self.rcpt_answer.get(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer is not None:
            return self.data_answer
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    recorder: SmtpRecorder


@contextlib.asynccontextmanager
async def running_smtp(
    *,
    tls: ssl.SSLContext | None = None,
    starttls: ssl.SSLContext | None = None,
    authenticator: Any = None,
) -> AsyncIterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1, stopped on exit: implicit TLS with `tls`,
    STARTTLS required with `starttls`."""
    recorder = SmtpRecorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            recorder,
            hostname="ledger.test",
            authenticator=authenticator,
            auth_require_tls=False,
            tls_context=starttls,
            require_starttls=starttls is not None,
            loop=loop,
        ),
        "127.0.0.1",
        0,
        ssl=tls,
    )
    try:
        yield SmtpServer(port=server.sockets[0].getsockname()[1], recorder=recorder)
    finally:
        server.close()
        await server.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def smtp_server() -> AsyncIterator[SmtpServer]:
    async with running_smtp() as server:
        yield server


def tls_server_context(directory: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for `name` (an IP or a
    DNS name), and the certificate's file for clients to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
