"""``fastpool.ConnectionPool`` and ``AsyncConnectionPool``: psycopg_pool's surface on fastpool.

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

from ._apool import AsyncBasePool, _maybe_await
from ._meta import ConnectionMetadata
from ._pool import BasePool
from ._psycopg import AsyncPsycopgDriver, PsycopgDriver, arun_autocommit, run_autocommit
from .recycle import Recycle

__all__ = ["AsyncConnectionPool", "ConnectionPool"]

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


class _TimedBorrow:
    """``connection()`` of :class:`ConnectionPool`: also counts ``usage_ms``."""

    __slots__ = ("_entry", "_pool", "_t0", "_timeout")

    def __init__(self, pool: BasePool[Any], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: Any = None
        self._t0 = 0.0

    def __enter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        self._entry = e = self._pool._get(self._timeout)
        self._t0 = monotonic()
        return e.conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        e, self._entry = self._entry, None
        try:
            self._pool._fast.put(e, exc_type is None)
        finally:
            self._pool._counters["usage_ms"] += int((monotonic() - self._t0) * 1000)


class _ATimedBorrow:
    """``connection()`` of :class:`AsyncConnectionPool`: also counts ``usage_ms``."""

    __slots__ = ("_entry", "_pool", "_t0", "_timeout")

    def __init__(self, pool: AsyncBasePool[Any], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: Any = None
        self._t0 = 0.0

    async def __aenter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        self._entry = e = await self._pool._get(self._timeout)
        self._t0 = monotonic()
        return e.conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        e, self._entry = self._entry, None
        try:
            if not self._pool._fast.put_now(e):
                await self._pool._finish_put(e, exc_type is None)
        finally:
            self._pool._counters["usage_ms"] += int((monotonic() - self._t0) * 1000)


def _not_idle(conn: Any) -> str | None:
    """The transaction status name if ``conn`` is not idle, else None."""
    status = conn.pgconn.transaction_status
    return None if status == _IDLE else pq.TransactionStatus(status).name


class _Compat:
    """The psycopg_pool surface shared by the sync and async classes: options and stats."""

    _counters: dict[str, int]
    _reconnect_timeout: float | None
    _reconnect_failed: Any
    _core: Any
    _driver: Any
    _lock: Any

    def _compat_setup(
        self,
        conninfo: str,
        connection_class: Any,
        kwargs: dict[str, Any] | None,
        p: dict[str, Any],
    ) -> dict[str, Any]:
        """Check psycopg_pool's parameters ``p`` (with its messages); return the pool's options."""
        min_size, max_size = p["min_size"], p["max_size"]
        if isinstance(min_size, int) and min_size < 0:
            raise ValueError("min_size cannot be negative")
        if max_size is not None and isinstance(max_size, int) and max_size < min_size:
            raise ValueError("max_size must be greater or equal than min_size")
        for opt in ("configure", "check", "reset", "reconnect_failed"):
            if p[opt] is not None and not callable(p[opt]):
                raise TypeError(f"{opt} must be callable or None, got {type(p[opt]).__name__}")
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self._configure = p["configure"]
        self._check_cb = p["check"]
        self._reset_cb = p["reset"]
        self.timeout = float(p["timeout"])
        self.max_waiting = p["max_waiting"]
        self.max_lifetime = float(p["max_lifetime"])
        self.max_idle = float(p["max_idle"])
        self.reconnect_timeout = float(p["reconnect_timeout"])
        self.num_workers = p["num_workers"]
        self._baseline: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        return {
            "min_size": min_size,
            "max_size": min_size if max_size is None else max_size,
            "acquire_timeout": p["timeout"],
            "max_lifetime": p["max_lifetime"],
            "idle_timeout": p["max_idle"],
            "test_before_acquire": False,  # psycopg_pool does not ping; check= does
            "after_connect": self._after_connect_cb if p["configure"] is not None else None,
            "before_acquire": self._before_acquire_cb if p["check"] is not None else None,
            "after_release": self._after_release_cb if p["reset"] is not None else None,
            "max_waiting": p["max_waiting"],
            "num_workers": p["num_workers"],
            "open": False,
            "name": p["name"],
        }

    def _compat_started(self, p: dict[str, Any]) -> None:
        """Settings that need the driver and ``PoolBase``: run after the base ``__init__``."""
        self._driver.close_returns = bool(p["close_returns"])
        self._reconnect_timeout = self.reconnect_timeout
        self._reconnect_failed = p["reconnect_failed"]

    # callbacks adapted to the pool hooks (sync or async in the subclasses)
    _after_connect_cb: Any
    _before_acquire_cb: Any
    _after_release_cb: Any

    def _reset_left_idle(self, conn: Any) -> bool:
        """After the ``reset`` callback: True if it left ``conn`` idle, else log and say discard."""
        if (status := _not_idle(conn)) is not None:
            msg = "connection left in status %s by reset function %s: discarded"
            logger.warning(msg, status, self._reset_cb)
            return False
        return True

    @property
    def close_returns(self) -> bool:
        """If true, ``conn.close()`` on a borrowed connection returns it to the pool."""
        return bool(self._driver.close_returns)

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


_DOC_PARAMS = """
    Parameters as psycopg_pool's: ``conninfo``, ``kwargs``, ``connection_class``,
    ``min_size=4``, ``max_size=None`` (= ``min_size``), ``open`` (None or True:
    open now, connecting in the background; False: call :meth:`open` or use the
    pool as a context manager), ``configure(conn)``, ``check(conn)`` (run before
    an idle connection is handed out; raise to reject it), ``reset(conn)`` (run
    when a connection comes back; it must leave it idle), ``name``,
    ``close_returns``, ``timeout=30``, ``max_waiting=0``, ``max_lifetime=3600``,
    ``max_idle=600``, ``reconnect_timeout=300``, ``reconnect_failed(pool)``,
    ``num_workers=3``; plus fastpool's ``recycle``.
