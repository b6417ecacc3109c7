"""Importing workers.handlers registers the four built-in job types with their schemas."""

from __future__ import annotations

from importlib import metadata

import pytest

from ledger import jobtypes


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
