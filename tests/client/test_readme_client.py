"""The README's Python client example works as written against a real `ledger api` and worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import Api, Mint

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- readme-client-example: start -->", "<!-- readme-client-example: end -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START) : text.index(END)]
    return block.split("```python\n", 1)[1].rsplit("```", 1)[0]


@pytest.mark.slow
def test_the_readme_client_example_works_as_written(api: Api, mint: Mint) -> None:
    script = readme_example().replace("http://localhost:8080", api.url)
    token = mint("jobs:write", "jobs:read", "jobs:cancel", "audit:read", sub="alice")

    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    status, path = lines[0].split()
    assert status == "completed" and path.startswith("exports/")
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["1", "job.submitted.v1"],
        ["2", "job.claimed.v1"],
        ["3", "job.completed.v1"],
    ]
    assert lines[1].endswith(" alice")  # the token's subject is the submission's actor
    assert lines[4].startswith("not cancelled: ")
    assert lines[5].endswith(" completed exports") and int(lines[5].split()[0]) >= 1
