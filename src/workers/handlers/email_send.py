"""`email_send`: one message over SMTP (aiosmtplib) to the server `SMTP_URL` names.

`SMTP_URL` is `smtp://host[:25]` (plain), `smtp+starttls://host[:587]` (STARTTLS
required) or `smtps://host[:465]` (implicit TLS), with optional
`user:password@` credentials (percent-encoded). `SMTP_TLS_VERIFY=0` and
`SMTP_CA_FILE` tune certificate checks.

The Message-ID is derived from the job's idempotency key, so a message sent again
by a retried attempt (the worker died after the server accepted it) carries the
same Message-ID and receivers can recognise it as a duplicate.

The server's answer decides the error: 4xx is temporary (Retryable), 5xx is
final (Permanent); a lost or refused connection is Retryable. A message that
cannot be written as email at all (a header with a line separator the payload's
pattern lets through: VT, FF, U+001C..U+001E, U+0085, U+2028, U+2029) is
Permanent: no retry can send it.
"""

from __future__ import annotations

import email.errors
import email.utils
import ssl
import urllib.parse
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Annotated, Any

import aiosmtplib
import msgspec

from ledger import jobtypes
from workers.handlers import settings as handler_settings

# Header fields refuse every character that could end a header line: Python's email
# package splits lines on all that str.splitlines() does (CR, LF, VT, FF, U+001C-U+001E,
# U+0085, U+2028, U+2029), and a message holding one fails to build. Other control
# characters but tab are refused with them. The ranges are spelled out (not `\s`) so the
# JSON Schema reads the same in every regex dialect; `(?!\n)$` is the very end (a
# Python `$` alone also matches before a final newline).
_NOT_IN_HEADERS = r"\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029"
_ADDRESS_PART = rf"[^@\s<>,;\"{_NOT_IN_HEADERS}]+"
Address = Annotated[
    str, msgspec.Meta(pattern=rf"^{_ADDRESS_PART}@{_ADDRESS_PART}(?!\n)$", max_length=254)
]
Recipients = Annotated[list[Address], msgspec.Meta(max_length=100)]
HeaderText = Annotated[str, msgspec.Meta(pattern=rf"^[^{_NOT_IN_HEADERS}]*(?!\n)$", max_length=998)]


class EmailSendPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=100)]
    subject: HeaderText
    body: Annotated[str, msgspec.Meta(max_length=1_000_000)]
    html: Annotated[str, msgspec.Meta(max_length=1_000_000)] | None = None
    cc: Recipients = msgspec.field(default_factory=list)
    bcc: Recipients = msgspec.field(default_factory=list)
    sender: Address | None = msgspec.field(default=None, name="from")
    reply_to: Address | None = None


class SmtpTarget(msgspec.Struct, frozen=True, kw_only=True):
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://`, `smtp+starttls://` or `smtps://`, with optional credentials and port."""
    parts = urllib.parse.urlsplit(url)
    modes = {
        "smtp": (False, False, 25),
        "smtp+starttls": (False, True, 587),
        "smtps": (True, False, 465),
    }
    if parts.scheme not in modes:
        raise jobtypes.Permanent(
            f"SMTP_URL scheme {parts.scheme!r} is not smtp, smtp+starttls or smtps"
        )
    if not parts.hostname:
        raise jobtypes.Permanent("SMTP_URL names no host")
    use_tls, start_tls, default_port = modes[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise jobtypes.Permanent(f"SMTP_URL has an invalid port: {exc}") from exc
    return SmtpTarget(
        hostname=parts.hostname,
        port=port,
        use_tls=use_tls,
        start_tls=start_tls,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
    )


def build_message(
    payload: EmailSendPayload, ctx: jobtypes.JobContext, default_from: str
) -> EmailMessage:
    sender = payload.sender or default_from
    domain = sender.rsplit("@", 1)[-1]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(payload.to)
    if payload.cc:
        message["Cc"] = ", ".join(payload.cc)
    if payload.reply_to:
        message["Reply-To"] = payload.reply_to
    message["Subject"] = payload.subject
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{ctx.idempotency_key}@{domain}>"
    message["X-Job-Ledger-Job-Id"] = str(ctx.job_id)
    message.set_content(payload.body)
    if payload.html is not None:
        message.add_alternative(payload.html, subtype="html")
    return message


def checked_message(
    payload: EmailSendPayload, ctx: jobtypes.JobContext, default_from: str
) -> EmailMessage:
    """`build_message`, and serialised once as the SMTP client will; Permanent if it cannot be."""
    try:
        message = build_message(payload, ctx, default_from)
        message.as_bytes()
    except (ValueError, email.errors.MessageError) as exc:
        raise jobtypes.Permanent(f"the message cannot be written as email: {exc}") from exc
    return message


def _tls_context(config: handler_settings.SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _classify(code: int, text: str) -> jobtypes.Retryable | jobtypes.Permanent:
    if 400 <= code < 500:
        return jobtypes.Retryable(text)
    return jobtypes.Permanent(text)


@jobtypes.job_type("email_send", EmailSendPayload, timeout_seconds=60.0, max_attempts=5)
async def email_send(payload: EmailSendPayload, ctx: jobtypes.JobContext) -> dict[str, Any]:
    config = handler_settings.from_env().smtp
    if config.url is None:
        raise jobtypes.Permanent("SMTP_URL is not set: this worker cannot send email")
    target = parse_smtp_url(config.url)
    message = checked_message(payload, ctx, config.default_from)
    recipients = [*payload.to, *payload.cc, *payload.bcc]
    client = aiosmtplib.SMTP(
        hostname=target.hostname,
        port=target.port,
        username=target.username,
        password=target.password,
        use_tls=target.use_tls,
        start_tls=target.start_tls,
        timeout=config.timeout_seconds,
        tls_context=_tls_context(config) if target.use_tls or target.start_tls else None,
    )
    try:
        async with client:
            refused, response = await client.send_message(
                message, sender=message["From"], recipients=recipients
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        text = f"every recipient was refused ({detail})"
        if any(400 <= code < 500 for code in codes):
            raise jobtypes.Retryable(text) from exc
        raise jobtypes.Permanent(text) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _classify(exc.code, f"SMTP server answered {exc.code} {exc.message}") from exc
    except aiosmtplib.SMTPNotSupported as exc:
        raise jobtypes.Permanent(f"SMTP server does not support what SMTP_URL asks: {exc}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise jobtypes.Retryable(
            f"cannot reach SMTP server {target.hostname}:{target.port}: {exc}"
        ) from exc
    return {
        "message_id": str(message["Message-ID"]),
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: f"{answer.code} {answer.message}" for r, answer in refused.items()},
        "response": str(response),
    }
