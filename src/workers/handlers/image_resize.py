"""`image_resize`: fetch or read an image, resize it with Pillow, store the result.

The source is either `image_url` (an http/https URL, downloaded through the
guarded `fetch`) or `source_path` (a file under the storage root). The output is
written atomically to `images/<job id>.<format>` under the storage root, so a
retried attempt replaces its own output. Decoding is CPU-bound and runs in a
thread; images larger than `IMAGE_MAX_PIXELS` are refused before decoding
(decompression bombs).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Annotated, Any, Literal

import msgspec
from PIL import Image, ImageOps, UnidentifiedImageError

from ledger import jobtypes
from workers.handlers import fetch, storage
from workers.handlers import settings as handler_settings

Dimension = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
OutputFormat = Literal["jpeg", "png", "webp"]

# Decoders Pillow may use on untrusted input: the common web formats only.
_INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}


class ImageResizePayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Resize to fit `width`×`height` (keeping the aspect ratio unless `keep_aspect` is false)."""

    width: Dimension
    height: Dimension
    image_url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2048)] | None = (
        None
    )
    source_path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    format: OutputFormat | None = None
    keep_aspect: bool = True
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 85

    def __post_init__(self) -> None:
        if (self.image_url is None) == (self.source_path is None):
            raise ValueError("exactly one of image_url and source_path is required")


class ImageResizeResult(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    width: int
    height: int
    format: OutputFormat
    bytes: int
    sha256: str
    source_width: int
    source_height: int


@jobtypes.job_type("image_resize", ImageResizePayload, timeout_seconds=120.0, max_attempts=3)
async def image_resize(payload: ImageResizePayload, ctx: jobtypes.JobContext) -> dict[str, Any]:
    config = handler_settings.from_env()
    if payload.image_url is not None:
        downloaded = await fetch.download(payload.image_url, config.fetch)
        source = downloaded.content
    else:
        assert payload.source_path is not None
        path = storage.existing_file(ctx.storage_root, payload.source_path)
        source = await asyncio.to_thread(path.read_bytes)
    result = await asyncio.to_thread(_resize_and_store, source, payload, ctx, config)
    return msgspec.to_builtins(result)  # type: ignore[no-any-return]


def _resize_and_store(
    source: bytes,
    payload: ImageResizePayload,
    ctx: jobtypes.JobContext,
    config: handler_settings.HandlerSettings,
) -> ImageResizeResult:
    image = _open(source, config.image_max_pixels)
    with image:
        source_size = image.size
        output_format = payload.format or _default_format(image.format)
        image = ImageOps.exif_transpose(image)
        if payload.keep_aspect:
            resized = ImageOps.contain(
                image, (payload.width, payload.height), Image.Resampling.LANCZOS
            )
        else:
            resized = image.resize((payload.width, payload.height), Image.Resampling.LANCZOS)
        if output_format == "jpeg" and resized.mode not in ("RGB", "L"):
            resized = resized.convert("RGB")
        buffer = io.BytesIO()
        options: dict[str, Any] = {"optimize": True}
        if output_format in ("jpeg", "webp"):
            options["quality"] = payload.quality
        resized.save(buffer, format=output_format.upper(), **options)
    data = buffer.getvalue()
    target = storage.output_path(
        ctx.storage_root, "images", f"{ctx.job_id}.{_EXTENSIONS[output_format]}"
    )
    with storage.atomic_writer(target) as handle:
        handle.write(data)
    return ImageResizeResult(
        path=storage.relative_to_root(ctx.storage_root, target),
        width=resized.width,
        height=resized.height,
        format=output_format,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        source_width=source_size[0],
        source_height=source_size[1],
    )


def _open(source: bytes, max_pixels: int) -> Image.Image:
    """The image header-parsed (not yet decoded); Permanent if it is not an image or too large."""
    try:
        image = Image.open(io.BytesIO(source), formats=_INPUT_FORMATS)
    except Image.DecompressionBombError as exc:
        raise jobtypes.Permanent(f"image refused as a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise jobtypes.Permanent(
            f"source is not an image in a supported format ({', '.join(_INPUT_FORMATS)})"
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise jobtypes.Permanent(
            f"image is {width}×{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (IMAGE_MAX_PIXELS)"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        image.close()
        raise jobtypes.Permanent(f"image could not be decoded: {exc}") from exc
    return image


def _default_format(source_format: str | None) -> OutputFormat:
    match (source_format or "").upper():
        case "JPEG":
            return "jpeg"
        case "WEBP":
            return "webp"
        case _:
            return "png"
