"""``fastpool.ConnectionPool``: psycopg_pool's ``ConnectionPool`` surface on fastpool.

Switching is one import line: ``from fastpool import ConnectionPool`` (and
``PoolTimeout``, ``PoolClosed``, ``TooManyRequests``, which subclass
``psycopg.OperationalError`` like psycopg_pool's).  Parameter names, defaults
and behaviour follow psycopg_pool 3.3; where psycopg_pool behaves badly,
fastpool does the right thing instead:

* an idle connection past ``max_lifetime`` or ``max_idle`` is never handed out
  (psycopg_pool checks lifetime only when a connection comes back);
* a caller that times out never wastes the connection opened for it;
* after ``reconnect_timeout`` of failed attempts ``reconnect_failed(pool)`` is
  called, and the pool keeps trying with backoff instead of shrinking.

fastpool extras are accepted too: ``recycle=`` (see :class:`fastpool.Recycle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from time import monotonic
from types import TracebackType
from typing import Any

import psycopg
from psycopg import pq

from ._meta import ConnectionMetadata
from ._pool import BasePool, _Borrow
from ._psycopg import PsycopgDriver, run_autocommit
from .recycle import Recycle

__all__ = ["ConnectionPool"]

logger = logging.getLogger("fastpool")

_IDLE = pq.TransactionStatus.IDLE
_COUNTERS = (
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
)


class _TimedBorrow(_Borrow[Any]):
    """``connection()`` of :class:`ConnectionPool`: also counts ``usage_ms``."""

    __slots__ = ("_t0",)

    def __enter__(self) -> Any:
        conn = super().__enter__()
        self._t0 = monotonic()
        return conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool = self._pool
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            ms = int((monotonic() - self._t0) * 1000)
            with pool._lock:
                pool._counters["usage_ms"] += ms


class ConnectionPool(BasePool[Any]):
    """A psycopg_pool-compatible pool of psycopg connections.

    ``ConnectionPool(conninfo, min_size=4, max_size=None, ...)`` with
    psycopg_pool's parameters: ``kwargs``, ``connection_class``, ``open``
    (None or True: open now, connecting in the background; False: call
    :meth:`open` or use ``with``), ``configure(conn)``, ``check(conn)`` (run
    before an idle connection is handed out; raise to reject it), ``reset(conn)``
    (run when a connection comes back; it must leave it idle), ``name``,
    ``close_returns``, ``timeout``, ``max_waiting``, ``max_lifetime``,
    ``max_idle``, ``reconnect_timeout``, ``reconnect_failed(pool)``,
    ``num_workers``.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        connection_class: type[psycopg.Connection[Any]] = psycopg.Connection,
        kwargs: dict[str, Any] | None = None,
        min_size: int = 4,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[Any], None] | None = None,
        check: Callable[[Any], None] | None = None,
        reset: Callable[[Any], None] | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Callable[[ConnectionPool], None] | None = None,
        num_workers: int = 3,
        recycle: Recycle = Recycle.FAST,
    ) -> None:
        if isinstance(min_size, int) and min_size < 0:
            raise ValueError("min_size cannot be negative")
        if max_size is not None and isinstance(max_size, int) and max_size < min_size:
            raise ValueError("max_size must be greater or equal than min_size")
        for opt, cb in (("configure", configure), ("check", check), ("reset", reset)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{opt} must be callable or None, got {type(cb).__name__}")
        if reconnect_failed is not None and not callable(reconnect_failed):
            raise TypeError("reconnect_failed must be callable or None")
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self._configure = configure
        self._check_cb = check
        self._reset_cb = reset
        super().__init__(
            partial(PsycopgDriver, conninfo, kwargs, connection_class, recycle),
            min_size=min_size,
            max_size=min_size if max_size is None else max_size,
            acquire_timeout=timeout,
            max_lifetime=max_lifetime,
            idle_timeout=max_idle,
            test_before_acquire=False,  # psycopg_pool does not ping; check= does
            after_connect=self._after_connect_cb if configure is not None else None,
            before_acquire=self._before_acquire_cb if check is not None else None,
            after_release=self._after_release_cb if reset is not None else None,
            max_waiting=max_waiting,
            num_workers=num_workers,
            open=False,
            name=name,
            start=False,
        )
        self._driver.close_returns = bool(close_returns)  # type: ignore[attr-defined]
        self._reconnect_timeout = float(reconnect_timeout)
        self._reconnect_failed = reconnect_failed
        self.timeout = float(timeout)
        self.max_waiting = max_waiting
        self.max_lifetime = float(max_lifetime)
        self.max_idle = float(max_idle)
        self.reconnect_timeout = float(reconnect_timeout)
        self.num_workers = num_workers
        self._baseline: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        if open is None or open:
            self._start(eager=False)

    # -- psycopg_pool surface ----------------------------------------------------------

    @property
    def close_returns(self) -> bool:
        """If true, ``conn.close()`` on a borrowed connection returns it to the pool."""
        return bool(self._driver.close_returns)  # type: ignore[attr-defined]

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool (connections are made in the background); idempotent.

        With ``wait=True``, wait up to ``timeout`` for ``min_size``
        connections (see :meth:`wait`).  A closed pool cannot be reopened.
        """
        self._start(eager=False)
        if wait:
            self.wait(timeout)

    def connection(self, timeout: float | None = None) -> _TimedBorrow:
        """Borrow a connection for a ``with`` block: commit on success, roll back on error."""
        return _TimedBorrow(self, timeout)

    @staticmethod
    def check_connection(conn: psycopg.Connection[Any]) -> None:
        """Check ``conn`` with an empty query in autocommit; raise if it is broken.

        Usable as the ``check`` callback.
        """
        run_autocommit(conn, "")

    def get_stats(self) -> dict[str, int]:
        """Return psycopg_pool's stats: gauges and counters since the last ``pop_stats()``."""
        with self._lock:
            return self._psycopg_stats()

    def pop_stats(self) -> dict[str, int]:
        """Return the stats like :meth:`get_stats`, then reset the counters to zero."""
        with self._lock:
            out = self._psycopg_stats()
            for k in _COUNTERS:
                self._baseline[k] += out[k]
        return out

    def __enter__(self) -> ConnectionPool:
        self.open()
        return self

    def __repr__(self) -> str:
        return f"<fastpool.ConnectionPool {self._name!r} at 0x{id(self):x}>"

    # -- mapping of psycopg_pool's callbacks and stats -----------------------------------------

    def _after_connect_cb(self, conn: Any, meta: ConnectionMetadata) -> None:
        assert self._configure is not None
        self._configure(conn)
        status = conn.pgconn.transaction_status
        if status != _IDLE:
            raise psycopg.ProgrammingError(
                f"connection left in status {pq.TransactionStatus(status).name} by configure function "
                f"{self._configure}: discarded"
            )

    def _before_acquire_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        assert self._check_cb is not None
        self._check_cb(conn)  # raising rejects the connection, as in psycopg_pool
        return True

    def _after_release_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        assert self._reset_cb is not None
        self._reset_cb(conn)
        status = conn.pgconn.transaction_status
        if status != _IDLE:
            logger.warning(
                "connection left in status %s by reset function %s: discarded",
                pq.TransactionStatus(status).name,
                self._reset_cb,
            )
            return False
        return True

    def _psycopg_stats(self) -> dict[str, int]:
        core = self._core
        c = self._counters
        raw = {
            "requests_num": core.n_hits + core.n_waits + core.n_too_many,
            "requests_queued": core.n_waits,
            "requests_wait_ms": c["wait_ms"],
            "requests_errors": c["timeouts"] + core.n_too_many,
            "usage_ms": c["usage_ms"],
            "returns_bad": c["returns_bad"],
            "connections_num": core.n_connects + core.n_connect_failures,
            "connections_ms": c["connect_ms"],
            "connections_errors": core.n_connect_failures,
            "connections_lost": c["health_check_failures"] + c["dead_idle_closed"],
        }
        out = {
            "pool_min": int(core.min_size),
            "pool_max": int(core.max_size),
            "pool_size": int(core.size),
            "pool_available": int(core.idle),
            "requests_waiting": int(core.waiting),
        }
        for k in _COUNTERS:
            out[k] = int(raw[k]) - self._baseline[k]
        return out


ConnectionPool.__module__ = "fastpool"
