"""email_send against a real SMTP server (aiosmtpd) on 127.0.0.1 that receives the message."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from ledger import jobtypes
from tests.workers.handlers.conftest import SmtpServer, running_smtp, tls_server_context
from workers.handlers import email_send


async def run(payload: dict[str, Any], ctx: jobtypes.JobContext) -> dict[str, Any]:
    typed = jobtypes.REGISTRY.get("email_send").validate(payload)
    result = await email_send.email_send(typed, ctx)  # type: ignore[arg-type]
    assert msgspec.json.decode(msgspec.json.encode(result)) == result  # what the pool records
    return result


def received(server: SmtpServer, index: int = 0) -> EmailMessage:
    content = server.recorder.envelopes[index].original_content
    assert content is not None
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


PAYLOAD: dict[str, Any] = {
    "to": ["alice@example.test"],
    "cc": ["bob@example.test"],
    "bcc": ["audit@example.test"],
    "from": "ledger@jobs.example.test",
    "subject": "Your export is ready",
    "body": "Hello Alice,\nthe export finished.\n",
    "html": "<p>Hello Alice,</p><p>the export finished.</p>",
}


async def test_the_local_server_receives_the_message(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    ctx = make_ctx()

    result = await run(PAYLOAD, ctx)

    envelope = smtp_server.recorder.envelopes[0]
    assert envelope.mail_from == "ledger@jobs.example.test"
    assert envelope.rcpt_tos == ["alice@example.test", "bob@example.test", "audit@example.test"]
    message = received(smtp_server)
    assert message["Subject"] == "Your export is ready"
    assert message["To"] == "alice@example.test"
    assert message["Cc"] == "bob@example.test"
    assert message["Bcc"] is None
    assert message["Message-ID"] == f"<job-{ctx.job_id}@jobs.example.test>"
    assert message["X-Job-Ledger-Job-Id"] == str(ctx.job_id)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == PAYLOAD["body"]
    assert html is not None and "<p>Hello Alice,</p>" in html.get_content()
    assert result["message_id"] == message["Message-ID"]
    assert result["accepted"] == envelope.rcpt_tos
    assert result["refused"] == {}


async def test_a_retried_send_carries_the_same_message_id(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    handler_env.setenv("SMTP_FROM", "noreply@ledger.test")
    ctx = make_ctx(job_type="email_send")
    payload = {"to": ["a@example.test"], "subject": "hi", "body": "text only"}

    await run(payload, ctx)
    await run(payload, make_ctx(job_id=ctx.job_id, attempt=2))

    first, second = received(smtp_server, 0), received(smtp_server, 1)
    assert first["Message-ID"] == second["Message-ID"] == f"<job-{ctx.job_id}@ledger.test>"
    assert first["From"] == "noreply@ledger.test"
    assert not first.is_multipart()


async def test_a_temporary_refusal_is_retryable(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.recorder.data_answer = "451 Mailbox store busy, try later"
    with pytest.raises(jobtypes.Retryable, match="451"):
        await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())
    assert smtp_server.recorder.envelopes == []


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
)
async def test_a_header_with_a_line_separator_is_a_permanent_error_and_nothing_is_sent(
    separator: str,
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    payload = {"to": ["a@example.test"], "subject": f"one{separator}two", "body": "b"}
    with pytest.raises(jobtypes.InvalidPayload):  # refused at submission by its rules...
        jobtypes.REGISTRY.get("email_send").validate(payload)
    # ... but a job stored before that reaches the handler unchecked (struct constructors
    # do not validate): the handler itself refuses it for good.
    stored = email_send.EmailSendPayload(
        to=["a@example.test"], subject=payload["subject"], body="b"
    )
    with pytest.raises(jobtypes.Permanent, match="cannot be written as email"):
        await email_send.email_send(stored, make_ctx())
    assert smtp_server.recorder.envelopes == []


async def test_a_permanent_refusal_is_permanent(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.recorder.data_answer = "554 Message rejected as spam"
    with pytest.raises(jobtypes.Permanent, match="554"):
        await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())


@pytest.mark.parametrize(
    ("answer", "error"),
    [("550 No such user", jobtypes.Permanent), ("450 Mailbox unavailable", jobtypes.Retryable)],
)
async def test_every_recipient_refused_is_classified_by_code(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
    answer: str,
    error: type[Exception],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.recorder.rcpt_answer["ghost@example.test"] = answer
    with pytest.raises(error, match="every recipient was refused"):
        await run({"to": ["ghost@example.test"], "subject": "s", "body": "b"}, make_ctx())


async def test_a_partly_refused_message_reports_who_was_refused(
    smtp_server: SmtpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.recorder.rcpt_answer["ghost@example.test"] = "550 No such user"
    result = await run(
        {"to": ["alice@example.test", "ghost@example.test"], "subject": "s", "body": "b"},
        make_ctx(),
    )
    assert result["accepted"] == ["alice@example.test"]
    assert result["refused"] == {"ghost@example.test": "550 No such user"}
    assert smtp_server.recorder.envelopes[0].rcpt_tos == ["alice@example.test"]


async def test_an_unreachable_server_is_retryable(
    handler_env: pytest.MonkeyPatch, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{closed_port}")
    with pytest.raises(jobtypes.Retryable, match="cannot reach SMTP server"):
        await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())


async def test_no_smtp_url_is_a_permanent_error(
    handler_env: pytest.MonkeyPatch, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    with pytest.raises(jobtypes.Permanent, match="SMTP_URL is not set"):
        await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())


@pytest.fixture
def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and that certificate."""
    return tls_server_context(tmp_path, "127.0.0.1")


