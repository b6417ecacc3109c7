"""The client's schedule calls against a real `ledger api` (and `ledger worker`, both
running the scheduler): create, read, list, replace, pause, resume, trigger, backfill,
slots and delete, and their typed problems."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ledger import client
from tests.client.conftest import Api, Mint
from tests.workers.conftest import eventually

pytestmark = pytest.mark.slow

NOOP = client.Submission(job_type="test.noop", payload={})
SCOPES = ("schedules:write", "jobs:read")


def name() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def test_a_schedule_is_created_changed_fired_and_deleted(api: Api, mint: Mint) -> None:
    schedule_id = name()
    with client.Client(api.url, token=mint(*SCOPES)) as ledger:
        created = ledger.create_schedule(
            schedule_id, NOOP, cron="0 3 * * *", timezone="Europe/Paris", overlap="allow_all"
        )
        assert (created.id, created.spec.cron, created.version) == (schedule_id, "0 3 * * *", 1)
        assert created.next_slot is not None and created.next_slot.hour in (1, 2)  # 03:00 Paris
        assert ledger.schedule(schedule_id) == created
        assert schedule_id in [s.id for s in ledger.schedules()]

        paused = ledger.pause_schedule(schedule_id, note="migration")
        assert (paused.paused, paused.note) == (True, "migration")
        assert ledger.resume_schedule(schedule_id).paused is False

        fired = ledger.trigger_schedule(schedule_id)
        assert (fired.job.schedule_id, fired.job.type) == (schedule_id, "test.noop")
        backfilled = ledger.backfill_schedule(
            schedule_id,
            datetime(2026, 5, 1, tzinfo=UTC),
            datetime(2026, 5, 3, tzinfo=UTC),
        )
        assert [s.outcome for s in backfilled.slots] == ["fired", "fired"]
        assert ledger.get(backfilled.slots[0].job_id).schedule_slot == backfilled.slots[0].slot  # type: ignore[arg-type]

        replaced = ledger.update_schedule(
            schedule_id, client.ScheduleSpec(job=NOOP, interval_seconds=3600)
        )
        assert (replaced.spec.interval_seconds, replaced.spec.cron) == (3600, None)
        assert replaced.next_slot is not None and replaced.next_slot.minute == 0
        start = replaced.next_slot
        upcoming = ledger.schedule_slots(schedule_id, start, start + timedelta(hours=2))
        assert [(s.slot, s.outcome) for s in upcoming] == [
            (start + timedelta(hours=n), "pending") for n in range(3)
        ]

        gone = ledger.delete_schedule(schedule_id)
        assert gone.version == replaced.version + 1
        with pytest.raises(client.NotFound):
            ledger.schedule(schedule_id)


def test_bad_schedules_and_missing_scopes_are_typed_problems(api: Api, mint: Mint) -> None:
    with client.Client(api.url, token=mint(*SCOPES)) as ledger:
        with pytest.raises(client.InvalidRequest) as bad:
            ledger.create_schedule(name(), NOOP, cron="61 * * * *")
        assert 400 <= bad.value.status < 500
        schedule_id = name()
        ledger.create_schedule(schedule_id, NOOP, interval_seconds=60)
        with pytest.raises(client.Conflict):
            ledger.create_schedule(schedule_id, NOOP, interval_seconds=60)
    with client.Client(api.url, token=mint("jobs:read")) as reader:
        assert reader.schedule(schedule_id).id == schedule_id
        with pytest.raises(client.Forbidden):
            reader.pause_schedule(schedule_id)


async def test_the_async_client_sees_an_every_second_schedule_s_slots_fired(
    api: Api, mint: Mint
) -> None:
    schedule_id = name()
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    last = first + timedelta(seconds=2)
    async with client.AsyncClient(api.url, token=mint(*SCOPES)) as ledger:
        await ledger.create_schedule(
            schedule_id,
            NOOP,
            cron="* * * * * *",
            overlap="allow_all",
            start_at=first,
            end_at=last,
        )

        async def all_fired() -> list[client.Slot] | None:
            slots = await ledger.schedule_slots(schedule_id, first, last)
            return slots if [s.outcome for s in slots] == ["fired"] * 3 else None

        slots = await eventually(all_fired, within=30, every=0.2)
        assert [s.slot for s in slots] == [first + timedelta(seconds=n) for n in range(3)]
        jobs = [await ledger.get(s.job_id) for s in slots if s.job_id is not None]
        assert [(j.schedule_id, j.schedule_slot) for j in jobs] == [
            (schedule_id, s.slot) for s in slots
        ]
        assert (await ledger.schedule(schedule_id)).next_slot is None
        assert schedule_id in [s.id for s in await ledger.schedules()]
        await ledger.delete_schedule(schedule_id)
