"""Types shared by the pools of both kinds: the connection type variable, hooks, options."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypedDict, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ._meta import ConnectionMetadata

if sys.version_info >= (3, 13):
    from typing import TypeVar as TypeVarWithDefault
else:
    from typing_extensions import TypeVar as TypeVarWithDefault

__all__ = [
    "AsyncConnT",
    "AsyncConninfo",
    "AsyncKwargs",
    "AsyncPoolConnT",
    "C",
    "ConnT",
    "Conninfo",
    "FastpoolExtras",
    "HistogramStats",
    "Hook",
    "Kwargs",
    "PoolConnT",
    "PoolSettings",
    "PoolStats",
]

C = TypeVar("C")
#: The connection class of a psycopg pool: ``Pool[MyConnection]`` hands out ``MyConnection``.
ConnT = TypeVarWithDefault("ConnT", bound=psycopg.Connection[Any], default=psycopg.Connection[TupleRow])
AsyncConnT = TypeVarWithDefault(
    "AsyncConnT", bound=psycopg.AsyncConnection[Any], default=psycopg.AsyncConnection[TupleRow]
)
#: The connection class of ``fastpool.AsyncPool``: psycopg's by default, asyncpg's with ``driver="asyncpg"``
AsyncPoolConnT = TypeVarWithDefault("AsyncPoolConnT", default=psycopg.AsyncConnection[TupleRow])
#: (its threaded pool hands out psycopg connections only)
PoolConnT = TypeVarWithDefault("PoolConnT", default=psycopg.Connection[TupleRow])
#: Connection parameters, or a function giving them for each new connection (credentials that rotate)
Conninfo = str | Callable[[], str]
AsyncConninfo = str | Callable[[], str] | Callable[[], Awaitable[str]]
Kwargs = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
AsyncKwargs = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | Callable[[], Awaitable[Mapping[str, Any]]]
Hook = Callable[[Any, ConnectionMetadata], Any]


class PoolSettings(TypedDict, total=False):
    """The options every pool takes (see :class:`fastpool.Pool` for what each does)."""

    min_size: int
    max_size: int
    acquire_timeout: float
    max_lifetime: float | None
    idle_timeout: float | None
    test_before_acquire: bool
    verify_after: float
    after_connect: Hook | None
    before_acquire: Hook | None
    after_release: Hook | None
    queue_mode: Literal["lifo", "fifo"]
    max_waiting: int
    num_workers: int
    release_timeout: float
    open: bool
    name: str | None
    max_uses: int
    leak_timeout: float | None
    queue_target: float | None
    queue_interval: float


class FastpoolExtras(TypedDict, total=False):
    """fastpool's options that other libraries' pools lack, which its drop-in surfaces take too."""

    fail_fast_after: float | None
    release_timeout: float
    leak_timeout: float | None
    max_uses: int
    queue_target: float | None
    queue_interval: float


class HistogramStats(TypedDict):
    """A fixed-bucket histogram of durations, in seconds.

    ``counts[i]`` counts the observations no longer than ``bounds[i]`` and
    longer than ``bounds[i - 1]``; the last count (one more than there are
    bounds) takes those longer than every bound.
    """

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float
    count: int


class PoolStats(TypedDict):
    """What ``pool.stats()`` returns: gauges, counters, the breaker's state and three histograms."""

    name: str
    closed: bool
    paused: bool
    max_size: int
    min_size: int
    #: idle + in use + connecting (never above max_size)
    size: int
    idle: int
    in_use: int
    connecting: int
    waiting: int
    #: hand-outs from idle with no wait
    hits: int
    handoffs: int
    waits: int
    cancelled_waits: int
    #: waiters that reached their deadline in the queue
    timed_out_waits: int
    too_many_requests: int
    connects: int
    connect_failures: int
    expired: int
    discarded: int
    returns: int
    #: hits + waits
    requests: int
    timeouts: int
    health_checks: int
    health_check_failures: int
    before_acquire_rejections: int
    after_release_rejections: int
    returns_bad: int
    dead_idle_closed: int
    #: connections held past leak_timeout
    leaks: int
    #: callers refused by queue_target's load shedding
    shed: int
    wait_ms: int
    connect_ms: int
    usage_ms: int
    breaker_open: bool
    failing_for: float
    dedicated: int
    #: how long callers waited for a connection (0 s for hits)
    wait_time: HistogramStats
    #: how long connections were held, from hand-out to return
    use_time: HistogramStats
    #: how long new connections took to open
    connect_time: HistogramStats
