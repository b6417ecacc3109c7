"""Structured logs: JSON lines for machines, key=value for a terminal, job fields on every line.

`configure(level, format)` installs one handler on the root logger (uvicorn's loggers
propagate to it). Inside `job_context(job_id=, job_type=, attempt=)` every record
carries those fields, whichever logger writes it; `extra={...}` adds fields to one
record. Nothing secret reaches the output by default: fields named like a token,
password, secret, authorization header or payload are replaced by `[redacted]`, and
bearer tokens, JWTs, `token=` query parameters and passwords in connection URLs are
masked inside messages too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Final, NoReturn

REDACTED: Final = "[redacted]"
JOB_FIELDS: Final = ("job_id", "job_type", "attempt")

_NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "ledger_log_context", default=_NOTHING
)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_SECRET_KEY: Final = re.compile(
    r"token|secret|password|passwd|authorization|cookie|api_key|payload|credential", re.I
)
_SECRET_TEXT: Final = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)([?&](?:access_)?token=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
)


def redact_text(text: str) -> str:
    """`text` with bearer tokens, JWTs, token query parameters and URL passwords masked."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


class job_context:  # lowercase: used like the function-style context managers beside it
    """Every record logged inside the block (in this task) carries the job's id, type and attempt.

    A class rather than a generator: a busy worker opens one per job, and this costs
    a third of what @contextmanager does.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, *, job_id: object, job_type: str, attempt: int | None = None) -> None:
        fields = {**_context.get(), "job_id": str(job_id), "job_type": job_type}
        if attempt is not None:
            fields["attempt"] = attempt
        self._fields = fields
        self._token: contextvars.Token[Mapping[str, Any]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set(self._fields)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)


def job_fields(*, job_id: object, job_type: str, attempt: int | None = None) -> dict[str, Any]:
    """A job's fields for one record's `extra=`, where no `job_context` is open."""
    fields: dict[str, Any] = {"job_id": str(job_id), "job_type": job_type}
    if attempt is not None:
        fields["attempt"] = attempt
    return fields


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Extra fields on every record logged inside the block (say `worker_id`)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: the bound context, then its `extra`, redacted."""
    found: dict[str, Any] = dict(_context.get())
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            found[key] = value
    return {key: _redact_value(key, value) for key, value in found.items()}


def _timestamp(record: logging.LogRecord) -> str:
    instant = datetime.fromtimestamp(record.created, UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def _message(record: logging.LogRecord) -> str:
    return redact_text(record.getMessage())


def _exception(record: logging.LogRecord) -> str | None:
    if record.exc_info and record.exc_info[1] is not None:
        return redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip())
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        for key, value in fields_of(record).items():
            line.setdefault(key, value)
        error = _exception(record)
        if error is not None:
            line["exc"] = error
        return json.dumps(line, default=str, ensure_ascii=False)


def _kv(value: Any) -> str:
    text = str(value)
    if text == "" or re.search(r'[\s="]', text):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=ledger msg="..." job_id=...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_kv(_message(record))}",
        ]
        parts.extend(f"{key}={_kv(value)}" for key, value in fields_of(record).items())
        line = " ".join(parts)
        error = _exception(record)
        return line if error is None else f"{line}\n{error}"


def formatter_for(fmt: str, stream: IO[str]) -> logging.Formatter:
    """`json`, `text`, or `auto`: text on a terminal, JSON lines otherwise."""
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    return KeyValueFormatter() if fmt == "text" else JsonFormatter()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `stream`, or to whatever sys.stderr is at the time (tests swap it)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._fixed = stream
        super().__init__(stream)

    @property
    def stream(self) -> IO[str]:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (stderr) in `fmt`.

    Replaces a handler an earlier call installed and leaves any other (a test
    runner's) in place; uvicorn's loggers propagate to it.
    """
    handler = _Handler(stream)
    handler.setFormatter(formatter_for(fmt, stream or sys.stderr))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def exit_at_once(signum: int) -> NoReturn:
    """End the process now (a second stop signal), its log flushed; the exit status says
    which signal it was (128 + signum), as a shell reports it."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(128 + signum)
