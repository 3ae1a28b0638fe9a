"""A pool's ``stats()``: the core's gauges and counters, the pool's own, three histograms."""

from __future__ import annotations

from time import monotonic
from typing import Any

from .._types import PoolStats

__all__ = ["stats_of"]


def stats_of(pool: Any) -> PoolStats:
    """A new snapshot of ``pool`` (see :meth:`fastpool.BasePool.stats`), read under its lock."""
    core = pool._core
    with pool._lock:
        s: dict[str, Any] = core.stats()
        s.update(pool._counters)
        hists = core.histograms()
    s["usage_ms"] = int(core.usage * 1000.0)
    s["leaks"] = 0 if pool._leaks is None else pool._leaks.count
    s["requests"] = s["hits"] + s["waits"]
    now = monotonic()
    s["breaker_open"] = pool._breaker.is_open(now)
    s["failing_for"] = pool._breaker.failing_for(now)
    s["dedicated"] = pool._dedicated
    s["name"] = pool._name
    s["closed"] = pool._closed
    s["paused"] = core.paused
    bounds = pool._core_mod.HIST_BOUNDS
    for key, (counts, total) in hists.items():
        s[f"{key}_time"] = {"bounds": bounds, "counts": counts, "sum": total, "count": sum(counts)}
    return s  # type: ignore[return-value]  # (built from the core's plain dict)