"""


class ConnectionPool(_Compat, BasePool[Any]):
    __doc__ = "A psycopg_pool-compatible pool of psycopg connections (threads).\n" + _DOC_PARAMS

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
        p = locals()  # psycopg_pool's parameters, by name
        super().__init__(
            partial(PsycopgDriver, conninfo, kwargs, connection_class, recycle),
            start=False,
            **self._compat_setup(conninfo, connection_class, kwargs, p),
        )
        self._compat_started(p)
        if open is None or open:
            self._start(eager=False)

    def open(self, wait: bool = False, timeout: float | None = 30.0) -> None:
        """Open the pool (connections are made in the background); idempotent.

        With ``wait=True``, wait up to ``timeout`` for ``min_size``
        connections (see :meth:`wait`).  A closed pool cannot be reopened.
        """
        self._start(eager=False)
        if wait:
            self.wait(30.0 if timeout is None else timeout)

    def connection(self, timeout: float | None = None) -> _TimedBorrow:
        """Borrow a connection for a ``with`` block: commit on success, roll back on error."""
        return _TimedBorrow(self, timeout)

    @staticmethod
    def check_connection(conn: psycopg.Connection[Any]) -> None:
        """Check ``conn`` with an empty query in autocommit; raise if it is broken.

        Usable as the ``check`` callback.
        """
        run_autocommit(conn, "")

    def __enter__(self) -> ConnectionPool:
        self.open()
        return self

    def __repr__(self) -> str:
        return f"<fastpool.ConnectionPool {self._name!r} at 0x{id(self):x}>"

    def _after_connect_cb(self, conn: Any, meta: ConnectionMetadata) -> None:
        self._configure(conn)
        if (status := _not_idle(conn)) is not None:
            raise psycopg.ProgrammingError(
                f"connection left in status {status} by configure function {self._configure}: discarded"
            )

    def _before_acquire_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        self._check_cb(conn)  # raising rejects the connection, as in psycopg_pool
        return True

    def _after_release_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        self._reset_cb(conn)
        return self._reset_left_idle(conn)


class AsyncConnectionPool(_Compat, AsyncBasePool[Any]):
    __doc__ = (
        "A psycopg_pool-compatible pool of psycopg ``AsyncConnection`` objects (asyncio).\n"
        + _DOC_PARAMS
        + """
    The callbacks may be plain functions or coroutine functions.  The pool starts
    on the loop of its first use (or of ``await pool.open()`` / ``async with``).
"""
    )

    def __init__(
        self,
        conninfo: str = "",
        *,
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
        kwargs: dict[str, Any] | None = None,
        min_size: int = 4,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[Any], Any] | None = None,
        check: Callable[[Any], Any] | None = None,
        reset: Callable[[Any], Any] | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Callable[[AsyncConnectionPool], Any] | None = None,
        num_workers: int = 3,
        recycle: Recycle = Recycle.FAST,
    ) -> None:
        p = locals()  # psycopg_pool's parameters, by name
        super().__init__(
            partial(AsyncPsycopgDriver, conninfo, kwargs, connection_class, recycle),
            **self._compat_setup(conninfo, connection_class, kwargs, p),
        )
        self._compat_started(p)
        if open is False:
            self._opened = False  # getconn() raises "not open yet" until open()
            self._explicit_open = True
        else:
            self._explicit_open = False

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:  # type: ignore[override]
        """Start the pool on the running loop; with ``wait``, wait for ``min_size`` connections."""
        self._explicit_open = False
        self._bind()
        if wait:
            await self.wait(timeout)

    async def _get(self, timeout: float | None) -> Any:
        if self._explicit_open:
            raise self._closed_error()
        return await super()._get(timeout)

    def connection(self, timeout: float | None = None) -> _ATimedBorrow:
        """Borrow a connection for an ``async with`` block: commit on success, roll back on error."""
        return _ATimedBorrow(self, timeout)

    async def resize(self, min_size: int, max_size: int | None = None) -> None:  # type: ignore[override]
        """Change the pool's size (a coroutine, as in psycopg_pool)."""
        super().resize(min_size, max_size)

    async def drain(self) -> None:  # type: ignore[override]
        """Replace every connection (a coroutine, as in psycopg_pool)."""
        super().drain()

    @staticmethod
    async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
        """Check ``conn`` with an empty query in autocommit; raise if it is broken."""
        await arun_autocommit(conn, "")

    async def __aenter__(self) -> AsyncConnectionPool:
        await self.open()
        return self

    def __repr__(self) -> str:
        return f"<fastpool.AsyncConnectionPool {self._name!r} at 0x{id(self):x}>"

    async def _after_connect_cb(self, conn: Any, meta: ConnectionMetadata) -> None:
        await _maybe_await(self._configure(conn))
        if (status := _not_idle(conn)) is not None:
            raise psycopg.ProgrammingError(
                f"connection left in status {status} by configure function {self._configure}: discarded"
            )

    async def _before_acquire_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        await _maybe_await(self._check_cb(conn))
        return True

    async def _after_release_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        await _maybe_await(self._reset_cb(conn))
        return self._reset_left_idle(conn)


ConnectionPool.__module__ = "fastpool"
AsyncConnectionPool.__module__ = "fastpool"
