"""Request bodies: JSON only, decoded strictly into the type the route declares.

Left to itself, Litestar decodes a JSON body to plain values and then converts them
loosely: the text `"5"` becomes the number 5 and a number becomes a datetime, and
it reads a body as JSON whatever its `Content-Type`. The app's requests are
`JSONRequest`s instead, whose body:

- answers 415 unless it is declared `application/json` or `application/…+json`;
- is decoded straight into the route's `data` type with msgspec's strict rules
  (a number must be a JSON number, an instant RFC 3339 text), 422 naming the field;
- answers 400 when it is not JSON, or nests deeper than the decoder follows.

The typed value passes through Litestar's own conversion unchanged, and decoding
once into the type is also cheaper than decoding and then converting.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.handlers.base import BaseRouteHandler

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}  # by body type: a handful, kept for good
_AT: Final = re.compile(r" - at `\$\.?(.*)`$")


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON: `application/json` or a `+json` suffix type."""
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _decoder(handler: BaseRouteHandler) -> msgspec.json.Decoder[Any] | None:
    """The strict decoder of the route's declared body type (None: it declares none)."""
    field = handler.parsed_data_field
    if field is None:
        return None
    decoder = _decoders.get(field.annotation)
    if decoder is None:
        decoder = _decoders[field.annotation] = msgspec.json.Decoder(field.annotation)
    return decoder


class JSONRequest(Request[Any, Any, Any]):
    """A request whose JSON body is refused unless declared JSON, and decoded strictly."""

    async def json(self) -> Any:
        decoder = _decoder(self.route_handler)
        if decoder is None:
            return await super().json()
        if not is_json(self.headers.get("content-type")):
            raise HTTPException(
                status_code=415,
                detail="the body must be JSON, sent as Content-Type: application/json",
            )
        body = await self.body()
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            message = str(exc)
            at = _AT.search(message)
            raise ValidationException(
                detail="the request does not match the API's schema",
                extra=[
                    {
                        "message": message[: at.start()] if at else message,
                        "key": at.group(1) if at else "",
                        "source": "body",
                    }
                ],
            ) from None
        except msgspec.DecodeError as exc:
            raise ClientException(detail=f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ClientException(detail="the body nests deeper than JSON is read here") from None
