"""`ledger seed` submits a valid sample job of every registered type, through the event store."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec
import pytest

import workers.handlers  # noqa: F401 - the built-in job types
from ledger import config, jobtypes, store, submission
from projections import current
from service import cli
from tests.conftest import Databases
from workers import seed


class NeedsAName(msgspec.Struct, frozen=True, kw_only=True):
    name: str


class AllDefaults(msgspec.Struct, frozen=True, kw_only=True):
    greeting: str = "hello"


async def test_every_built_in_type_gets_a_sample_job_with_a_valid_payload(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    seeded = await seed.seed(
        conn, submission.Submitter(event_store=event_store), tmp_path, per_type=2
    )
    names = [name for name, _ in seeded.submitted]
    skipped = {name for name, _ in seeded.skipped}
    # The process's registry: the built-ins, and any plugin another test loaded into it
    # (one whose payload has no defaults is skipped; a built-in never is).
    assert set(names) | skipped == set(jobtypes.REGISTRY.names())
    assert {"data_export", "email_send", "file_process", "image_resize"} <= set(names)
    assert all(names.count(name) == 2 for name in names)
    for name, job_id in seeded.submitted:
        state = await current.get(conn, job_id)
        assert state is not None
        assert (state.type, state.status, state.submitted_by) == (name, "pending", "seed")
        jobtypes.REGISTRY.get(name).validate(state.payload)
    assert (tmp_path / seed.IMAGE).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / seed.TEXT).read_text().count("\n") == 42


async def test_a_plugin_type_uses_its_defaults_or_is_skipped_with_the_reason(
    conn: asyncpg.Connection, event_store: store.EventStore, tmp_path: Path
) -> None:
    registry = jobtypes.Registry()

    async def handler(payload: object, ctx: jobtypes.JobContext) -> None:
        return None

    jobtypes.job_type("greet", AllDefaults, registry=registry)(handler)
    jobtypes.job_type("named", NeedsAName, registry=registry)(handler)
    seeded = await seed.seed(conn, submission.Submitter(registry, event_store), tmp_path)
    assert [name for name, _ in seeded.submitted] == ["greet"]
    [(name, reason)] = seeded.skipped
    assert name == "named" and "name" in reason


async def test_the_seed_command_submits_through_the_configured_database(
    dbs: Databases, conn: asyncpg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = config.Settings(
        database_url=dbs.app, migrate_database_url=dbs.admin, storage_root=tmp_path
    )
    assert await cli.jobs.seed(settings, per_type=1) == 0
    printed = capsys.readouterr()
    # The built-ins, and plugins other tests loaded (skipped when they need a payload).
    seeded = len(jobtypes.REGISTRY.names()) - printed.err.count("skipped ")
    assert seeded >= 4
    assert printed.out.count("submitted ") == seeded
    count = await conn.fetchval("SELECT count(*) FROM jobs WHERE submitted_by = 'seed'")
    assert count == seeded
