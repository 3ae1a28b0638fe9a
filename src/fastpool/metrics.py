"""Pool metrics under OpenTelemetry's database connection-pool conventions.

Two exporters, each optional (``pip install 'fastpool[otel]'`` or
``'fastpool[prometheus]'``), and each imported only when used:

* :func:`instrument` registers the instruments with OpenTelemetry's metrics
  API for one pool: the gauges and counters are observed from
  ``pool.stats()`` at each collection; the three histograms are fed by the
  pool as connections are handed out, given back and opened;
* :class:`PrometheusCollector` is a ``prometheus_client`` collector for any
  number of pools, reading ``pool.stats()`` (and the pool's own fixed-bucket
  histograms) at each scrape.

Every metric carries ``db.client.connection.pool.name`` (the pool's
``name``), so one exporter serves several pools:

================================================  =====================================
``db.client.connection.count``                    open connections, by ``state``
                                                  (``idle`` | ``used``)
``db.client.connection.idle.max``                 the most idle connections kept
                                                  (``max_size``)
``db.client.connection.idle.min``                 ``min_size``
``db.client.connection.max``                      ``max_size``
``db.client.connection.pending_requests``         callers waiting for a connection
``db.client.connection.timeouts``                 acquires that timed out (a counter)
``db.client.connection.create_time``              seconds to open a connection
``db.client.connection.wait_time``                seconds to obtain one from the pool
``db.client.connection.use_time``                 seconds from hand-out to return
================================================  =====================================
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from . import __version__, _core_build

__all__ = ["PrometheusCollector", "instrument"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


# name, description, and what to read: [(extra attributes, the stats() key)]
_GAUGES: tuple[tuple[str, str, tuple[tuple[dict[str, str], str], ...]], ...] = (
    ("db.client.connection.count",
     "The number of connections that are currently in the state described by the state attribute",
     (({STATE: "idle"}, "idle"), ({STATE: "used"}, "in_use"))),
    ("db.client.connection.idle.max", "The maximum number of idle open connections allowed",
     (({}, "max_size"),)),
    ("db.client.connection.idle.min", "The minimum number of idle open connections allowed",
     (({}, "min_size"),)),
    ("db.client.connection.max", "The maximum number of open connections allowed", (({}, "max_size"),)),
    ("db.client.connection.pending_requests", "The number of current pending requests for an open connection",
     (({}, "waiting"),)),
)  # fmt: skip


_HISTOGRAMS = (
    ("db.client.connection.create_time", "connect", "connect_time",
     "The time it took to create a new connection"),
    ("db.client.connection.wait_time", "wait", "wait_time",
     "The time it took to obtain an open connection from the pool"),
    ("db.client.connection.use_time", "use", "use_time",
     "The time between borrowing a connection and returning it to the pool"),
)  # fmt: skip
_TIMEOUTS_DESC = (
    "The number of connection timeouts that have occurred trying to obtain a connection from the pool"
)


def instrument(pool: Any, meter_provider: Any = None) -> None:
    """Register the pool's metrics with OpenTelemetry (its global meter provider unless given).

    Gauges and the timeouts counter are read from ``pool.stats()`` at each
    collection; ``create_time``, ``wait_time`` and ``use_time`` are recorded
    as they happen (one histogram record per connect, hand-out and return,
    which is the instrumentation's cost on the borrow path; an uninstrumented
    pool pays nothing).  Call it once per pool; pools instrumented with the
    same provider share its instruments, told apart by their name.
    """
    from opentelemetry import metrics  # noqa: PLC0415 - optional: imported when used

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    state = _providers.get(id(provider))
    if state is None or state.provider is not provider:
        state = _providers[id(provider)] = _MeterState(provider, list(_core_build.core.HIST_BOUNDS))
    state.add(pool)


class _MeterState:
    """One provider's instruments, shared by the pools instrumented with it."""

    def __init__(self, provider: Any, bounds: list[float]) -> None:
        self.provider = provider
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()
        meter = provider.get_meter("fastpool", __version__)
        for name, desc, readings in _GAUGES:
            meter.create_observable_up_down_counter(
                name, [self._gauge_callback(readings)], unit="{connection}", description=desc
            )
        meter.create_observable_counter(
            "db.client.connection.timeouts", [self._timeouts], unit="{timeout}", description=_TIMEOUTS_DESC
        )
        self.histograms = {
            kind: meter.create_histogram(
                name, unit="s", description=desc, explicit_bucket_boundaries_advisory=bounds
            )
            for name, kind, _key, desc in _HISTOGRAMS
        }

    def add(self, pool: Any) -> None:
        if pool in self.pools:
            return
        self.pools.add(pool)
        attrs = {POOL_NAME: pool.name}
        for kind, hist in self.histograms.items():
            pool._observe(kind, _recorder(hist, attrs))

    def _gauge_callback(self, readings: tuple[tuple[dict[str, str], str], ...]) -> Any:
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - optional: imported when used

        def observe(_options: Any) -> Iterable[Any]:
            out = []
            for pool in list(self.pools):
                attrs = {POOL_NAME: pool.name}
                stats = pool.stats()
                for extra, key in readings:
                    out.append(Observation(stats[key], {**attrs, **extra}))
            return out

        return observe

    def _timeouts(self, _options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - optional: imported when used

        return [Observation(p.stats()["timeouts"], {POOL_NAME: p.name}) for p in list(self.pools)]


_providers: dict[int, _MeterState] = {}


def _recorder(hist: Any, attrs: dict[str, str]) -> Any:
    record = hist.record

    def observe(seconds: float) -> None:
        record(seconds, attrs)

    return observe


class PrometheusCollector:
    """A ``prometheus_client`` collector for one or more pools.

    ``REGISTRY.register(PrometheusCollector(pool_a, pool_b))`` exposes, per
    pool (label ``db_client_connection_pool_name``), the same metrics under
    their Prometheus names: ``db_client_connection_count{state="idle"|"used"}``,
    ``db_client_connection_max``, ``db_client_connection_idle_max``,
    ``db_client_connection_idle_min``, ``db_client_connection_pending_requests``,
    ``db_client_connection_timeouts_total`` and the histograms
    ``db_client_connection_{create,wait,use}_time_seconds`` (read from the
    pool's own fixed buckets: nothing is recorded per borrow).
    """

    def __init__(self, *pools: Any) -> None:
        self._pools = list(pools)

    def add(self, pool: Any) -> None:
        """Expose one more pool."""
        self._pools.append(pool)

    def describe(self) -> list[Any]:
        """Nothing to describe ahead of a scrape (the registry then calls :meth:`collect`)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families of every pool, read now."""
        from prometheus_client.core import (  # noqa: PLC0415 - optional: imported when used
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        label = POOL_NAME.replace(".", "_")
        snapshots = [(p.name, p.stats()) for p in self._pools]
        for name, desc, readings in _GAUGES:
            extra_labels = [
                k.rsplit(".", 1)[-1] for k in readings[0][0]
            ]  # db.client.connection.state -> state
            fam = GaugeMetricFamily(name.replace(".", "_"), desc, labels=[label, *extra_labels])
            for pool_name, s in snapshots:
                for extra, key in readings:
                    fam.add_metric([pool_name, *extra.values()], s[key])
            yield fam
        fam_t = CounterMetricFamily("db_client_connection_timeouts", _TIMEOUTS_DESC, labels=[label])
        for pool_name, s in snapshots:
            fam_t.add_metric([pool_name], s["timeouts"])
        yield fam_t
        for name, _kind, key, desc in _HISTOGRAMS:
            fam_h = HistogramMetricFamily(name.replace(".", "_") + "_seconds", desc, labels=[label])
            for pool_name, s in snapshots:
                h = s[key]
                cumulative, buckets = 0, []
                for bound, count in zip((*h["bounds"], float("inf")), h["counts"], strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                fam_h.add_metric([pool_name], buckets, sum_value=h["sum"])
            yield fam_h


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
