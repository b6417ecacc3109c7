"""A handler plugin as a deployment would write one: `LEDGER_HANDLERS=tests.workers.plugin_jobs`."""

from __future__ import annotations

from ledger import jobtypes
from tests.workers import jobs

jobs.register(jobtypes.REGISTRY)
