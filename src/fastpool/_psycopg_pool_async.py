"""``fastpool.AsyncConnectionPool``: psycopg_pool's asyncio surface on fastpool.

Switching is one import line: ``from fastpool import AsyncConnectionPool``
(and ``PoolTimeout``, ``PoolClosed``, ``TooManyRequests``, which subclass
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
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from ._acompat import maybe_await
from ._meta import ConnectionMetadata
from ._psycopg_async import AsyncPsycopgDriver, run_autocommit_async
from ._shell_async import AsyncBasePool
from ._validate import MAX_SIZE, check_bool, check_count, check_seconds
from .recycle import Recycle

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncConnectionPool"]

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


def _not_idle(conn: Any) -> str | None:
    """The transaction status name if ``conn`` is not idle, else None."""
    status = conn.pgconn.transaction_status
    return None if status == _IDLE else pq.TransactionStatus(status).name


class _AsyncTimedBorrow:
    """``connection()`` of :class:`AsyncConnectionPool`: also counts ``usage_ms``."""

    __slots__ = ("_entry", "_pool", "_t0", "_timeout")

    def __init__(self, pool: AsyncConnectionPool, timeout: float | None) -> None:
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
        pool = self._pool
        try:
            if True:  # ASYNC
                r = pool._fast.release_block(e, exc_type is None)
                if r is not None:
                    await r
            else:
                pool._fast.release_block(e, exc_type is None)
        finally:
            with pool._lock:
                pool._counters["usage_ms"] += int((monotonic() - self._t0) * 1000)


class AsyncConnectionPool(AsyncBasePool[Any]):
    """A psycopg_pool-compatible pool of psycopg ``AsyncConnection`` objects.

    Parameters as psycopg_pool's: ``conninfo``, ``kwargs``, ``connection_class``,
    ``min_size=4``, ``max_size=None`` (= ``min_size``), ``open`` (None or True:
    open now, connecting in the background; False: call :meth:`open` or use the
    pool as a context manager), ``configure(conn)``, ``check(conn)`` (run before
    an idle connection is handed out; raise to reject it), ``reset(conn)`` (run
    when a connection comes back; it must leave it idle), ``name``,
    ``close_returns``, ``timeout=30``, ``max_waiting=0``, ``max_lifetime=3600``,
    ``max_idle=600``, ``reconnect_timeout=300``, ``reconnect_failed(pool)``,
    ``num_workers=3``; plus fastpool's ``recycle``, ``fail_fast_after`` (off by
    default here, as psycopg_pool has no such thing), ``release_timeout`` and
    ``transaction_pooling`` (for PgBouncer's transaction mode).
    The callbacks may be plain or coroutine functions.
    """

    _driver: AsyncPsycopgDriver

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
        fail_fast_after: float | None = None,
        release_timeout: float = 5.0,
        transaction_pooling: bool = False,
    ) -> None:
        # psycopg_pool's parameters are checked under their own names
        if isinstance(min_size, int) and not isinstance(min_size, bool) and min_size < 0:
            raise ValueError("min_size cannot be negative")
        check_count("min_size", min_size, 0, MAX_SIZE)
        if max_size is not None:
            check_count("max_size", max_size, 1, MAX_SIZE)
            if max_size < min_size:
                raise ValueError("max_size must be greater or equal than min_size")
        for opt, value in (("timeout", timeout), ("max_lifetime", max_lifetime), ("max_idle", max_idle),
                           ("reconnect_timeout", reconnect_timeout)):  # fmt: skip
            check_seconds(opt, value)
        check_count("max_waiting", max_waiting, 0)
        check_count("num_workers", num_workers, 1, 1000)
        check_bool("open", open, allow_none=True)
        check_bool("close_returns", close_returns)
        for opt, fn in (("configure", configure), ("check", check), ("reset", reset),
                        ("reconnect_failed", reconnect_failed)):  # fmt: skip
            if fn is not None and not callable(fn):
                raise TypeError(f"{opt} must be callable or None, got {type(fn).__name__}")
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self._configure = configure
        self._check_cb = check
        self._reset_cb = reset
        self.timeout = float(timeout)
        self.max_waiting = max_waiting
        self.max_lifetime = float(max_lifetime)
        self.max_idle = float(max_idle)
        self.reconnect_timeout = float(reconnect_timeout)
        self.num_workers = num_workers
        self._baseline: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        super().__init__(
            partial(
                AsyncPsycopgDriver,
                conninfo,
                kwargs,
                connection_class,
                recycle,
                transaction_pooling=transaction_pooling,
            ),
            open=False,
            start=open is not False,
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
            name=name,
            reconnect_timeout=self.reconnect_timeout,
            reconnect_failed=reconnect_failed,
            fail_fast_after=fail_fast_after,
            release_timeout=release_timeout,
        )
        self._driver.close_returns = bool(close_returns)

    async def open(self, wait: bool = False, timeout: float | None = 30.0) -> None:
        """Open the pool (connections are made in the background); idempotent.

        With ``wait=True``, wait up to ``timeout`` for ``min_size``
        connections (see :meth:`wait`).  A closed pool cannot be reopened.
        """
        self._ensure_started()
        if wait:
            await self.wait(30.0 if timeout is None else timeout)

    def connection(self, timeout: float | None = None) -> _AsyncTimedBorrow:
        """Borrow a connection for an ``async with`` block: commit on success, roll back on error."""
        return _AsyncTimedBorrow(self, timeout)

    if True:  # ASYNC

        async def resize(self, min_size: int, max_size: int | None = None) -> None:  # type: ignore[override]
            """Change the pool's size (a coroutine, as in psycopg_pool)."""
            super().resize(min_size, max_size)

        async def drain(self) -> None:  # type: ignore[override]
            """Replace every connection (a coroutine, as in psycopg_pool)."""
            super().drain()

    @staticmethod
    async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
        """Check ``conn`` with an empty query in autocommit; raise if it is broken.

        Usable as the ``check`` callback.
        """
        await run_autocommit_async(conn, "")

    @property
    def close_returns(self) -> bool:
        """If true, ``conn.close()`` on a borrowed connection returns it to the pool."""
        return bool(self._driver.close_returns)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    def __repr__(self) -> str:
        return f"<fastpool.{type(self).__name__} {self._name!r} at 0x{id(self):x}>"

    # -- psycopg_pool's callbacks on the pool's hooks ----------------------------------------------

    async def _after_connect_cb(self, conn: Any, meta: ConnectionMetadata) -> None:
        assert self._configure is not None
        await maybe_await(self._configure(conn))
        if (status := _not_idle(conn)) is not None:
            raise psycopg.ProgrammingError(
                f"connection left in status {status} by configure function {self._configure}: discarded"
            )

    async def _before_acquire_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        assert self._check_cb is not None
        await maybe_await(self._check_cb(conn))  # raising rejects the connection, as in psycopg_pool
        return True

    async def _after_release_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        assert self._reset_cb is not None
        await maybe_await(self._reset_cb(conn))
        if (status := _not_idle(conn)) is not None:
            msg = "connection left in status %s by reset function %s: discarded"
            logger.warning(msg, status, self._reset_cb)
            return False
        return True

    # -- stats -------------------------------------------------------------------------------------

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


AsyncConnectionPool.__module__ = "fastpool"
