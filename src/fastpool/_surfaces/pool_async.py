"""``fastpool.AsyncPool``: the asyncio pool of psycopg 3 or asyncpg connections, with sqlx-style options."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

import psycopg

from .._drivers.base import Driver
from .._drivers.psycopg_async import AsyncPsycopgDriver
from .._pool.base_async import AsyncBasePool
from .._types import AsyncConninfo, AsyncKwargs, AsyncPoolConnT, PoolSettings
from ..recycle import Recycle
from .advisory import LeadershipNotAcquired, LockKey
from .leadership_async import AsyncLeadership

if TYPE_CHECKING:
    import asyncpg
    from typing_extensions import Self, Unpack

__all__ = ["AsyncPool"]

logger = logging.getLogger("fastpool")


#: the drivers a psycopg pool may be asked for by name
DRIVERS = ("psycopg", "asyncpg")


def make_driver(
    owner: str,
    driver: str,
    conninfo: Any,
    kwargs: Any,
    connection_class: Any,
    recycle: Recycle,
    transaction_pooling: bool,
) -> Callable[[float], Driver]:
    """What builds the pool's driver (called with ``acquire_timeout``, the default connect timeout)."""
    if driver == "psycopg":
        return partial(
            AsyncPsycopgDriver,
            conninfo,
            kwargs,
            connection_class,
            recycle,
            transaction_pooling=transaction_pooling,
        )
    if driver != "asyncpg":
        raise ValueError(f"{owner}: driver must be one of {', '.join(map(repr, DRIVERS))}, got {driver!r}")
    if True:  # ASYNC
        from .._drivers.asyncpg_driver import AsyncpgDriver  # noqa: PLC0415  (asyncpg: when asked for)

        if connection_class is not psycopg.AsyncConnection:  # an asyncpg.Connection subclass: asyncpg's
            kwargs = _with_connection_class(owner, kwargs, connection_class)
        return partial(AsyncpgDriver, conninfo, kwargs, recycle, transaction_pooling=transaction_pooling)
    else:
        raise ValueError(
            f"{owner}: driver='asyncpg' needs asyncio (asyncpg has no threaded API): use fastpool.AsyncPool"
        )


def _with_connection_class(owner: str, kwargs: Any, connection_class: Any) -> Any:
    """``kwargs`` with ``connection_class`` for asyncpg.connect() (a subclass of asyncpg's)."""
    import asyncpg  # noqa: PLC0415

    if not (isinstance(connection_class, type) and issubclass(connection_class, asyncpg.Connection)):
        raise TypeError(
            f"{owner}: connection_class must be asyncpg.Connection or a subclass with driver='asyncpg', "
            f"got {connection_class!r}"
        )
    if callable(kwargs):
        given = kwargs
        return lambda: {**(given() or {}), "connection_class": connection_class}
    return {**(kwargs or {}), "connection_class": connection_class}


class AsyncPool(AsyncBasePool[AsyncPoolConnT], Generic[AsyncPoolConnT]):
    """An asyncio pool of psycopg 3 ``AsyncConnection`` objects, or of asyncpg connections.

    ``AsyncPool("host=127.0.0.1 dbname=test user=postgres")``: options follow
    sqlx's ``PoolOptions``; invalid values raise ``ValueError`` or
    ``TypeError`` naming the option:

    * ``driver``: ``"psycopg"`` (the default) or ``"asyncpg"``: the pool hands
      out ``asyncpg.Connection`` objects, ``kwargs`` go to ``asyncpg.connect``,
      and ``conninfo`` may be a ``postgresql://`` URL or a libpq ``key=value``
      string (translated); the threaded pool refuses it;

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

    _driver: Any

    @overload
    def __init__(
        self: AsyncPool[psycopg.AsyncConnection[Any]],
        conninfo: AsyncConninfo = "",
        *,
        driver: Literal["psycopg"] = "psycopg",
        kwargs: AsyncKwargs | None = None,
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
        recycle: Recycle = Recycle.FAST,
        transaction_pooling: bool = False,
        **options: Unpack[PoolSettings],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncPool[asyncpg.Connection],
        conninfo: AsyncConninfo = "",
        *,
        driver: Literal["asyncpg"],
        kwargs: AsyncKwargs | None = None,
        connection_class: type[Any] = psycopg.AsyncConnection,
        recycle: Recycle = Recycle.FAST,
        transaction_pooling: bool = False,
        **options: Unpack[PoolSettings],
    ) -> None: ...

    def __init__(
        self,
        conninfo: AsyncConninfo = "",
        *,
        driver: str = "psycopg",
        kwargs: AsyncKwargs | None = None,
        connection_class: type[Any] = psycopg.AsyncConnection,
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
        owner = type(self).__name__
        factory = make_driver(owner, driver, conninfo, kwargs, connection_class, recycle, transaction_pooling)
        super().__init__(factory, **options)

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
        return self._driver.transaction_pooling  # type: ignore[no-any-return]

    @property
    def recycle(self) -> Recycle:
        """The recycling method (``Recycle.FAST`` unless given)."""
        return self._driver.recycle  # type: ignore[no-any-return]

    @property
    def driver(self) -> str:
        """The driver's name: ``"psycopg"`` or ``"asyncpg"``."""
        return "psycopg" if isinstance(self._driver, AsyncPsycopgDriver) else "asyncpg"

    async def clear_prepared(self) -> None:
        """Deallocate the prepared statements of every pooled connection.

        Idle connections are cleared now (psycopg: ``DEALLOCATE ALL``, and
        psycopg's own cache is forgotten with it; asyncpg: its statement cache
        is dropped, and its statements closed at the next query); connections
        in use are cleared when they come back.  Use it after DDL that would
        make other connections fail with "cached plan must not change result
        type".
        """
        self._driver.epoch += 1  # (the driver's gates see it at once)
        for e in self._take_idle():
            await self._release(e)  # the reset sees the new epoch and deallocates
        self._close_doomed()

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[AsyncPoolConnT]:
        """Borrow a connection inside ``conn.transaction()`` (commit or roll back)."""
        async with self.connection(timeout) as conn, conn.transaction():  # type: ignore[attr-defined]
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
