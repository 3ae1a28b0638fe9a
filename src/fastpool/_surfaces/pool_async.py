"""``fastpool.AsyncPool``: the asyncio pool of psycopg 3 connections, with sqlx-style options."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from .._drivers.psycopg_async import AsyncPsycopgDriver
from .._pool.base_async import AsyncBasePool
from .._types import AsyncConninfo, AsyncKwargs, PoolSettings
from ..recycle import Recycle
from .advisory import LeadershipNotAcquired, LockKey
from .leadership_async import AsyncLeadership

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncPool"]

logger = logging.getLogger("fastpool")


class AsyncPool(AsyncBasePool[psycopg.AsyncConnection[Any]]):
    """An asyncio pool of psycopg 3 ``AsyncConnection`` objects.

    ``AsyncPool("host=127.0.0.1 dbname=test user=postgres")``: options follow
    sqlx's ``PoolOptions``; invalid values raise ``ValueError`` or
    ``TypeError`` naming the option:

    * ``min_size`` / ``max_size``: the floor kept open in the background and
      the hard cap on idle + in use + connecting;
    * ``acquire_timeout``: one deadline per acquire spanning queueing,
      connecting and checking;
    * ``max_lifetime`` (with -5 % per-connection jitter) and ``idle_timeout``
      (never reaps below ``min_size``); ``None`` disables either;
    * ``test_before_acquire`` with ``verify_after``: an idle connection that
      sat ``verify_after`` seconds or more gets an empty-query round trip
      before it is handed out; a socket-readability probe, with no I/O,
      catches a terminated backend at every hand-out;
    * ``after_connect(conn, meta)``, ``before_acquire(conn, meta) -> bool``,
      ``after_release(conn, meta) -> bool`` hooks (plain or coroutine
      functions);
    * ``queue_mode`` "lifo" (default: a hot set, the cold tail ages out) or
      "fifo"; ``max_waiting`` (0 = unbounded) before ``TooManyRequests``;
    * ``num_workers``: how many connections are opened at once, with backoff;
    * ``recycle``: what a returned connection goes through (:class:`fastpool.Recycle`);
    * ``transaction_pooling``: the server is PgBouncer in transaction mode (or alike):
      prepared statements are off, and what needs a session (leadership,
      ownership, sandbox, ``Recycle.CLEAN``) is refused with a clear error.

    Creating the pool does no I/O and needs no running loop: ``await
    pool.open()`` (or ``async with AsyncPool(...) as pool``, or
    :meth:`connect`) opens ``max(1, min_size)`` connections and fails clearly
    if it cannot; or just use it, and it starts on the loop of its first use
    (``open=False``, or :meth:`connect_lazy`).
    """

    _driver: AsyncPsycopgDriver

    def __init__(
        self,
        conninfo: AsyncConninfo = "",
        *,
        kwargs: AsyncKwargs | None = None,
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
        recycle: Recycle = Recycle.FAST,
        transaction_pooling: bool = False,
        **options: Unpack[PoolSettings],
    ) -> None:
        if not isinstance(recycle, Recycle):
            raise TypeError(f"recycle must be a fastpool.Recycle, got {type(recycle).__name__}")
        if recycle == Recycle.CLEAN and options.get("after_connect") is not None:
            logger.info(
                "recycle=CLEAN runs RESET ALL at every return: settings made with SET in after_connect "
                "are undone; put session settings in the connection parameters instead"
            )
        make_driver = partial(
            AsyncPsycopgDriver,
            conninfo,
            kwargs,
            connection_class,
            recycle,
            transaction_pooling=transaction_pooling,
        )
        super().__init__(make_driver, **options)

    @classmethod
    async def connect(cls, conninfo: AsyncConninfo = "", **options: Any) -> Self:
        """Create a pool and open ``max(1, min_size)`` connections now (sqlx ``connect``)."""
        if True:  # ASYNC
            pool = cls(conninfo, **options)
            await pool.open(wait=True)
            return pool
        else:
            options["open"] = True
            return cls(conninfo, **options)

    @classmethod
    def connect_lazy(cls, conninfo: AsyncConninfo = "", **options: Any) -> Self:
        """Create a pool that connects in the background (sqlx ``connect_lazy``)."""
        options["open"] = False
        return cls(conninfo, **options)

    @property
    def transaction_pooling(self) -> bool:
        """True when the pool is set up for a transaction-pooling server (PgBouncer's transaction mode)."""
        return self._driver.transaction_pooling

    @property
    def recycle(self) -> Recycle:
        """The recycling method (``Recycle.FAST`` unless given)."""
        return self._driver.recycle

    async def clear_prepared(self) -> None:
        """Deallocate the prepared statements of every pooled connection.

        Idle connections are cleared now (``DEALLOCATE ALL``, and psycopg's own
        cache is forgotten with it); connections in use are cleared when
        they come back.  Use it after DDL that would make other connections
        fail with "cached plan must not change result type".
        """
        self._driver.epoch += 1  # (the driver's gates see it at once)
        for e in self._take_idle():
            await self._release(e)  # the reset sees the new epoch and deallocates
        self._close_doomed()

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow a connection inside ``conn.transaction()`` (commit or roll back)."""
        async with self.connection(timeout) as conn, conn.transaction():
            yield conn

    def leadership(
        self,
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[AsyncLeadership, BaseException], Any] | None = None,
        timeout: float | None = None,
    ) -> AsyncLeadership:
        """Return a guard on the advisory lock ``key``, taken by ``async with`` (see ``fastpool.leadership``).

        Refused (``ValueError``) with ``transaction_pooling``: a session lock needs a session.

        The lock is held on one connection of the pool (counted in
        ``max_size``), or, with ``dedicated=True``, on a connection opened for
        it outside ``max_size``.  ``heartbeat`` seconds: the pool checks the
        lock that often and calls ``on_lost(guard, error)`` once if it is
        gone.  ``timeout`` bounds getting the connection.
        """
        self._require_sessions("leadership", "an advisory lock is held by one server session")
        return AsyncLeadership(
            self, key, dedicated=dedicated, heartbeat=heartbeat, on_lost=on_lost, timeout=timeout
        )

    async def try_leadership(self, key: LockKey, **options: Any) -> AsyncLeadership | None:
        """Return an acquired guard on ``key``, or None if another session leads (same options)."""
        lead = self.leadership(key, **options)
        try:
            return await lead.acquire()
        except LeadershipNotAcquired:
            return None


AsyncPool.__module__ = "fastpool"
