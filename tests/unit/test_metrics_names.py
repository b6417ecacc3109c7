"""The metrics follow Prometheus's naming conventions, and scrape-time gauges replace old values."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from ledger import metrics

UNBOUNDED_LABELS = {"job_id", "path", "url", "worker_id", "actor", "error"}


def families() -> list[object]:
    m = metrics.Metrics()
    m.add_cluster_gauges()
    m.add_pool_gauges(lambda: 4, lambda: 1)
    m.jobs_submitted.labels(job_type="t", queue="q").inc()
    m.job_run_seconds.labels(job_type="t").observe(0.2)
    m.http_requests.labels(method="GET", route="/health", status="200").inc()
    m.set_queue_depth([("default", "default", "pending", 2)])
    return list(text_string_to_metric_families(m.exposition().decode()))


def test_names_have_the_namespace_units_and_total_suffix() -> None:
    ours = [f for f in families() if f.name.startswith("ledger_")]  # type: ignore[attr-defined]
    assert len(ours) >= 17
    for family in ours:
        name, kind = family.name, family.type  # type: ignore[attr-defined]
        assert re.fullmatch(r"ledger_[a-z0-9_]+", name)
        if kind == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)  # type: ignore[attr-defined]
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        for sample in family.samples:  # type: ignore[attr-defined]
            assert not set(sample.labels) & UNBOUNDED_LABELS, (name, sample.labels)


def test_the_process_collectors_are_on_the_registry() -> None:
    names = {f.name for f in families()}  # type: ignore[attr-defined]
    assert "process_cpu_seconds" in names or "python_info" in names


def test_queue_depth_is_replaced_and_zero_filled_per_queue() -> None:
    m = metrics.Metrics(process=False)
    m.add_cluster_gauges()
    m.set_queue_depth([("t", "default", "pending", 3), ("t", "bulk", "processing", 1)])
    m.set_queue_depth([("t", "bulk", "pending", 4)])
    get = m.registry.get_sample_value
    assert get("ledger_queue_depth", {"queue": "default", "status": "pending"}) is None
    assert get("ledger_queue_depth", {"queue": "bulk", "status": "pending"}) == 4
    assert get("ledger_queue_depth", {"queue": "bulk", "status": "processing"}) == 0
    assert get("ledger_queue_depth", {"queue": "bulk", "status": "retrying"}) == 0


def test_each_process_has_its_own_registry() -> None:
    a, b = metrics.Metrics(process=False), metrics.Metrics(process=False)
    a.jobs_cancelled.labels(job_type="t", queue="q").inc()
    labels = {"job_type": "t", "queue": "q"}
    assert a.registry.get_sample_value("ledger_jobs_cancelled_total", labels) == 1
    assert b.registry.get_sample_value("ledger_jobs_cancelled_total", labels) is None
