"""`data_export`: stream the jobs or events matching a filter to CSV or JSON Lines.

Rows come from a server-side cursor inside one read-only REPEATABLE READ
transaction (a consistent snapshot, never the whole result in memory) and are
written in chunks to a temporary file that is renamed to
`exports/<job id>.<csv|jsonl>` under the storage root once complete. A retried
attempt rewrites the same file. The result names the file (relative to the
storage root), the number of rows and the file's SHA-256.

An export holds only its submitter's tenant's jobs or events: the transaction acts in
the job's tenant (`JobContext.tenant`) and the queries name it too.

JSON columns (payload, result, event data) are written as JSON in JSON Lines and
as JSON text in CSV; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import uuid
from datetime import datetime
from typing import Annotated, Any, BinaryIO, Final, Literal, cast

import asyncpg
import msgspec

from ledger import acting, jobtypes, sqlfile
from workers.handlers import storage

Q = sqlfile.load("workers.handlers")

Status = Literal["pending", "processing", "completed", "failed", "retrying", "cancelled"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

JOB_COLUMNS: Final = (
    "job_id",
    "type",
    "queue",
    "priority",
    "status",
    "attempt",
    "max_attempts",
    "payload",
    "result",
    "error",
    "submitted_by",
    "idempotency_key",
    "version",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
)
EVENT_COLUMNS: Final = (
    "position",
    "job_id",
    "version",
    "type",
    "actor",
    "occurred_at",
    "data",
    "prev_hash",
    "hash",
)
_JSON_COLUMNS: Final = frozenset({"payload", "result", "data"})
_FLUSH_BYTES: Final = 256 * 1024
_PREFETCH: Final = 500


class DataExportPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to export; filters left out match everything. Time bounds are [since, until)."""

    source: Literal["jobs", "events"]
    format: Literal["csv", "jsonl"] = "jsonl"
    # jobs only
    status: Annotated[list[Status], msgspec.Meta(min_length=1)] | None = None
    job_type: Name | None = None
    queue: Name | None = None
    # events only
    event_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z_.]+\.v[0-9]+$")] | None = None
    job_id: uuid.UUID | None = None
    # both: jobs by creation time, events by occurrence time
    since: datetime | None = None
    until: datetime | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None

    def __post_init__(self) -> None:
        if self.source == "events":
            wrong = [n for n in ("status", "job_type", "queue") if getattr(self, n) is not None]
        else:
            wrong = [n for n in ("event_type", "job_id") if getattr(self, n) is not None]
        if wrong:
            raise ValueError(f"filter {', '.join(wrong)} does not apply to {self.source}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")


def _query(payload: DataExportPayload, tenant: str) -> tuple[str, tuple[Any, ...], tuple[str, ...]]:
    """The query, its arguments and its columns: `tenant`'s rows only."""
    if payload.source == "jobs":
        args: tuple[Any, ...] = (
            payload.status,
            payload.job_type,
            payload.queue,
            payload.since,
            payload.until,
            payload.limit,
            tenant,
        )
        return Q["jobs_export"], args, JOB_COLUMNS
    args = (payload.event_type, payload.job_id, payload.since, payload.until, payload.limit, tenant)
    return Q["events_export"], args, EVENT_COLUMNS


class _Writer:
    """Encodes rows, hashes the bytes, and writes them to the file in chunks off the loop."""

    def __init__(self, handle: BinaryIO, fmt: str, columns: tuple[str, ...]) -> None:
        self.handle = handle
        self.format = fmt
        self.columns = columns
        self.digest = hashlib.sha256()
        self.size = 0
        self.rows = 0
        self._buffer = io.StringIO() if fmt == "csv" else None
        self._csv = csv.writer(self._buffer, lineterminator="\n") if self._buffer else None
        self._chunks: list[bytes] = []
        self._pending = 0
        self._encoder = msgspec.json.Encoder()
        if self._csv is not None:
            self._csv.writerow(columns)

    def add(self, row: Any) -> None:
        self.rows += 1
        if self._csv is not None:
            self._csv.writerow([_csv_cell(row[c]) for c in self.columns])
            return
        record = {
            c: msgspec.Raw(row[c].encode()) if c in _JSON_COLUMNS and row[c] is not None else row[c]
            for c in self.columns
        }
        line = self._encoder.encode(record) + b"\n"
        self._chunks.append(line)
        self._pending += len(line)

    def _take(self) -> bytes:
        if self._buffer is not None:
            data = self._buffer.getvalue().encode()
            self._buffer.seek(0)
            self._buffer.truncate()
            return data
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._pending = 0
        return data

    def full(self) -> bool:
        if self._buffer is not None:
            return self._buffer.tell() >= _FLUSH_BYTES
        return self._pending >= _FLUSH_BYTES

    async def flush(self) -> None:
        data = self._take()
        if data:
            self.digest.update(data)
            self.size += len(data)
            await asyncio.to_thread(self.handle.write, data)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@jobtypes.job_type("data_export", DataExportPayload, timeout_seconds=1800.0, max_attempts=3)
async def data_export(payload: DataExportPayload, ctx: jobtypes.JobContext) -> dict[str, Any]:
    if ctx.pool is None:
        raise jobtypes.Permanent("data_export needs the database: the worker gave it no pool")
    query, args, columns = _query(payload, ctx.tenant)
    target = storage.resolve(ctx.storage_root, f"exports/{ctx.job_id}.{payload.format}")
    output = storage.AtomicFile(target)
    writer = _Writer(await asyncio.to_thread(output.open), payload.format, columns)
    try:
        async with ctx.pool.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await acting.act_in(conn, ctx.tenant)  # its submitter's tenant, nobody else's
                async for row in conn.cursor(query, *args, prefetch=_PREFETCH):
                    writer.add(row)
                    if writer.full():
                        await writer.flush()
        await writer.flush()
        await asyncio.to_thread(output.commit)
    except BaseException:
        output.discard()
        raise
    return {
        "path": storage.relative_to_root(ctx.storage_root, target),
        "format": payload.format,
        "source": payload.source,
        "rows": writer.rows,
        "bytes": writer.size,
        "sha256": writer.digest.hexdigest(),
    }
