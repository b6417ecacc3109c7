"""`ledger seed` submits a valid sample job of every registered type, through the event store."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec
import pytest

import workers.handlers  # noqa: F401 - the built-in job types
from ledger import cli, config, jobtypes, store, submission
from projections import current
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
    assert seeded.skipped == []
    names = [name for name, _ in seeded.submitted]
    # The process's registry: the built-ins, and any plugin another test loaded into it.
    assert set(names) == set(jobtypes.REGISTRY.names())
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
    assert await cli._seed(settings, per_type=1) == 0
    out = capsys.readouterr().out
    registered = len(jobtypes.REGISTRY.names())  # the built-ins, and plugins other tests loaded
    assert registered >= 4
    assert out.count("submitted ") == registered
    count = await conn.fetchval("SELECT count(*) FROM jobs WHERE submitted_by = 'seed'")
    assert count == registered
