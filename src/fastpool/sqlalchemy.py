"""SQLAlchemy pool classes backed by fastpool: ``FastPool`` and ``AsyncFastPool``.

Use them through the engine's ``poolclass``; the engine's pool arguments
keep their SQLAlchemy meaning::

    engine = create_engine(url, poolclass=FastPool, pool_size=5, max_overflow=10,
                           pool_timeout=30, pool_recycle=1800, pool_pre_ping=True)
    aengine = create_async_engine(aurl, poolclass=AsyncFastPool, pool_size=5)

* at most ``pool_size + max_overflow`` connections are open at once
  (``max_overflow=-1``, or ``pool_size=0``, lifts the limit); at most
  ``pool_size`` stay open while idle: an extra one is closed when it comes
  back, unless a caller is waiting for it;
* a caller waits at most ``pool_timeout`` seconds, in a fair (first come,
  first served) queue, then gets ``sqlalchemy.exc.TimeoutError``;
* ``pool_recycle``, ``pool_pre_ping``, ``pool_reset_on_return`` and the pool
  events are SQLAlchemy's own, unchanged; ``pool_use_lifo`` picks the idle
  connection used most recently;
* ``engine.dispose()`` closes every idle connection at once and every
  checked-out one when it is given back.

SQLAlchemy's ``QueuePool`` hands a connection a waiting thread gave up on to
no one and polls its queue; here a returned connection goes straight to the
first waiter.  Requires SQLAlchemy 2.0 or later (``pip install
'fastpool[sqlalchemy]'``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import Pool
from sqlalchemy.pool.base import ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_only, greenlet_spawn, in_greenlet

from ._drivers.base import Driver
from ._pool.base import BasePool
from ._pool.base_async import AsyncBasePool
from ._settings import MAX_SIZE, check_count, check_duration
from .errors import PoolTimeout

__all__ = ["AsyncFastPool", "FastPool"]

try:  # the asyncio pools' default dialect, as SQLAlchemy's AsyncAdaptedQueuePool uses it
    from sqlalchemy.pool.base import _AsyncConnDialect
except ImportError:  # pragma: no cover - kept for versions that move it
    _AsyncConnDialect = None  # type: ignore[assignment,misc]

log = logging.getLogger("fastpool")
_CLOSE_TIMEOUT = 2.0  # dispose(): how long closing the idle connections may take


class _RecordDriver(Driver):
    """Pooled items are SQLAlchemy's connection records; SQLAlchemy opens, resets and checks them."""

    has_needs_check = False

    def __init__(self, sa_pool: Pool) -> None:
        self.sa_pool = sa_pool

    def connect(self) -> Any:
        return self.sa_pool._create_connection()

    def close(self, conn: Any) -> Any:
        try:
            conn.close()
        except Exception as exc:  # closing must never fail the pool
            log.debug("closing a SQLAlchemy connection failed: %r", exc)

    def retryable(self, exc: BaseException) -> bool:
        return False  # a failed connect is the DBAPI's error, raised to the caller as SQLAlchemy does

    def describe(self) -> str:
        return f"SQLAlchemy pool {self.sa_pool.logging_name or hex(id(self.sa_pool))}"


class _AsyncRecordDriver(_RecordDriver):
    """The same on the event loop: SQLAlchemy's sync-looking calls run in a greenlet."""

    async def connect(self) -> Any:
        return await greenlet_spawn(self.sa_pool._create_connection)

    async def close(self, conn: Any) -> None:
        try:
            await greenlet_spawn(conn.close)
        except Exception as exc:  # closing must never fail the pool
            log.debug("closing a SQLAlchemy connection failed: %r", exc)


class _SQLAlchemyPool(BasePool[Any]):
    """The fastpool pool inside :class:`FastPool`: closing does not wait for checked-out connections."""

    _close_waits = False


class _AsyncSQLAlchemyPool(AsyncBasePool[Any]):
    """The same for :class:`AsyncFastPool`."""

    _close_waits = False


