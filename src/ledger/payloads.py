"""Job payloads as the ledger stores them: what jsonb can hold, and when two are the same.

A payload lands in a jsonb column, which refuses U+0000 in text and in keys. Its
nesting is bounded (`MAX_DEPTH`) so that nothing that walks a payload later (the
validator, the encoders, a handler, a fold) meets Python's recursion limit.

PostgreSQL keeps a JSON number as its exact decimal value and writes it back in
plain notation: the float `1e23` is stored as `100000000000000000000000` and reads
back as that integer, which Python does not call equal to the float (the float is
99999999999999991611392). `same` compares payloads the way jsonb does, numbers by
the decimal value their JSON text spells, so a payload equals what it became in
the ledger.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec

MAX_DEPTH: Final = 100
"""Objects and arrays nest at most this deep in a payload (the payload itself is level 1)."""

_encode = msgspec.json.encode  # the encoder that writes events (events.data_json)


class Unstorable(msgspec.Struct, frozen=True):
    """Why a payload cannot be stored, and where: `path` is like `.a.b[0]` ("" for the whole)."""

    path: str
    message: str


def check(payload: Any) -> Unstorable | None:
    """Why the ledger cannot store `payload` (decoded JSON), or None when it can.

    The walk recurses at most `MAX_DEPTH` levels (it stops there), so a payload
    nested too deeply is named, never a RecursionError; a finding's path is only
    built on the way back up, when there is one.
    """
    return _check(payload, 1)


_NUL: Final = Unstorable("", "text in a payload cannot contain U+0000")
_TOO_DEEP: Final = Unstorable("", f"a payload cannot nest deeper than {MAX_DEPTH} levels")


def _check(value: Any, depth: int) -> Unstorable | None:
    if isinstance(value, str):
        return _NUL if "\x00" in value else None
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            return _TOO_DEEP
        for key, item in value.items():
            if "\x00" in key:
                return _NUL
            if isinstance(item, (str, dict, list)):
                found = _check(item, depth + 1)
                if found is not None:
                    return _within(f".{key}", found)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            return _TOO_DEEP
        for index, item in enumerate(value):
            if isinstance(item, (str, dict, list)):
                found = _check(item, depth + 1)
                if found is not None:
                    return _within(f"[{index}]", found)
    return None


def _within(step: str, found: Unstorable) -> Unstorable:
    """A finding inside a child, seen from its parent (depth is named at the top)."""
    return found if found is _TOO_DEEP else Unstorable(step + found.path, found.message)


def same(a: Any, b: Any) -> bool:
    """Whether two decoded JSON values are equal as jsonb values are: objects whatever
    their key order, numbers by decimal value (`1e23` is `100000000000000000000000`,
    `1.0` is `1`), and a boolean is never a number."""
    pairs: list[tuple[Any, Any]] = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if type(x) is type(y) and (x is y or (isinstance(x, (str, bool, int, float)) and x == y)):
            continue  # the common case, and every scalar that is equal as it stands
        if isinstance(x, dict):
            if not isinstance(y, dict) or x.keys() != y.keys():
                return False
            pairs.extend((item, y[key]) for key, item in x.items())
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y):
                return False
            pairs.extend(zip(x, y, strict=True))
        elif not (_is_number(x) and _is_number(y) and _decimal(x) == _decimal(y)):
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _decimal(number: float) -> Decimal:
    """The exact value jsonb keeps for a number: an integer's own, a float's as the
    shortest text that reads back as it (the text the encoder wrote)."""
    if isinstance(number, int):
        return Decimal(number)
    return Decimal(_encode(number).decode())
