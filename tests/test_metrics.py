"""``fastpool.metrics`` with the real OpenTelemetry SDK and the real prometheus_client,
checked against a known workload (values, not only names), on both cores."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fastpool import PoolTimeout

from .conftest import unavailable

NAME = "db.client.connection.pool.name"


def workload(pool: Any) -> tuple[dict[str, int], Any]:
    """5 quick borrows, one caller served after a wait, one timeout: what each counter must read."""
    connects_before = pool.stats()["connects"]
    for _ in range(5):
        with pool.connection():
            pass
    a, b = pool.acquire(), pool.acquire()  # both connections out
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.05)
    served = threading.Event()

    def waiter() -> None:
        with pool.connection(timeout=5):
            served.set()

    t = threading.Thread(target=waiter)
    t.start()
    while pool.stats()["waiting"] == 0:
        threading.Event().wait(0.005)
    threading.Event().wait(0.02)  # the waiter waits at least 20 ms
    a.release()
    t.join()
    assert served.is_set()
    # b stays out: 1 used, 1 idle
    s = pool.stats()
    return {
        "hand_outs": 5 + 2 + 1,
        "returns": 5 + 1 + 1,
        "connects": s["connects"] - connects_before,
        "held": 1,
    }, b


def test_opentelemetry_instruments(make: Any) -> None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        unavailable("opentelemetry-sdk is not installed (the test extra installs it)")
    from fastpool.metrics import instrument

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    pool = make(max_size=2, min_size=0, name="orders")
    other = make(max_size=3, name="billing")
    instrument(pool, provider)
    instrument(other, provider)
    want, held = workload(pool)
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "fastpool"
            for m in sm.metrics:
                points.setdefault(m.name, []).extend(
                    (m, p) for p in m.data.data_points if p.attributes[NAME] == "orders"
                )

    def value(name: str, **attrs: str) -> Any:
        found = [p for _m, p in points[name] if all(p.attributes.get(k) == v for k, v in attrs.items())]
        assert len(found) == 1, (name, found)
        return found[0]

    state = "db.client.connection.state"
    assert value("db.client.connection.count", **{state: "used"}).value == want["held"]
    assert value("db.client.connection.count", **{state: "idle"}).value == 2 - want["held"]
    assert value("db.client.connection.max").value == 2
    assert value("db.client.connection.idle.max").value == 2
    assert value("db.client.connection.idle.min").value == 0
    assert value("db.client.connection.pending_requests").value == 0
    assert value("db.client.connection.timeouts").value == 1
    create = value("db.client.connection.create_time")
    assert create.count == want["connects"] >= 1
    wait = value("db.client.connection.wait_time")
    assert wait.count == want["hand_outs"]
    assert wait.max >= 0.02  # the waiter waited for a return
    use = value("db.client.connection.use_time")
    assert use.count == want["returns"]
    assert list(use.explicit_bounds) == list(pool._core_mod.HIST_BOUNDS)
    assert points["db.client.connection.use_time"][0][0].unit == "s"
    # the other pool's points carry its own name
    assert any(
        p.attributes[NAME] == "billing"
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    )
    held.release()


def test_prometheus_collector(make: Any) -> None:
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        unavailable("prometheus_client is not installed (the test extra installs it)")
    from fastpool.metrics import PrometheusCollector

    pool = make(max_size=2, name="orders")
    other = make(max_size=3, min_size=1, name="billing")
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(pool, other))
    want, held = workload(pool)
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    label = ("db_client_connection_pool_name", "orders")

    def get(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted([label, *labels.items()])))]

    assert get("db_client_connection_count", state="used") == want["held"]
    assert get("db_client_connection_count", state="idle") == 2 - want["held"]
    assert get("db_client_connection_max") == 2
    assert get("db_client_connection_idle_min") == 0
    assert get("db_client_connection_pending_requests") == 0
    assert get("db_client_connection_timeouts_total") == 1
    s = pool.stats()  # the eager open's own borrow is not counted
    # (requests count the timed-out caller too; the wait histogram counts those served)
    assert s["returns"] == want["returns"] and s["requests"] - s["timeouts"] == want["hand_outs"]
    assert get("db_client_connection_use_time_seconds_count") == s["returns"]
    assert get("db_client_connection_use_time_seconds_bucket", le="+Inf") == s["returns"]
    assert get("db_client_connection_wait_time_seconds_count") == s["requests"] - s["timeouts"]
    assert get("db_client_connection_create_time_seconds_count") == pool.stats()["connects"]
    assert 0.02 <= get("db_client_connection_wait_time_seconds_sum") < 5
    # buckets are cumulative
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in samples.items()
        if k[0] == "db_client_connection_wait_time_seconds_bucket" and label in k[1]
    )
    assert [v for _le, v in buckets] == sorted(v for _le, v in buckets)
    assert samples[("db_client_connection_max", (("db_client_connection_pool_name", "billing"),))] == 3
    assert "# TYPE db_client_connection_use_time_seconds histogram" in text
    held.release()


async def test_opentelemetry_on_an_asyncio_pool(make_async: Any) -> None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        unavailable("opentelemetry-sdk is not installed (the test extra installs it)")
    from fastpool.metrics import PrometheusCollector, instrument

    reader = InMemoryMetricReader()
    pool = await make_async(max_size=1, name="async-orders")
    instrument(pool, MeterProvider(metric_readers=[reader]))
    for _ in range(4):
        async with pool.connection():
            pass
    conn = await pool.getconn()
    with pytest.raises(PoolTimeout):
        await pool.getconn(timeout=0.02)
    await pool.putconn(conn)
    found = {
        m.name: p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
        if p.attributes[NAME] == "async-orders" and "state" not in str(p.attributes)
    }
    assert found["db.client.connection.use_time"].count == 5
    assert found["db.client.connection.wait_time"].count == 5
    assert found["db.client.connection.timeouts"].value == 1
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        unavailable("prometheus_client is not installed (the test extra installs it)")
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(pool))
    text = generate_latest(registry).decode()
    assert 'db_client_connection_timeouts_total{db_client_connection_pool_name="async-orders"} 1.0' in text
