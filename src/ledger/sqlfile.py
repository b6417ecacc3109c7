"""Load named SQL blocks (`-- name: noun_verb`) from a package's queries.sql, once."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a queries file into {name: statement}; comments after the name are kept."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name} is defined twice")
        statement = body.strip()
        if not statement:
            raise ValueError(f"query {name} is empty")
        queries[name] = statement
    return queries


def load(package: str) -> dict[str, str]:
    """The named queries of `package`'s queries.sql."""
    return parse(resources.files(package).joinpath("queries.sql").read_text("utf-8"))
