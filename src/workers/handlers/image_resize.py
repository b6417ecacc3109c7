"""`image_resize`: fetch or read an image, resize it with Pillow, store the result.

The source is either `image_url` (an http/https URL, downloaded through the
guarded `fetch`) or `source_path` (a file under the storage root). The output is
written atomically to `images/<job id>.<format>` under the storage root, so a
retried attempt replaces its own output. Decoding is CPU-bound and runs in a
thread; images larger than `IMAGE_MAX_PIXELS` are refused before decoding
(decompression bombs).

Memory: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) still at
least as large as the output (`Image.draft`); the decoded pixels are reserved
from the process's pixel budget first (`pixels.PixelBudget`, waiting their turn
if other image jobs hold it); a large image is shrunk by whole factors in strips
(so the premultiplied-alpha copy Pillow makes is a strip, not the whole image)
before the final Lanczos resize, which then works on at most twice the output.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Annotated, Any, Literal

import msgspec
from PIL import Image, UnidentifiedImageError

from ledger import jobtypes
from workers.handlers import fetch, pixels, storage
from workers.handlers import settings as handler_settings

Dimension = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
OutputFormat = Literal["jpeg", "png", "webp"]

# Decoders Pillow may use on untrusted input: the common web formats only.
_INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
# Modes Pillow's reduce() averages correctly (not palette or 16-bit images).
_REDUCIBLE = ("L", "LA", "RGB", "RGBA")
_STRIP_BLOCKS = 64  # rows of output per strip when shrinking in strips
_ORIENTATION = 0x0112
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
    image, source_size = await asyncio.to_thread(_open, source, payload, config.image_max_pixels)
    del source
    cost = image.width * image.height
    budget = pixels.budget(config.image_decode_budget_pixels)
    try:
        await budget.acquire(cost)
    except BaseException:
        image.close()
        raise
    work = asyncio.ensure_future(
        asyncio.to_thread(_resize_and_store, image, source_size, payload, ctx)
    )
    # The pixels go back when the decoding thread is done, even if this job was
    # cancelled (a thread cannot be stopped; its memory is held until it ends).
    work.add_done_callback(lambda _done: budget.release(cost))
    result = await asyncio.shield(work)
    return msgspec.to_builtins(result)  # type: ignore[no-any-return]


def _resize_and_store(
    image: Image.Image,
    source_size: tuple[int, int],
    payload: ImageResizePayload,
    ctx: jobtypes.JobContext,
) -> ImageResizeResult:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        image.close()
        raise jobtypes.Permanent(f"image could not be decoded: {exc}") from exc
    try:
        output_format = payload.format or _default_format(image.format)
        orientation = image.getexif().get(_ORIENTATION, 1)
        turned = orientation in (5, 6, 7, 8)
        target = _output_size((image.height, image.width) if turned else image.size, payload)
        shrunk = _shrink(image, (target[1], target[0]) if turned else target)
    finally:
        if "shrunk" not in locals() or shrunk is not image:
            image.close()
    if orientation in _TRANSPOSE:
        shrunk = shrunk.transpose(_TRANSPOSE[orientation])
    resized = shrunk.resize(target, Image.Resampling.LANCZOS) if shrunk.size != target else shrunk
    if output_format == "jpeg" and resized.mode not in ("RGB", "L"):
        resized = resized.convert("RGB")
    buffer = io.BytesIO()
    options: dict[str, Any] = {"optimize": True}
    if output_format in ("jpeg", "webp"):
        options["quality"] = payload.quality
    resized.save(buffer, format=output_format.upper(), **options)
    data = buffer.getvalue()
    target_path = storage.output_path(
        ctx.storage_root, "images", f"{ctx.job_id}.{_EXTENSIONS[output_format]}"
    )
    with storage.atomic_writer(target_path) as handle:
        handle.write(data)
    return ImageResizeResult(
        path=storage.relative_to_root(ctx.storage_root, target_path),
        width=resized.width,
        height=resized.height,
        format=output_format,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        source_width=source_size[0],
        source_height=source_size[1],
    )


def _output_size(size: tuple[int, int], payload: ImageResizePayload) -> tuple[int, int]:
    """The output's size for an upright image of `size` (as ImageOps.contain computes it)."""
    width, height = size
    if not payload.keep_aspect:
        return payload.width, payload.height
    if width / height > payload.width / payload.height:
        return payload.width, max(1, round(height / width * payload.width))
    return max(1, round(width / height * payload.height)), payload.height


def _shrink(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """`image` shrunk by whole factors to no less than twice `target`, in strips (or itself)."""
    fx = max(1, image.width // (2 * target[0]))
    fy = max(1, image.height // (2 * target[1]))
    if image.mode not in _REDUCIBLE or (fx, fy) == (1, 1):
        return image
    out = Image.new(image.mode, (-(-image.width // fx), -(-image.height // fy)))
    rows = fy * _STRIP_BLOCKS
    for top in range(0, image.height, rows):
        with image.crop((0, top, image.width, min(image.height, top + rows))) as strip:
            out.paste(strip.reduce((fx, fy)), (0, top // fy))
    return out


def _open(
    source: bytes, payload: ImageResizePayload, max_pixels: int
) -> tuple[Image.Image, tuple[int, int]]:
    """The image header-parsed, JPEG draft scale set, not yet decoded; and its full size.

    Permanent if it is not an image or too large.
    """
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
    if image.format == "JPEG":
        side = max(payload.width, payload.height)  # either way up (EXIF orientation)
        image.draft(image.mode, (side, side))
    return image, (width, height)


def _default_format(source_format: str | None) -> OutputFormat:
    match (source_format or "").upper():
        case "JPEG":
            return "jpeg"
        case "WEBP":
            return "webp"
        case _:
            return "png"
