"""Recompute every job's hash chain from the stored events and name the first broken link (invariant 6)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec

from ledger import events as ev
from ledger import sqlfile

Q = sqlfile.load("audit")


class BrokenLink(msgspec.Struct, frozen=True, kw_only=True):
    """The first event of a job whose chain does not hold, and why."""

    job_id: uuid.UUID
    version: int
    reason: str
    expected: str  # hex
    found: str  # hex

    def describe(self) -> str:
        return (
            f"job {self.job_id} version {self.version}: {self.reason} "
            f"(expected {self.expected}, found {self.found})"
        )


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    jobs: int
    events: int
    broken: list[BrokenLink]

    @property
    def ok(self) -> bool:
        return not self.broken


async def _rows(
    conn: asyncpg.Connection, job_id: uuid.UUID | None
) -> AsyncIterator[asyncpg.Record]:
    if job_id is None:
        async for row in conn.cursor(Q["events_chain_scan"], prefetch=2000):
            yield row
    else:
        for row in await conn.fetch(Q["events_chain_scan_job"], job_id):
            yield row


async def verify(conn: asyncpg.Connection, job_id: uuid.UUID | None = None) -> ChainReport:
    """Walk the chains (all jobs, or one) and report each job's first broken link."""
    broken: list[BrokenLink] = []
    jobs = events = 0
    current: uuid.UUID | None = None
    expected_version = 1
    prev = ev.GENESIS_HASH
    skip = False
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in _rows(conn, job_id):
            events += 1
            if row["job_id"] != current:
                current, expected_version, prev, skip = row["job_id"], 1, ev.GENESIS_HASH, False
                jobs += 1
            if skip:
                continue
            link = _check(row, expected_version, prev)
            if link is not None:
                broken.append(link)
                skip = True
                continue
            expected_version += 1
            prev = bytes(row["hash"])
    return ChainReport(jobs=jobs, events=events, broken=broken)


def _check(row: asyncpg.Record, expected_version: int, prev: bytes) -> BrokenLink | None:
    job_id, version = row["job_id"], row["version"]
    if version != expected_version:
        return BrokenLink(
            job_id=job_id,
            version=expected_version,
            reason=f"version {expected_version} is missing (next stored is {version})",
            expected=prev.hex(),
            found="",
        )
    stored_prev = bytes(row["prev_hash"])
    if stored_prev != prev:
        return BrokenLink(
            job_id=job_id,
            version=version,
            reason="previous-hash link does not match the previous event",
            expected=prev.hex(),
            found=stored_prev.hex(),
        )
    recomputed = ev.stored_hash(
        prev,
        type=row["type"],
        job_id=job_id,
        version=version,
        actor=row["actor"],
        occurred_at=row["occurred_at"],
        data=row["data"],
        tenant=row.get("tenant", ev.DEFAULT_TENANT),
    )
    stored = bytes(row["hash"])
    if recomputed != stored:
        return BrokenLink(
            job_id=job_id,
            version=version,
            reason="event content does not match its hash",
            expected=recomputed.hex(),
            found=stored.hex(),
        )
    return None
