"""file_process on real files under a storage root, and the refusals of paths that escape it."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from ledger import jobtypes
from workers.handlers import file_process, storage


async def run(payload: dict[str, str], ctx: jobtypes.JobContext) -> dict[str, object]:
    job = jobtypes.REGISTRY.get("file_process")
    typed = job.validate(payload)
    result = await file_process.file_process(typed, ctx)  # type: ignore[arg-type]
    assert msgspec.json.decode(msgspec.json.encode(result)) == result  # what the pool records
    return result


async def test_checksum_is_the_files_sha256(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    data = os.urandom(200_000)
    (storage_root / "in").mkdir()
    (storage_root / "in" / "blob.bin").write_bytes(data)

    result = await run({"path": "in/blob.bin", "operation": "checksum"}, make_ctx())

    assert result == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


async def test_gzip_writes_a_compressed_copy_beside_the_file(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    text = b"".join(b"line %d of the report\n" % i for i in range(5000))
    (storage_root / "report.txt").write_bytes(text)

    result = await run({"path": "report.txt", "operation": "gzip"}, make_ctx())

    written = storage_root / "report.txt.gz"
    assert result["path"] == "report.txt.gz"
    assert result["bytes"] == written.stat().st_size < len(text)
    assert result["source_bytes"] == len(text)
    assert result["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    assert gzip.decompress(written.read_bytes()) == text
    assert sorted(os.listdir(storage_root)) == ["report.txt", "report.txt.gz"]


async def test_gzip_run_twice_writes_the_same_bytes(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    (storage_root / "a.csv").write_bytes(b"x,y\n1,2\n")
    first = await run({"path": "a.csv", "operation": "gzip"}, make_ctx())
    second = await run({"path": "a.csv", "operation": "gzip"}, make_ctx())
    assert first == second


@pytest.mark.parametrize(
    ("content", "lines"),
    [(b"", 0), (b"one\n", 1), (b"one\ntwo", 2), (b"a\nb\nc\n", 3), (b"\n\n", 2)],
)
async def test_line_count_counts_lines_including_an_unterminated_last_one(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext], content: bytes, lines: int
) -> None:
    (storage_root / "f.txt").write_bytes(content)
    assert await run({"path": "f.txt", "operation": "line_count"}, make_ctx()) == {"lines": lines}


async def test_line_count_across_chunk_boundaries(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    content = b"x" * (storage.CHUNK - 1) + b"\n" + b"y" * storage.CHUNK + b"\nlast"
    (storage_root / "big.txt").write_bytes(content)
    assert await run({"path": "big.txt", "operation": "line_count"}, make_ctx()) == {"lines": 3}


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "in/../../outside.txt"])
async def test_a_path_escaping_the_root_is_refused_permanently(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext], path: str
) -> None:
    (storage_root.parent / "outside.txt").write_text("secret")
    (storage_root / "in").mkdir()
    with pytest.raises(jobtypes.Permanent, match=r"escapes|absolute"):
        await run({"path": path, "operation": "checksum"}, make_ctx())


async def test_a_symlink_pointing_out_of_the_root_is_refused_permanently(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    outside = storage_root.parent / "outside.txt"
    outside.write_text("secret")
    (storage_root / "link.txt").symlink_to(outside)
    with pytest.raises(jobtypes.Permanent, match="escapes"):
        await run({"path": "link.txt", "operation": "gzip"}, make_ctx())
    assert not (storage_root.parent / "outside.txt.gz").exists()


async def test_a_symlink_inside_the_root_is_followed(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    (storage_root / "real.txt").write_bytes(b"a\nb\n")
    (storage_root / "alias.txt").symlink_to(storage_root / "real.txt")
    assert await run({"path": "alias.txt", "operation": "line_count"}, make_ctx()) == {"lines": 2}


async def test_a_missing_file_is_a_permanent_error(
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    with pytest.raises(jobtypes.Permanent, match="no file"):
        await run({"path": "nope.txt", "operation": "checksum"}, make_ctx())


@pytest.mark.parametrize("path", ["a" * 300, "in/" + "b" * 256 + "/c.txt"])
async def test_a_path_too_long_is_a_permanent_error_without_the_storage_root(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext], path: str
) -> None:
    (storage_root / "in").mkdir()
    with pytest.raises(jobtypes.Permanent, match="too long") as caught:
        await run({"path": path, "operation": "checksum"}, make_ctx())
    assert str(storage_root) not in str(caught.value)  # pytest's tmp_path is resolved


async def test_a_gzip_output_name_too_long_is_a_permanent_error_without_the_storage_root(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    name = "n" * 250  # a legal name, but `.<name>.<random>.tmp` beside it is not
    (storage_root / name).write_bytes(b"data")
    with pytest.raises(jobtypes.Permanent, match="too long") as caught:
        await run({"path": name, "operation": "gzip"}, make_ctx())
    assert str(storage_root) not in str(caught.value)
    assert os.listdir(storage_root) == [name]


def test_an_unknown_operation_is_refused_at_validation_with_its_field() -> None:
    with pytest.raises(jobtypes.InvalidPayload) as caught:
        jobtypes.REGISTRY.get("file_process").validate({"path": "a", "operation": "delete"})
    assert caught.value.path == "$.operation"


def test_an_interrupted_write_leaves_no_file(storage_root: Path) -> None:
    target = storage_root / "out.bin"

    def interrupted() -> None:
        with storage.atomic_writer(target) as handle:
            handle.write(b"half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted()
    assert list(storage_root.iterdir()) == []