class FastPool(Pool):
    """A :class:`sqlalchemy.pool.Pool` with ``QueuePool``'s arguments, kept by fastpool.

    ``pool_size`` connections stay open once made (none are made ahead),
    up to ``max_overflow`` more while demand lasts; ``timeout`` bounds the
    wait for one.  The other keyword arguments go to
    :class:`sqlalchemy.pool.Pool` (``recycle``, ``pre_ping``, ``echo``,
    ``reset_on_return``...).
    """

    _is_asyncio = False

    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        use_lifo: bool = False,
        **kw: Any,
    ) -> None:
        check_count("pool_size", pool_size, 0, MAX_SIZE)
        check_count("max_overflow", max_overflow, -1, MAX_SIZE)
        self._timeout = float(check_duration("pool_timeout", timeout, allow_none=False) or 0.0)
        if pool_size == 0 or max_overflow == -1:
            max_size = MAX_SIZE
        else:
            max_size = min(MAX_SIZE, max(1, pool_size + max_overflow))
        Pool.__init__(self, creator, **kw)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._use_lifo = bool(use_lifo)
        self._lent: dict[int, Any] = {}  # id(record) -> the fastpool handle it was checked out with
        self._fp = self._make_pool(
            max_size=max_size,
            min_size=0,  # as QueuePool: no connection before the first checkout
            open=False,
            acquire_timeout=self._timeout,
            max_lifetime=None,  # pool_recycle is SQLAlchemy's, at checkout
            idle_timeout=None,
            test_before_acquire=False,  # pool_pre_ping is SQLAlchemy's
            queue_mode="lifo" if use_lifo else "fifo",
            fail_fast_after=None,  # every checkout tries to connect, as QueuePool does
            name=f"sqlalchemy-{self.logging_name or hex(id(self))}",
        )

    def _make_pool(self, **options: Any) -> Any:
        return _SQLAlchemyPool(lambda _timeout: _RecordDriver(self), **options)

    # -- what SQLAlchemy's Pool asks of an implementation -------------------------------------

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            handle = self._checkout()
        except PoolTimeout:
            raise self._timeout_error() from None
        record = handle.connection
        self._lent[id(record)] = handle
        return record  # type: ignore[no-any-return]

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        handle = self._lent.pop(id(record), None)
        if handle is None:  # not checked out from this pool (one replaced by dispose()): drop it
            record.close()
        elif self._closes_on_return():
            handle.close()
        else:
            self._checkin(handle)

    def _checkout(self) -> Any:
        return self._fp.acquire(self._timeout)

    def _checkin(self, handle: Any) -> None:
        handle.release()

    def _closes_on_return(self) -> bool:
        """An overflow connection is closed on return: pool_size are idle already and nobody waits."""
        fp = self._fp
        return bool(self._pool_size and fp._gauge("idle") >= self._pool_size and not fp._gauge("waiting"))

    def _timeout_error(self) -> sa_exc.TimeoutError:
        return sa_exc.TimeoutError(
            f"{type(self).__name__} limit of size {self.size()} overflow {self._max_overflow} reached, "
            f"connection timed out, timeout {self._timeout:0.2f}",
            code="3o7r",
        )

    def recreate(self) -> FastPool:
        """A new, empty pool with the same arguments (what ``engine.dispose()`` swaps in)."""
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            pool_size=self._pool_size,
            max_overflow=self._max_overflow,
            timeout=self._timeout,
            use_lifo=self._use_lifo,
            pre_ping=self._pre_ping,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def dispose(self) -> None:
        """Close the idle connections now; checked-out ones are closed when given back."""
        self._fp.close(_CLOSE_TIMEOUT)
        self.logger.info("Pool disposed. %s", self.status())

    def status(self) -> str:
        """A one-line summary, in ``QueuePool``'s words."""
        return (
            f"Pool size: {self.size()}  Connections in pool: {self.checkedin()} "
            f"Current Overflow: {self.overflow()} Current Checked out connections: {self.checkedout()}"
        )

    def size(self) -> int:
        """``pool_size``: how many connections stay open while idle."""
        return self._pool_size

    def timeout(self) -> float:
        """``pool_timeout``: how long a checkout waits, in seconds."""
        return self._timeout

    def checkedin(self) -> int:
        """Connections open and idle in the pool."""
        return self._fp._gauge("idle")  # type: ignore[no-any-return]

    def overflow(self) -> int:
        """Open connections beyond ``pool_size`` (negative while fewer are open)."""
        return self._fp._gauge("size") - self._pool_size  # type: ignore[no-any-return]

    def checkedout(self) -> int:
        """Connections checked out now."""
        return self._fp._gauge("in_use")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        """fastpool's counters for this pool (waits, hand-offs, connects...)."""
        return self._fp.stats()  # type: ignore[no-any-return]


class AsyncFastPool(FastPool):
    """:class:`FastPool` for ``create_async_engine``: waits on the event loop, never blocking it."""

    _is_asyncio = True
    if _AsyncConnDialect is not None:
        _dialect = _AsyncConnDialect()

    def _make_pool(self, **options: Any) -> Any:
        return _AsyncSQLAlchemyPool(lambda _timeout: _AsyncRecordDriver(self), **options)

    def _checkout(self) -> Any:
        return await_only(self._fp.acquire(self._timeout))

    def _checkin(self, handle: Any) -> None:
        if in_greenlet():
            await_only(handle.release())
        else:  # outside SQLAlchemy's greenlet (a garbage-collected connection): closed
            handle.close()

    def dispose(self) -> None:
        """Close the idle connections now; checked-out ones are closed when given back."""
        if in_greenlet():
            await_only(self._fp.close(_CLOSE_TIMEOUT))
        else:  # called outside the engine: close on the running loop, if there is one
            try:
                asyncio.get_running_loop().create_task(self._fp.close(_CLOSE_TIMEOUT))
            except RuntimeError:
                log.warning("%s disposed outside its event loop: idle connections left open", self)
        self.logger.info("Pool disposed. %s", self.status())
