"""Structured logs: JSON lines or key=value, job fields on every line, secrets never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from ledger import logs

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def uninstall(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logs._Handler):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    level = logging.getLogger().level
    logs.configure("debug", "json", stream)
    try:
        yield stream
    finally:
        uninstall(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_message_and_extra(output: io.StringIO) -> None:
    logging.getLogger("ledger.test").info("claimed %s jobs", 3, extra={"queue": "default"})
    [line] = lines(output)
    assert line["level"] == "info"
    assert line["logger"] == "ledger.test"
    assert line["msg"] == "claimed 3 jobs"
    assert line["queue"] == "default"
    assert str(line["ts"]).endswith("Z")


def test_every_line_inside_a_job_context_names_the_job(output: io.StringIO) -> None:
    job_id = uuid.uuid4()
    with logs.job_context(job_id=job_id, job_type="image.resize", attempt=2):
        logging.getLogger("workers.pool").info("running")
        logging.getLogger("some.library").warning("slow")
    logging.getLogger("workers.pool").info("idle")
    running, slow, idle = lines(output)
    for line in (running, slow):
        assert (line["job_id"], line["job_type"], line["attempt"]) == (
            str(job_id),
            "image.resize",
            2,
        )
    assert "job_id" not in idle


async def test_job_context_stays_with_its_own_task(output: io.StringIO) -> None:
    async def run(job: str) -> None:
        with logs.job_context(job_id=job, job_type="t", attempt=1):
            await asyncio.sleep(0)
            logging.getLogger("workers.pool").info("done %s", job)

    await asyncio.gather(run("a"), run("b"))
    done = [line for line in lines(output) if line["logger"] == "workers.pool"]
    assert {(line["msg"], line["job_id"]) for line in done} == {
        ("done a", "a"),
        ("done b", "b"),
    }


def test_secrets_and_payloads_are_redacted(output: io.StringIO) -> None:
    log = logging.getLogger("service.http")
    log.info("GET /api/v1/events/stream?token=%s&after=5 Authorization: Bearer %s", JWT, "abc.def")
    log.info(
        "submitted",
        extra={"payload": {"card": "4111"}, "authorization": "Bearer x", "jwt_secret": "k"},
    )
    log.info("connecting to postgresql://ledger:hunter2@db:5432/ledger")
    text = output.getvalue()
    for secret in (JWT, "abc.def", "4111", "hunter2", "Bearer x"):
        assert secret not in text
    first, second, third = lines(output)
    assert "token=[redacted]&after=5" in str(first["msg"])
    assert second["payload"] == second["authorization"] == second["jwt_secret"] == "[redacted]"
    assert third["msg"] == "connecting to postgresql://ledger:[redacted]@db:5432/ledger"


def test_exceptions_are_one_json_line_with_the_traceback(output: io.StringIO) -> None:
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("ledger").exception("handler failed")
    [line] = lines(output)
    assert "ValueError" in str(line["exc"])
    assert JWT not in str(line["exc"])


def test_text_format_on_a_terminal_is_key_value() -> None:
    stream = Tty()
    level = logging.getLogger().level
    logs.configure("info", "auto", stream)
    try:
        with logs.job_context(job_id="j1", job_type="report", attempt=1):
            logging.getLogger("workers").info("job finished", extra={"status": "completed"})
        logging.getLogger("workers").debug("not at info")
    finally:
        uninstall(level)
    [line] = stream.getvalue().splitlines()
    assert 'level=info logger=workers msg="job finished"' in line
    assert line.endswith("job_id=j1 job_type=report attempt=1 status=completed")


def test_auto_format_off_a_terminal_is_json() -> None:
    assert isinstance(logs.formatter_for("auto", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("text", io.StringIO()), logs.KeyValueFormatter)


def test_job_fields_name_a_job_on_one_line_outside_a_context(output: io.StringIO) -> None:
    fields = logs.job_fields(job_id="j2", job_type="email_send", attempt=3)
    logging.getLogger("workers.leases").warning("lease expired", extra=fields)
    [line] = lines(output)
    assert (line["job_id"], line["job_type"], line["attempt"]) == ("j2", "email_send", 3)
