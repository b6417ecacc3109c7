"""`file_process`: one operation on a file under the storage root.

- `checksum`: `{"sha256", "bytes"}` of the file;
- `gzip`: writes `<path>.gz` beside it (atomically, reproducibly: no name or time
  in the gzip header, so a retry writes the same bytes); `{"path", "bytes",
  "source_bytes", "sha256"}` of the compressed file;
- `line_count`: `{"lines"}`, the number of lines (a last line without a final
  newline counts too, unlike `wc -l`).

The path is relative to the storage root; one that escapes it (`..`, absolute,
a symlink pointing out) or that the file system cannot take (too long, not a
directory, no access) is refused as a permanent error, named as the payload gave
it, never by its absolute path. The work is file I/O and
compression, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ledger import jobtypes
from workers.handlers import storage

Operation = Literal["checksum", "gzip", "line_count"]


class FileProcessPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    operation: Operation


@jobtypes.job_type("file_process", FileProcessPayload, timeout_seconds=600.0, max_attempts=3)
async def file_process(payload: FileProcessPayload, ctx: jobtypes.JobContext) -> dict[str, Any]:
    try:
        return await _process(payload, ctx)
    except OSError as exc:  # its text names the absolute path under the storage root
        raise storage.os_failure(payload.path, exc) from exc


async def _process(payload: FileProcessPayload, ctx: jobtypes.JobContext) -> dict[str, Any]:
    source = storage.existing_file(ctx.storage_root, payload.path)
    match payload.operation:
        case "checksum":
            digest, size = await asyncio.to_thread(storage.sha256_file, source)
            return {"sha256": digest, "bytes": size}
        case "gzip":
            return await asyncio.to_thread(_gzip, ctx.storage_root, source)
        case "line_count":
            return {"lines": await asyncio.to_thread(_line_count, source)}


def _gzip(root: Path, source: Path) -> dict[str, Any]:
    target = source.with_name(source.name + ".gz")
    source_bytes = 0
    with storage.atomic_writer(target) as out, source.open("rb") as src:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as zipped:
            while chunk := src.read(storage.CHUNK):
                zipped.write(chunk)
                source_bytes += len(chunk)
    digest, size = storage.sha256_file(target)
    return {
        "path": storage.relative_to_root(root, target),
        "bytes": size,
        "source_bytes": source_bytes,
        "sha256": digest,
    }


def _line_count(source: Path) -> int:
    lines = 0
    last = b""
    with source.open("rb") as handle:
        while chunk := handle.read(storage.CHUNK):
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        lines += 1
    return lines
