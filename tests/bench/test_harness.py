"""The benchmark harness imports and its pieces run at toy sizes (no figure is judged here)."""

from __future__ import annotations

import asyncpg
import pytest

from bench import report, stats, submit
from tests.conftest import Databases


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile([7.0], 99) == 7.0


def test_figure_keeps_median_and_spread() -> None:
    fig = stats.Figure.of([3.0, 1.0, 2.0], unit="x")
    assert (fig.median, fig.low, fig.high) == (2.0, 1.0, 3.0)


def test_table_gives_ratios_to_the_eight_client_baseline_and_verdicts() -> None:
    rep = report.Report(command="test", started_at="now", machine={}, postgres={}, sharing="shared")
    rep.add("pgbench_8", "pgbench 8", stats.Figure.of([100.0], unit="tps"))
    rep.add(
        "submit_batch_1",
        "batch",
        stats.Figure.of([250.0], unit="jobs/s"),
        ratio_to_baseline=True,
        target="≥ 3×",
        check=lambda _f, r: r is not None and r >= 3.0,
    )
    rep.add("later", "not yet", None, note="no worker")
    rep.finish()
    text = report.table(rep)
    assert "2.50×" in text
    assert "**no**" in text
    assert "not measured: no worker" in text


async def test_batch_submission_measurement_leaves_pending_jobs(dbs: Databases) -> None:
    rate = await submit.in_batches(dbs.app, 10, batch=4)
    assert rate > 0
    conn = await asyncpg.connect(dbs.admin)  # the owner: every tenant's rows (sql/0068)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'") == 10
        assert await conn.fetchval("SELECT count(DISTINCT txid) FROM events") == 3
    finally:
        await conn.close()


@pytest.mark.parametrize("count", [3])
async def test_one_at_a_time_commits_each_job_alone(dbs: Databases, count: int) -> None:
    await submit.one_at_a_time(dbs.app, count)
    conn = await asyncpg.connect(dbs.admin)  # the owner: every tenant's rows (sql/0068)
    try:
        assert await conn.fetchval("SELECT count(DISTINCT txid) FROM events") == count
    finally:
        await conn.close()


def test_noop_job_type_loads_through_ledger_handlers_like_any_plugin() -> None:
    import subprocess
    import sys

    code = (
        "from ledger import jobtypes; "
        "jobtypes.load_plugins(['bench.noop'], entry_points=False); "
        "assert 'bench.noop' in jobtypes.REGISTRY; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
