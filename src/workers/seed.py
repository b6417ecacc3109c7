"""`ledger seed`: sample jobs of every registered job type, submitted like any other job.

For a first look at the service (the dashboard, the metrics): each built-in type
gets a payload that works on a fresh install (the image and text files it reads
are written under the storage root first; the email goes nowhere unless SMTP_URL
is set, so it shows a failure). A type from a plugin gets its payload's defaults
when it has them; one that needs fields it cannot guess is reported and skipped.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import asyncpg
import msgspec

from ledger import jobtypes, submission

ACTOR: Final = "seed"
IMAGE: Final = "samples/seed.png"
TEXT: Final = "samples/seed.txt"

SAMPLES: Final[Mapping[str, dict[str, Any]]] = {
    "image_resize": {"source_path": IMAGE, "width": 64, "height": 64, "format": "webp"},
    "file_process": {"path": TEXT, "operation": "line_count"},
    "data_export": {"source": "jobs", "format": "jsonl", "limit": 100},
    "email_send": {
        "to": ["ops@example.com"],
        "subject": "Job Ledger seed",
        "body": "A sample message from `ledger seed`.",
    },
}


class Seeded(msgspec.Struct, frozen=True, kw_only=True):
    submitted: list[tuple[str, uuid.UUID]]
    skipped: list[tuple[str, str]]


def write_sample_files(storage_root: Path) -> None:
    """The files the sample jobs read: a small PNG and a text file."""
    from PIL import Image

    samples = storage_root / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (256, 160), (46, 125, 50)).save(buffer, format="PNG")
    (storage_root / IMAGE).write_bytes(buffer.getvalue())
    lines = [f"line {n}: every transition recorded, hash-chained and replayable" for n in range(42)]
    (storage_root / TEXT).write_text("\n".join(lines) + "\n")


def sample_payload(job: jobtypes.JobType) -> dict[str, Any]:
    """The sample for a built-in type, else the payload's defaults (InvalidPayload if none)."""
    payload = SAMPLES.get(job.name, {})
    job.validate(payload)
    return dict(payload)


async def seed(
    conn: asyncpg.Connection,
    submitter: submission.Submitter,
    storage_root: Path,
    *,
    per_type: int = 1,
) -> Seeded:
    """Submit `per_type` sample jobs of every type in the submitter's registry."""
    write_sample_files(storage_root)
    submitted: list[tuple[str, uuid.UUID]] = []
    skipped: list[tuple[str, str]] = []
    for name in submitter.registry.names():
        job = submitter.registry.get(name)
        try:
            payload = sample_payload(job)
        except jobtypes.InvalidPayload as exc:
            skipped.append((name, exc.message))
            continue
        for _ in range(per_type):
            created = await submitter.submit(conn, name, payload, actor=ACTOR)
            submitted.append((name, created.job_id))
    return Seeded(submitted=submitted, skipped=skipped)
