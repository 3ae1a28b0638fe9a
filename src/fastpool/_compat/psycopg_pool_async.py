"""``fastpool.AsyncConnectionPool``: psycopg_pool's asyncio surface on fastpool.

Switching is one import line: ``from fastpool import AsyncConnectionPool``
(and ``AsyncNullConnectionPool``, ``PoolTimeout``, ``PoolClosed``,
``TooManyRequests``, which subclass ``psycopg.OperationalError`` like
psycopg_pool's).  Parameter names, defaults, warnings and log messages follow
psycopg_pool 3.3 (logs go to the ``psycopg.pool`` logger, where switching
users' filters and alerts already look); where psycopg_pool behaves badly,
fastpool does the right thing instead:

* a connection whose backend died while idle is never handed out (the socket
  is probed at every hand-out, at no round trip);
* an idle connection past ``max_lifetime`` or ``max_idle`` is never handed out
  (psycopg_pool checks lifetime only when a connection comes back);
* a caller that times out never wastes the connection opened for it;
* after ``reconnect_timeout`` of failed attempts ``reconnect_failed(pool)`` is
  called, and the pool keeps trying with backoff instead of shrinking.

fastpool extras are accepted too: ``recycle=`` (see :class:`fastpool.Recycle`),
``fail_fast_after``, ``release_timeout`` and ``transaction_pooling``.
"""

from __future__ import annotations

import logging
import random
import threading
import warnings
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, cast

import psycopg
from psycopg import pq

from .._acompat import maybe_await, sleep_async
from .._drivers.psycopg_async import AsyncPsycopgDriver, run_autocommit_async
from .._meta import ConnectionMetadata
from .._pool.base_async import AsyncBasePool
from .._settings import MAX_SIZE, PoolConfig, check_bool, check_callable, check_count, check_sizes
from .._types import AsyncConninfo, AsyncConnT, AsyncKwargs, FastpoolExtras
from ..errors import PoolTimeout
from ..recycle import Recycle

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncConnectionPool", "AsyncNullConnectionPool"]

#: psycopg_pool's logger: the drop-in classes log there, as the pools they replace did
logger = logging.getLogger("psycopg.pool")

_IDLE = pq.TransactionStatus.IDLE
_AsyncConnectionClass: Any = psycopg.AsyncConnection
#: the pools' option names -> psycopg_pool's, for the options the two share
_PSYCOPG_POOL_NAMES = {"acquire_timeout": "timeout", "idle_timeout": "max_idle"}
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


