"""Importing workers.handlers registers the four built-in job types with their schemas."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from ledger import errors, jobtypes


def test_the_four_job_types_are_registered() -> None:
    jobtypes.load_plugins(["workers.handlers"], entry_points=False)
    for name in ("image_resize", "email_send", "data_export", "file_process"):
        job = jobtypes.REGISTRY.get(name)
        assert job.is_async
        assert job.schema()["$ref"].endswith(job.payload_type.__name__)


@pytest.mark.parametrize("name", ["image_resize", "email_send", "data_export", "file_process"])
def test_unknown_payload_fields_are_refused(name: str) -> None:
    with pytest.raises(jobtypes.InvalidPayload, match="unknown field"):
        jobtypes.REGISTRY.get(name).validate({"surprise": 1})


def test_the_built_in_types_are_an_entry_point_that_load_plugins_finds() -> None:
    points = metadata.entry_points(group=jobtypes.ENTRY_POINT_GROUP)
    assert "workers.handlers" in [point.value for point in points]
    assert "workers.handlers" in jobtypes.load_plugins([])


def test_an_installed_plugin_is_loaded_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ledger_test_plugin.py").write_text(
        "import msgspec\n"
        "from ledger import jobtypes\n"
        "class P(msgspec.Struct):\n"
        "    n: int = 0\n"
        "@jobtypes.job_type('test.from_entry_point', P)\n"
        "async def run(payload, context):\n"
        "    return payload.n\n"
    )
    _install(tmp_path, "ledger_test_plugin", "ledger_test_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    # The plugin registers into the service's registry; the test leaves it as it was.
    monkeypatch.setattr(jobtypes.REGISTRY, "_types", dict(jobtypes.REGISTRY._types))
    monkeypatch.delitem(sys.modules, "ledger_test_plugin", raising=False)

    assert "ledger_test_plugin" in jobtypes.load_plugins([])
    assert "test.from_entry_point" in jobtypes.REGISTRY


def test_a_plugin_whose_module_is_missing_is_a_clear_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path, "ledger_broken_plugin", "no_such_module_for_ledger")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(errors.ConfigError, match="no_such_module_for_ledger"):
        jobtypes.load_plugins([])


def _install(site: Path, distribution: str, module: str) -> None:
    """A distribution's metadata on `site`, declaring `module` in the handlers' group."""
    info = site / f"{distribution}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{jobtypes.ENTRY_POINT_GROUP}]\n{distribution} = {module}\n"
    )
