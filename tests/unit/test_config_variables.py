"""config.VARIABLES is exactly what the service reads, and the README documents each one."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ledger import config, errors
from workers.handlers import settings

ROOT = Path(__file__).resolve().parents[2]


class Recording(Mapping[str, str]):
    """An empty environment that remembers which names were looked up."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        raise KeyError(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def read_outside_config() -> set[str]:
    """Names read straight from os.environ anywhere in src/ but config.py."""
    pattern = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        if path.name != "config.py" or path.parent.name != "ledger":
            names |= set(pattern.findall(path.read_text()))
    return names


def test_the_listed_variables_are_exactly_those_the_service_reads() -> None:
    env = Recording()
    config.from_env(env)
    assert env.read | read_outside_config() == config.VARIABLES


def read_by_handlers() -> set[str]:
    env = Recording()
    settings.from_env(env)
    return env.read


def test_the_readme_documents_every_variable_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", readme, re.M))
    missing = (config.VARIABLES | read_by_handlers()) - set(rows)
    assert not missing, f"README's configuration table lacks {sorted(missing)}"
    assert all(default.strip() for default in rows.values())


def test_log_format_and_metrics_port_have_defaults_and_are_checked() -> None:
    settings = config.from_env({})
    assert (settings.log_format, settings.worker_metrics_port) == ("auto", 9464)
    assert config.from_env({"LOG_FORMAT": "JSON", "WORKER_METRICS_PORT": "0"}).log_format == "json"
    with pytest.raises(errors.ConfigError, match="LOG_FORMAT"):
        config.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(errors.ConfigError, match="WORKER_METRICS_PORT"):
        config.from_env({"WORKER_METRICS_PORT": "70000"})


def test_the_bulks_yield_to_quiet_work_has_defaults_and_is_checked() -> None:
    settings = config.from_env({})
    assert (settings.worker_quiet_bulk_limit, settings.worker_quiet_bulk_pause_seconds) == (
        32,
        0.002,
    )
    off = config.from_env({"WORKER_QUIET_BULK_LIMIT": "0", "WORKER_QUIET_BULK_PAUSE_SECONDS": "0"})
    assert (off.worker_quiet_bulk_limit, off.worker_quiet_bulk_pause_seconds) == (0, 0.0)
    with pytest.raises(errors.ConfigError, match="WORKER_QUIET_BULK_LIMIT"):
        config.from_env({"WORKER_QUIET_BULK_LIMIT": "-1"})
    with pytest.raises(errors.ConfigError, match="WORKER_QUIET_BULK_PAUSE_SECONDS"):
        config.from_env({"WORKER_QUIET_BULK_PAUSE_SECONDS": "-0.5"})