class _AsyncCheckedBorrow:
    """``connection()`` when a ``check`` callback or a first-use warning is due."""

    __slots__ = ("_entry", "_pool", "_timeout")

    def __init__(self, pool: AsyncConnectionPool[Any], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: Any = None

    async def __aenter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        self._entry = e = await self._pool._get_checked(self._timeout)
        e.conn._pool = self._pool
        return e.conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        e, self._entry = self._entry, None
        e.conn._pool = self._pool._driver
        if True:  # ASYNC
            r = self._pool._fast.release_block(e, exc_type is None)
            if r is not None:
                await r
        else:
            self._pool._fast.release_block(e, exc_type is None)


class AsyncConnectionPool(AsyncBasePool[AsyncConnT]):
    """A psycopg_pool-compatible pool of psycopg ``AsyncConnection`` objects.

    Generic over the connection class: ``AsyncConnectionPool[MyConnection]``
    (inferred from ``connection_class``) hands out ``MyConnection`` objects.

    Parameters as psycopg_pool's: ``conninfo`` and ``kwargs`` (or functions,
    plain or coroutine, returning them: called for each new connection, to
    rotate credentials), ``connection_class``, ``min_size`` (4; 0 for the null pool),
    ``max_size=None`` (= ``min_size``), ``open`` (True: open now; False: call
    :meth:`open` or use ``async with``; None: open now, with psycopg_pool's
    warning), ``configure(conn)`` (once per new connection), ``check(conn)``
    (before every hand-out; raise to reject the connection), ``reset(conn)``
    (when a connection comes back; it must leave it idle), ``name``,
    ``close_returns``, ``timeout=30``, ``max_waiting=0``,
    ``max_lifetime=3600``, ``max_idle=600``, ``reconnect_timeout=300``,
    ``reconnect_failed(pool)``, ``num_workers=3``; plus fastpool's
    ``recycle`` and ``transaction_pooling`` (for PgBouncer's transaction mode),
    and the options of :class:`FastpoolExtras`: ``fail_fast_after`` (off by
    default here, as psycopg_pool has no such thing), ``release_timeout``,
    ``leak_timeout``, ``max_uses``, ``queue_target`` and ``queue_interval``.
    The callbacks may be plain or coroutine functions.
    """

    _driver: AsyncPsycopgDriver
    _log: ClassVar[logging.Logger] = logger
    _rollback_level: ClassVar[int] = logging.WARNING  # psycopg_pool warns, and so do we here
    _close_waits: ClassVar[bool] = False  # close() does not wait for borrowed connections
    _lend_as_pool: ClassVar[bool] = True  # conn._pool is the pool, as with psycopg_pool
    _null: ClassVar[bool] = False

    def __init__(
        self,
        conninfo: AsyncConninfo = "",
        *,
        connection_class: type[AsyncConnT] = _AsyncConnectionClass,
        kwargs: AsyncKwargs | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callable[[AsyncConnT], Any] | None = None,
        check: Callable[[AsyncConnT], Any] | None = None,
        reset: Callable[[AsyncConnT], Any] | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Callable[[AsyncConnectionPool[Any]], Any] | None = None,
        num_workers: int = 3,
        recycle: Recycle = Recycle.FAST,
        transaction_pooling: bool = False,
        **extras: Unpack[FastpoolExtras],
    ) -> None:
        if min_size is None:
            min_size = 0 if self._null else 4
        owner = type(self).__name__
        min_size, core_max = self._check_size(min_size, max_size)  # psycopg_pool's rules
        max_size = min_size if max_size is None else max_size
        check_bool("open", open, allow_none=True, owner=owner)
        check_bool("close_returns", close_returns, owner=owner)
        for opt, fn in (("configure", configure), ("check", check), ("reset", reset)):
            check_callable(opt, fn, owner=owner)
        fastpool_extras: FastpoolExtras = {"fail_fast_after": None, **extras}  # (off: psycopg_pool has none)
        # every option the pools share is checked once, there, under psycopg_pool's names
        config = PoolConfig(
            owner=owner,
            aliases=_PSYCOPG_POOL_NAMES,
            open=False,
            start=open is not False,
            min_size=min_size,
            max_size=core_max,
            acquire_timeout=timeout,
            max_lifetime=max_lifetime,
            idle_timeout=max_idle,
            test_before_acquire=False,  # psycopg_pool does not ping; check= does
            after_connect=self._after_connect_cb if configure is not None else None,
            after_release=self._after_release_cb if reset is not None else None,
            max_waiting=max_waiting,
            num_workers=num_workers,
            name=name,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=reconnect_failed,
            keep_idle=not self._null,
            **fastpool_extras,
        )
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self._configure, self._check_cb, self._reset_cb = configure, check, reset
        self._max_size_arg = max_size
        self._keep_psycopg_pool_names(config)
        self._baseline: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._stats_lock = threading.Lock()  # get_stats/pop_stats, atomic with each other
        # psycopg_pool's open=None: open now, and warn at the first use (it will change)
        self._open_implicit = open is None
        driver = partial(AsyncPsycopgDriver, conninfo, kwargs, connection_class, recycle,
                         transaction_pooling=transaction_pooling)  # fmt: skip
        super().__init__(driver, config)
        self._driver.close_returns = bool(close_returns) and not self._null
        if True:  # ASYNC
            if open:  # psycopg_pool warns about opening an asyncio pool in its constructor
                self._warn_open()

    def _keep_psycopg_pool_names(self, config: PoolConfig) -> None:
        """The options as psycopg_pool's attributes (``pool.timeout``, ``pool.max_idle``...)."""
        self.timeout = config.acquire_timeout
        self.max_waiting = config.max_waiting
        self.max_lifetime = config.max_lifetime
        self.max_idle = config.idle_timeout
        self.reconnect_timeout = config.reconnect_timeout
        self.num_workers = config.num_workers

    def _check_size(self, min_size: int, max_size: int | None) -> tuple[int, int]:
        """psycopg_pool's size rules, in fastpool's words; return (min_size, the core's max_size)."""
        owner = type(self).__name__
        if max_size is not None:
            check_sizes("min_size", min_size, "max_size", max_size, owner=owner)
            return min_size, max_size
        check_count("min_size", min_size, 0, MAX_SIZE, owner=owner)
        if min_size < 1:
            raise ValueError(
                f"{owner}: max_size must be given when min_size is 0 (max_size=None means min_size)"
            )
        return min_size, min_size

    @property
    def max_size(self) -> int:
        """The most connections the pool holds (idle + in use + connecting)."""
        return super().max_size

    @property
    def _waiting(self) -> range:
        # psycopg_pool's queue of callers, as far as code outside it looks (its len())
        return range(self._gauge("waiting"))

    # -- opening, and psycopg_pool's warnings about it -------------------------------------

    def _bind_fast(self) -> None:
        # connection() and getconn() are the compiled borrow path's unless a check or a
        # first-use warning is due; putconn() always is
        super()._bind_fast()
        if self._check_cb is None and not self._open_implicit:
            self.connection = self._fast.connection  # type: ignore[method-assign]
            self.getconn = self._fast.getconn  # type: ignore[method-assign]
        else:
            self.__dict__.pop("connection", None)
            self.__dict__.pop("getconn", None)

    def _warn_open(self) -> None:
        name = type(self).__name__
        if True:  # ASYNC
            warnings.warn(
                f"opening the async pool {name} in the constructor is deprecated and will not be "
                "supported anymore in a future release. Please use `await pool.open()`, or use the "
                f"pool as context manager using: `async with {name}(...) as pool: `...",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            warnings.warn(
                f"the default for the {name} 'open' parameter will become 'False' in a future "
                "release. Please use open={True|False} explicitly, or use the pool as context "
                f"manager using: `with {name}(...) as pool: ...`",
                DeprecationWarning,
                stacklevel=3,
            )

    def _first_use(self) -> None:
        """The first borrow of a pool opened by default (``open=None``) warns, as psycopg_pool does."""
        if self._open_implicit:
            self._open_implicit = False
            self._warn_open()
            self._bind_fast()

    async def open(self, wait: bool = False, timeout: float | None = 30.0) -> None:
        """Open the pool (connections are made in the background); idempotent.

        With ``wait=True``, wait up to ``timeout`` for ``min_size``
        connections (see :meth:`wait`).  A closed pool cannot be reopened.
        """
        self._ensure_started()
        if wait:
            await self.wait(30.0 if timeout is None else timeout)

    async def __aenter__(self) -> Self:
        if self._open_implicit:  # a pool used as a context manager is opened explicitly
            self._open_implicit = False
            self._bind_fast()
        await self.open()
        return self

    # -- borrowing -------------------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[AsyncConnT]:
        """Borrow a connection for an ``async with`` block: commit on success, roll back on error.

        ``timeout`` (default: the pool's ``timeout``) bounds the wait for a
        connection; ``check`` runs on the connection before it is handed out.
        """
        return cast(AbstractAsyncContextManager[AsyncConnT], _AsyncCheckedBorrow(self, timeout))

    async def getconn(self, timeout: float | None = None) -> AsyncConnT:
        """Check out a connection, to give back with :meth:`putconn`.

        Prefer :meth:`connection`; ``timeout`` and ``check`` as there.
        """
        # lent: conn._pool is this pool until putconn(), as psycopg_pool does
        return self._fast.lend(await self._get_checked(timeout))  # type: ignore[no-any-return]

    async def _get_checked(self, timeout: float | None) -> Any:
        """An in-use entry that passed ``check``: connections that fail it are closed and the
        next is tried (the first retry at once, then with backoff), within ``timeout``."""
        if self._open_implicit:
            self._first_use()
        check = self._check_cb
        if check is None:
            return await self._get(timeout)
        start = monotonic()
        budget = self.timeout if timeout is None else timeout
        deadline = start + budget
        delay = 0.0
        while True:
            e = await self._get(max(0.0, deadline - monotonic()))
            conn = e.conn
            try:
                await self._phase(conn, deadline, check, conn)
            except Exception as exc:
                self._log.info("connection failed check: %s", self._driver.redact(str(exc)))
                self._count("health_check_failures")
                self._discard(e)
            except BaseException:  # cancelled mid-check: the connection's state is unknown
                self._discard(e)
                raise
            else:
                return e
            left = deadline - monotonic()
            if left <= 0:
                raise PoolTimeout(f"couldn't get a connection after {budget:.2f} sec")
            if delay:
                await sleep_async(min(left, delay * (0.5 + random.random())))
            delay = min(max(delay * 2, 0.01), 1.0)

    # -- psycopg_pool's API ----------------------------------------------------------------

    if True:  # ASYNC

        async def resize(self, min_size: int, max_size: int | None = None) -> None:  # type: ignore[override]
            """Change the pool's size (a coroutine, as in psycopg_pool)."""
            min_size, core_max = self._check_size(min_size, max_size)
            self._max_size_arg = min_size if max_size is None else max_size
            super().resize(min_size, core_max)

        async def drain(self) -> None:  # type: ignore[override]
            """Replace every connection (a coroutine, as in psycopg_pool)."""
            super().drain()

    else:

        def resize(self, min_size: int, max_size: int | None = None) -> None:
            """Change the pool's size."""
            min_size, core_max = self._check_size(min_size, max_size)
            self._max_size_arg = min_size if max_size is None else max_size
            super().resize(min_size, core_max)

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

    def __repr__(self) -> str:
        return f"<fastpool.{type(self).__name__} {self.name!r} at 0x{id(self):x}>"

    # -- psycopg_pool's callbacks on the pool's hooks ----------------------------------------------

    async def _after_connect_cb(self, conn: Any, meta: ConnectionMetadata) -> None:
        assert self._configure is not None
        await maybe_await(self._configure(conn))
        if (status := _not_idle(conn)) is not None:
            raise psycopg.ProgrammingError(
                f"connection left in status {status} by configure function {self._configure}: discarded"
            )

    async def _after_release_cb(self, conn: Any, meta: ConnectionMetadata) -> bool:
        assert self._reset_cb is not None
        await maybe_await(self._reset_cb(conn))
        if (status := _not_idle(conn)) is not None:
            msg = "connection left in status %s by reset function %s: discarded"
            self._log.warning(msg, status, self._reset_cb)
            return False
        return True

    # -- stats -------------------------------------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Return psycopg_pool's stats: gauges and counters since the last ``pop_stats()``."""
        with self._stats_lock:
            return self._psycopg_stats()

    def pop_stats(self) -> dict[str, int]:
        """Return the stats like :meth:`get_stats`, then reset the counters to zero."""
        with self._stats_lock:
            out = self._psycopg_stats()
            for k in _COUNTERS:
                self._baseline[k] += out[k]
        return out

    def _psycopg_stats(self) -> dict[str, int]:
        s = self.stats()
        raw = {
            "requests_num": s["requests"] + s["too_many_requests"],
            "requests_queued": s["waits"],
            "requests_wait_ms": s["wait_ms"],
            "requests_errors": s["timeouts"] + s["too_many_requests"],
            "usage_ms": s["usage_ms"],
            "returns_bad": s["returns_bad"],
            "connections_num": s["connects"] + s["connect_failures"],
            "connections_ms": s["connect_ms"],
            "connections_errors": s["connect_failures"],
            "connections_lost": s["health_check_failures"] + s["dead_idle_closed"],
        }
        out = {
            "pool_min": s["min_size"],
            "pool_max": self.max_size,
            "pool_size": s["size"],
            "pool_available": s["idle"],
            "requests_waiting": s["waiting"],
        }
        for k in _COUNTERS:
            out[k] = int(raw[k]) - self._baseline[k]
        return out


class AsyncNullConnectionPool(AsyncConnectionPool[AsyncConnT]):
    """psycopg_pool's ``AsyncNullConnectionPool``: a pool that keeps no connection.

    Every borrow gets a new connection, closed when it comes back unless a
    caller is waiting for one (then it is reset and handed over).  The
    parameters are :class:`AsyncConnectionPool`'s, but ``min_size`` must be 0,
    ``max_size`` caps the connections open at once (``None`` or 0: no cap)
    and ``close_returns`` is ignored.  ``check()`` does nothing; :meth:`wait`
    opens one connection to see that the server can be reached.
    """

    _null: ClassVar[bool] = True

    def _check_size(self, min_size: int, max_size: int | None) -> tuple[int, int]:
        owner = type(self).__name__
        check_count("min_size", min_size, 0, owner=owner)
        if min_size != 0:
            raise ValueError(f"{owner}: min_size must be 0, got {min_size} (a null pool keeps no connection)")
        if max_size is None:
            return 0, MAX_SIZE
        check_count("max_size", max_size, 0, MAX_SIZE, owner=owner)  # 0: no limit
        return 0, max_size or MAX_SIZE

    @property
    def max_size(self) -> int:
        """The most connections open at once; 0: no limit."""
        return int(self._max_size_arg or 0)

    async def wait(self, timeout: float = 30.0) -> None:
        """Open one connection, then close it: check that the server can be reached.

        Closes the pool and raises ``PoolTimeout`` if that takes longer than ``timeout``.
        """
        self._ensure_started()
        if self.closed:
            raise self._closed_error()
        try:
            e = await self._get(timeout)
        except PoolTimeout as exc:
            await self.close()
            raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from exc.__cause__
        await self._discard_now(e)

    async def check(self) -> None:
        """Do nothing: a null pool holds no idle connection to check."""


AsyncConnectionPool.__module__ = "fastpool"
AsyncNullConnectionPool.__module__ = "fastpool"