async def test_implicit_tls_with_credentials_and_a_trusted_ca_file(
    server_tls: tuple[ssl.SSLContext, Path],
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    context, cert = server_tls
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"p@ss:word", handled=False)

    async with running_smtp(tls=context, authenticator=authenticator) as server:
        handler_env.setenv("SMTP_URL", f"smtps://mailer:p%40ss%3Aword@127.0.0.1:{server.port}")
        handler_env.setenv("SMTP_CA_FILE", str(cert))
        await run({"to": ["a@example.test"], "subject": "over TLS", "body": "b"}, make_ctx())
        assert received(server)["Subject"] == "over TLS"
    assert logins == [(b"mailer", b"p@ss:word")]


async def test_starttls_is_used_when_the_url_asks_for_it(
    server_tls: tuple[ssl.SSLContext, Path],
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    context, cert = server_tls
    async with running_smtp(starttls=context) as server:
        handler_env.setenv("SMTP_URL", f"smtp+starttls://127.0.0.1:{server.port}")
        handler_env.setenv("SMTP_CA_FILE", str(cert))
        await run({"to": ["a@example.test"], "subject": "upgraded", "body": "b"}, make_ctx())
        assert received(server)["Subject"] == "upgraded"


async def test_a_server_requiring_starttls_refuses_a_plain_url_permanently(
    server_tls: tuple[ssl.SSLContext, Path],
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    async with running_smtp(starttls=server_tls[0]) as server:
        handler_env.setenv("SMTP_URL", f"smtp://127.0.0.1:{server.port}")
        with pytest.raises(jobtypes.Permanent, match="530"):
            await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())
        assert server.recorder.envelopes == []


async def test_an_untrusted_certificate_is_refused_unless_verification_is_off(
    server_tls: tuple[ssl.SSLContext, Path],
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    async with running_smtp(tls=server_tls[0]) as server:
        handler_env.setenv("SMTP_URL", f"smtps://127.0.0.1:{server.port}")
        payload = {"to": ["a@example.test"], "subject": "unverified", "body": "b"}
        with pytest.raises(jobtypes.Retryable, match="certificate"):
            await run(payload, make_ctx())
        assert server.recorder.envelopes == []

        handler_env.setenv("SMTP_TLS_VERIFY", "0")
        await run(payload, make_ctx())
        assert received(server)["Subject"] == "unverified"


async def test_wrong_credentials_are_a_permanent_error(
    tmp_path: Path, handler_env: pytest.MonkeyPatch, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    def authenticator(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)  # handled=False: aiosmtpd answers 535

    async with running_smtp(authenticator=authenticator) as server:
        handler_env.setenv("SMTP_URL", f"smtp://mailer:wrong@127.0.0.1:{server.port}")
        with pytest.raises(jobtypes.Permanent, match="535"):
            await run({"to": ["a@example.test"], "subject": "s", "body": "b"}, make_ctx())
        assert server.recorder.envelopes == []


def test_smtp_urls_are_parsed_with_their_tls_mode_and_default_port() -> None:
    plain = email_send.parse_smtp_url("smtp://mail.test")
    assert (plain.port, plain.use_tls, plain.start_tls, plain.username) == (25, False, False, None)
    starttls = email_send.parse_smtp_url("smtp+starttls://u%40x:pw@mail.test")
    assert (starttls.port, starttls.start_tls, starttls.username, starttls.password) == (
        587,
        True,
        "u@x",
        "pw",
    )
    implicit = email_send.parse_smtp_url("smtps://mail.test:2465")
    assert (implicit.port, implicit.use_tls) == (2465, True)
    with pytest.raises(jobtypes.Permanent, match="scheme"):
        email_send.parse_smtp_url("http://mail.test")


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"to": [], "subject": "s", "body": "b"}, "$.to"),
        ({"to": ["not an address"], "subject": "s", "body": "b"}, "$.to[0]"),
        ({"to": ["a@x.test"], "subject": "s\r\nBcc: evil@x.test", "body": "b"}, "$.subject"),
        ({"to": ["a@x.test"], "subject": "s", "body": "b", "from": "nobody"}, "$.from"),
        ({"to": ["a@x.test"], "subject": "s"}, "$"),
    ],
)
def test_invalid_payloads_name_the_field(payload: dict[str, Any], path: str) -> None:
    with pytest.raises(jobtypes.InvalidPayload) as caught:
        jobtypes.REGISTRY.get("email_send").validate(payload)
    assert caught.value.path == path
