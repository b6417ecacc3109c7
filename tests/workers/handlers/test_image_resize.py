"""image_resize on images the tests make: fetched from a local HTTP server or read from storage."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from PIL import Image

from ledger import jobtypes
from tests.workers.handlers.conftest import HttpServer, Route
from workers.handlers import image_resize, pixels


def make_image(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    image = Image.new(mode, (width, height))
    image.putdata(
        [
            (x * 255 // width, y * 255 // height, 128) + ((200,) if mode == "RGBA" else ())
            for y in range(height)
            for x in range(width)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


async def run(payload: dict[str, Any], ctx: jobtypes.JobContext) -> dict[str, Any]:
    typed = jobtypes.REGISTRY.get("image_resize").validate(payload)
    result = await image_resize.image_resize(typed, ctx)  # type: ignore[arg-type]
    assert msgspec.json.decode(msgspec.json.encode(result)) == result  # what the pool records
    return result


def check_output(result: dict[str, Any], root: Path, size: tuple[int, int], fmt: str) -> None:
    written = root / result["path"]
    data = written.read_bytes()
    assert result["bytes"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    with Image.open(written) as image:
        assert image.size == size
        assert image.format == fmt
    assert (result["width"], result["height"]) == size


async def test_resizes_an_image_downloaded_from_a_url(
    http_server: HttpServer,
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("FETCH_ALLOWED_NETWORKS", "127.0.0.1/32")
    http_server.routes["/photo.png"] = Route(
        body=make_image(160, 120), headers={"Content-Type": "image/png"}
    )
    ctx = make_ctx()

    result = await run({"image_url": http_server.url("/photo.png"), "width": 80, "height": 80}, ctx)

    assert result["path"] == f"images/{ctx.job_id}.png"
    assert (result["source_width"], result["source_height"]) == (160, 120)
    check_output(result, storage_root, (80, 60), "PNG")


async def test_resizes_a_file_from_storage_to_exact_size_and_another_format(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    (storage_root / "uploads").mkdir()
    (storage_root / "uploads" / "in.png").write_bytes(make_image(64, 64, mode="RGBA"))
    ctx = make_ctx()

    result = await run(
        {
            "source_path": "uploads/in.png",
            "width": 30,
            "height": 10,
            "keep_aspect": False,
            "format": "jpeg",
        },
        ctx,
    )

    assert result["path"] == f"images/{ctx.job_id}.jpg"
    assert result["format"] == "jpeg"
    check_output(result, storage_root, (30, 10), "JPEG")


async def test_a_retried_attempt_replaces_its_own_output(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    (storage_root / "in.webp").write_bytes(make_image(50, 40, fmt="WEBP"))
    ctx = make_ctx()
    payload = {"source_path": "in.webp", "width": 25, "height": 25}
    first = await run(payload, ctx)
    second = await run(payload, ctx)
    assert first["path"] == second["path"] == f"images/{ctx.job_id}.webp"
    assert sorted(p.name for p in (storage_root / "images").iterdir()) == [f"{ctx.job_id}.webp"]


async def test_an_image_over_the_pixel_limit_is_refused(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("IMAGE_MAX_PIXELS", "1000")
    (storage_root / "wide.png").write_bytes(make_image(100, 20))
    with pytest.raises(jobtypes.Permanent, match="more than the limit of 1000"):
        await run({"source_path": "wide.png", "width": 10, "height": 10}, make_ctx())
    assert not (storage_root / "images").exists()


async def test_a_file_that_is_not_an_image_is_refused(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    (storage_root / "notes.png").write_bytes(b"this is not a picture")
    with pytest.raises(jobtypes.Permanent, match="not an image"):
        await run({"source_path": "notes.png", "width": 10, "height": 10}, make_ctx())


async def test_a_private_image_url_is_refused_without_configuration(
    http_server: HttpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    http_server.routes["/photo.png"] = Route(body=make_image(8, 8))
    with pytest.raises(jobtypes.Permanent, match="loopback"):
        await run({"image_url": http_server.url("/photo.png"), "width": 4, "height": 4}, make_ctx())
    assert http_server.requests == []


async def test_an_oversized_download_is_refused(
    http_server: HttpServer,
    handler_env: pytest.MonkeyPatch,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("FETCH_ALLOW_PRIVATE", "1")
    handler_env.setenv("FETCH_MAX_BYTES", "1024")
    noise = Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 20_000
    http_server.routes["/huge.png"] = Route(body=buffer.getvalue(), content_length=False)
    with pytest.raises(jobtypes.Permanent, match="FETCH_MAX_BYTES"):
        await run({"image_url": http_server.url("/huge.png"), "width": 4, "height": 4}, make_ctx())


async def test_a_source_path_escaping_the_root_is_refused(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    (storage_root.parent / "secret.png").write_bytes(make_image(8, 8))
    with pytest.raises(jobtypes.Permanent, match="escapes"):
        await run({"source_path": "../secret.png", "width": 4, "height": 4}, make_ctx())


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"image_url": "https://x.test/a.png", "width": 0, "height": 10}, "$.width"),
        ({"image_url": "https://x.test/a.png", "width": 10, "height": 10_001}, "$.height"),
        ({"image_url": "ftp://x.test/a.png", "width": 10, "height": 10}, "$.image_url"),
        (
            {"image_url": "https://x.test/a.png", "width": 10, "height": 10, "format": "gif"},
            "$.format",
        ),
        ({"width": 10, "height": 10}, "$"),
        ({"image_url": "https://x.test/a", "source_path": "a.png", "width": 1, "height": 1}, "$"),
    ],
)
def test_invalid_payloads_name_the_field(payload: dict[str, Any], path: str) -> None:
    with pytest.raises(jobtypes.InvalidPayload) as caught:
        jobtypes.REGISTRY.get("image_resize").validate(payload)
    assert caught.value.path == path


async def test_an_image_larger_than_the_whole_decoding_budget_is_refused(
    handler_env: pytest.MonkeyPatch,
    storage_root: Path,
    make_ctx: Callable[..., jobtypes.JobContext],
) -> None:
    handler_env.setenv("IMAGE_DECODE_BUDGET_PIXELS", "1000")
    (storage_root / "wide.png").write_bytes(make_image(100, 20))
    with pytest.raises(jobtypes.Permanent, match="whole decoding budget of 1000 pixels"):
        await run({"source_path": "wide.png", "width": 10, "height": 10}, make_ctx())


async def test_a_large_image_is_shrunk_to_its_exact_output_size(
    storage_root: Path, make_ctx: Callable[..., jobtypes.JobContext]
) -> None:
    (storage_root / "big.png").write_bytes(make_image(1000, 600, mode="RGBA"))
    (storage_root / "big.jpg").write_bytes(make_image(1000, 600, fmt="JPEG"))
    png = await run({"source_path": "big.png", "width": 90, "height": 90}, make_ctx())
    check_output(png, storage_root, (90, 54), "PNG")
    jpeg = await run({"source_path": "big.jpg", "width": 90, "height": 90}, make_ctx())
    check_output(jpeg, storage_root, (90, 54), "JPEG")
    assert (jpeg["source_width"], jpeg["source_height"]) == (1000, 600)


async def test_a_job_that_does_not_fit_the_budget_waits_its_turn() -> None:
    budget = pixels.PixelBudget(100)
    await budget.acquire(60)
    second = asyncio.ensure_future(budget.acquire(60))
    third = asyncio.ensure_future(budget.acquire(10))  # fits, but waits behind the second
    await asyncio.sleep(0)
    assert not second.done() and not third.done()
    budget.release(60)
    await asyncio.wait_for(asyncio.gather(second, third), timeout=5)
    assert budget.used == 70
