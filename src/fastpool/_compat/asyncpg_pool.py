"""``fastpool.asyncpg``: asyncpg's pool API (``create_pool``, ``Pool``) on fastpool.

Switching is one import: ``from fastpool.asyncpg import create_pool``.  The
signature, the proxy, the hooks (``connect``, ``init``, ``setup``, ``reset``),
the query shortcuts and the errors are asyncpg's; under them is fastpool's
asyncio pool on asyncpg connections, so the pool also keeps ``min_size`` open
in the background, serves waiters first come first served, never hands out a
connection whose server went away, bounds every phase of ``acquire`` by its
timeout, and leaks nothing when a task is cancelled anywhere.

The return path keeps asyncpg's semantics (the default reset is
``Connection.reset()``: roll back, then asyncpg's reset query) but takes the
round trip off the releaser's path: ``release()`` returns at once and the
connection is reset in the background before anyone else gets it.  When the
borrower provably changed nothing, there is no round trip at all (see
:meth:`Pool.release`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

import asyncpg

from .. import _core_build
from .._acompat import maybe_await, sleep_async
from .._aio import resume, run_eagerly
from .._drivers.asyncpg_driver import AsyncpgDriver
from .._pool.base_async import AsyncBasePool
from .._settings import PoolConfig, check_callable, check_count, check_duration
from ..errors import PoolClosed, PoolTimeout
from ..recycle import Recycle
from .asyncpg_proxy import PoolConnectionProxy
from .asyncpg_shortcuts import QueryShortcuts

if TYPE_CHECKING:
    from typing_extensions import Self

    from .asyncpg_lend import AcquireContext, DropinPath

__all__ = ["AcquireTimeout", "AsyncpgPoolOptions", "Pool", "create_pool"]

logger = logging.getLogger("fastpool.asyncpg")

_NEW, _OPENING, _READY, _CLOSING, _CLOSED = range(5)
#: asyncpg's options and the fastpool option each one is
_ALIASES = {"idle_timeout": "max_inactive_connection_lifetime", "after_connect": "init"}


class AsyncpgPoolOptions(TypedDict, total=False):
    """fastpool's options that asyncpg's pool lacks: ``create_pool(..., fastpool_options={...})``.

    They go in one dictionary, apart from the keyword arguments that asyncpg
    passes to ``connect()``.  See :class:`fastpool.AsyncPool` for each one.
    ``acquire_timeout`` (30 s) bounds an ``acquire()`` given no ``timeout``
    (asyncpg's waits forever).
    """

    acquire_timeout: float
    fail_fast_after: float | None
    release_timeout: float
    leak_timeout: float | None
    max_lifetime: float | None
    max_uses: int
    max_waiting: int
    queue_target: float | None
    queue_interval: float
    test_before_acquire: bool
    verify_after: float
    reconnect_timeout: float | None
    num_workers: int
    name: str | None
    transaction_pooling: bool


class AcquireTimeout(PoolTimeout, asyncio.TimeoutError):
    """No connection within ``acquire(timeout=)``: an ``asyncio.TimeoutError``, as asyncpg's pool
    raises, and a :class:`fastpool.PoolTimeout` (whose message names the phase that ran out)."""

    __module__ = "fastpool.asyncpg"


class _DropinDriver(AsyncpgDriver):
    """The asyncpg driver as asyncpg's pool connects: through ``connect=`` if given, checked
    to be a ``connection_class``, then ``init=``; its errors reach callers unchanged."""

    def __init__(
        self,
        default_connect_timeout: float,
        *,
        dsn: str | None,
        connect_kwargs: dict[str, Any],
        connect: Callable[..., Awaitable[Any]] | None,
        init: Callable[[Any], Awaitable[Any]] | None,
        connection_class: type[Any],
        record_class: type[Any],
        transaction_pooling: bool,
    ) -> None:
        super().__init__(
            dsn or "", connect_kwargs, Recycle.FAST, None, transaction_pooling=transaction_pooling
        )
        self._connect_fn = connect
        self._init = init
        self._connection_class = connection_class
        self._record_class = record_class

    def set_args(self, dsn: str | None, kwargs: dict[str, Any]) -> None:
        """New connection arguments, for the connections made from now on."""
        self.dsn, self.kwargs = self.resolve(dsn or "", kwargs)

    async def connect(self) -> Any:
        make = self._connect_fn
        loop = asyncio.get_running_loop()
        cls = self._connection_class
        if make is None:
            make = self._asyncpg.connect
        con = await make(self.dsn, loop=loop, connection_class=cls, record_class=self._record_class,
                         **self.kwargs)  # fmt: skip
        if not isinstance(con, cls):
            bad = type(con)
            got = bad.__name__ if bad.__module__ == "builtins" else f"{bad.__module__}.{bad.__qualname__}"
            raise self._errors.InterfaceError(
                f"expected pool connect callback to return an instance of "
                f"'{cls.__module__}.{cls.__qualname__}', got '{got}'"
            )
        if self._init is not None:
            try:
                await self._init(con)
            except BaseException:  # the connection's state is unknown: closed before the error goes on
                await self.close(con)
                raise
        return con

    def connect_error(self, exc: BaseException) -> BaseException:
        return self.safe_error(exc) or exc  # asyncpg's pool raises the connect error itself


class Pool(QueryShortcuts, AsyncBasePool[Any]):
    """asyncpg's connection pool, on fastpool: create it with :func:`create_pool`.

    ``await pool`` (or ``async with pool``) opens ``min_size`` connections;
    ``pool.acquire()`` lends a :class:`PoolConnectionProxy` (``await`` it, or
    ``async with``), ``pool.release(con)`` takes it back.  Parameters are
    :func:`create_pool`'s.  ``fastpool_options`` takes fastpool's own options
    (:class:`AsyncpgPoolOptions`); ``stats()``, ``pause()``, ``resume()``,
    ``resize()`` and :mod:`fastpool.metrics` work as on :class:`fastpool.AsyncPool`.
    """

    _log: ClassVar[logging.Logger] = logger
    _driver: _DropinDriver
    #: asyncpg 0.32's pool keeps ``min_size`` with a task of its own; here the pool's background
    #: work does (asyncpg's test harness waits for this attribute's task: there is none)
    _maintenance_task: ClassVar[None] = None

    def __init__(
        self,
        dsn: str | None = None,
        *,
        init_size: int | None = None,
        min_size: int = 10,
        max_size: int = 10,
        max_queries: int = 50000,
        max_inactive_connection_lifetime: float = 300.0,
        connect: Callable[..., Awaitable[Any]] | None = None,
        setup: Callable[[PoolConnectionProxy], Awaitable[Any]] | None = None,
        init: Callable[[Any], Awaitable[Any]] | None = None,
        reset: Callable[[Any], Awaitable[Any]] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        connection_class: type[asyncpg.Connection] = asyncpg.Connection,
        record_class: type[asyncpg.Record] = asyncpg.Record,
        fastpool_options: AsyncpgPoolOptions | None = None,
        **connect_kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        extras = _check(owner, max_queries, connection_class, record_class, connect, setup, init, reset,
                        fastpool_options)  # fmt: skip
        inactive = check_duration("max_inactive_connection_lifetime", max_inactive_connection_lifetime,
                                  allow_none=False, allow_zero=True, owner=owner)  # fmt: skip
        transaction_pooling = bool(extras.pop("transaction_pooling", False))
        config = PoolConfig(
            owner=owner,
            aliases=_ALIASES,
            start=False,
            open=False,
            min_size=min_size,
            max_size=max_size,
            idle_timeout=inactive or None,
            **extras,
        )
        self._init_size = _init_size(owner, init_size, config)
        self._state = _NEW
        self._setup = setup
        self._reset_hook = reset
        self._max_queries = max_queries
        self._settling: set[asyncio.Task[Any]] = set()
        driver = partial(
            _DropinDriver,
            dsn=dsn,
            connect_kwargs=connect_kwargs,
            connect=connect,
            init=init,
            connection_class=connection_class,
            record_class=record_class,
            transaction_pooling=transaction_pooling,
        )
        super().__init__(driver, config)

    def _bind_fast(self) -> None:
        super()._bind_fast()  # (connection, getconn and putconn are this class's own)
        # the drop-in's borrow path, of the core's build, on the core's (new in a forked child)
        lend = _core_build.load_module(f"{__package__}.asyncpg_lend", _core_build.build_of(self._core_mod))
        self._path: DropinPath = lend.DropinPath(
            self._ref, self._fast, self._driver.gates, PoolConnectionProxy, _PROXY_SLOTS,
            asyncpg.Connection, _conn_slots(), (self._setup, self._reset_hook), self._max_queries,
            asyncpg.InterfaceError,
        )  # fmt: skip
        self._path.ready = self._state == _READY

    def _set_state(self, state: int) -> None:
        self._state = state
        self._path.ready = state == _READY

    # -- opening and closing -------------------------------------------------------------------------

    def __await__(self) -> Any:
        return self._open_once().__await__()

    async def __aenter__(self) -> Self:
        await self._open_once()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _open_once(self) -> Self:
        """Open ``min_size`` connections, once; the errors asyncpg's pool raises."""
        state = self._state
        if state >= _READY:
            return self
        if state == _OPENING:
            raise asyncpg.InterfaceError("pool is being initialized in another task")
        self._set_state(_OPENING)
        try:
            self._ensure_started()
            await self._open_min()
        except BaseException:
            self._set_state(_CLOSED)
            await AsyncBasePool.close(self, 0)
            raise
        self._set_state(_READY)
        return self

    async def _open_min(self) -> None:
        held: list[Any] = []
        deadline = monotonic() + self._acquire_timeout
        failure: BaseException | None = None
        try:
            for _ in range(self._init_size):
                r = self._fast.get(max(0.0, deadline - monotonic()))
                held.append(r if type(r) is self._entry_cls else await r)
        except PoolTimeout as exc:  # the connect error itself, as asyncpg raises it, if there was one
            failure = self._driver.safe_error(exc.__cause__) or AcquireTimeout(str(exc))
        finally:
            for e in held:
                self._fast.release(e, monotonic())
        if failure is not None:  # (raised out of the handler: no loop between it and its cause)
            raise failure

    async def close(self) -> None:  # type: ignore[override]
        """Wait until every connection is released (and reset) and every connect under way has
        finished, then close them all; idempotent.

        As asyncpg's: there is no timeout (use ``asyncio.wait_for``), and if the
        wait is cancelled or fails the pool is terminated.  A warning is logged
        when it takes over 60 seconds.
        """
        if self._state >= _CLOSING:
            return
        self._check_open()
        self._set_state(_CLOSING)
        warn = self._alarm(60.0, self._warn_long_close)
        try:
            # borrowed connections come back (and are reset); connects under way finish (their
            # init= runs), as asyncpg's pool, whose connects run in acquire(), waits for them too
            while self._gauge("in_use") or self._gauge("connecting"):
                await sleep_async(0.005)
            await AsyncBasePool.close(self, 1.0)
        except BaseException:
            self.terminate()
            raise
        finally:
            warn.cancel()
            self._set_state(_CLOSED)

    def _warn_long_close(self) -> None:
        self._log.warning(
            "Pool.close() is taking over 60 seconds to complete. Check if you have any unreleased "
            "connections left. Use asyncio.wait_for() to set a timeout for Pool.close()."
        )

    def terminate(self) -> None:
        """Close every connection now, borrowed ones included, and the pool with them."""
        if self._state == _CLOSED:
            return
        self._set_state(_CLOSED)
        for task in self._settling:
            task.cancel()
        self._terminate()

    def is_closing(self) -> bool:
        """True once :meth:`close` or :meth:`terminate` was called."""
        return self._state >= _CLOSING

    def _check_open(self) -> None:
        """asyncpg's errors for a pool not ready for use."""
        state = self._state
        if state == _READY:
            return
        if state == _NEW:
            raise asyncpg.InterfaceError("pool is not initialized")
        if state == _OPENING:
            raise asyncpg.InterfaceError(
                "pool is being initialized, but not yet ready: likely there is a race between "
                "creating a pool and using it"
            )
        raise asyncpg.InterfaceError("pool is closing" if state == _CLOSING else "pool is closed")

    # -- sizes and connection arguments ---------------------------------------------------------------

    def get_size(self) -> int:
        """How many connections are open (idle or borrowed)."""
        return self._gauge("size") - self._gauge("connecting")

    def get_init_size(self) -> int:
        """How many connections ``await pool`` opens (``init_size``, by default ``min_size``)."""
        return self._init_size

    def get_min_size(self) -> int:
        """The fewest connections the pool keeps open."""
        return self.min_size

    def get_max_size(self) -> int:
        """The most connections the pool opens."""
        return self.max_size

    def get_idle_size(self) -> int:
        """How many open connections nobody has borrowed (one being reset is not idle yet)."""
        return self._gauge("idle")

    def set_connect_args(self, dsn: str | None = None, **connect_kwargs: Any) -> None:
        """Connect with these arguments from now on; :meth:`expire_connections` replaces the
        connections made before."""
        self._driver.set_args(dsn, connect_kwargs)

    async def expire_connections(self) -> None:
        """Replace every connection: idle ones now, borrowed ones when they are released."""
        self.drain()

    def _drop_statement_cache(self) -> None:
        """Drop every connection's statement cache (asyncpg's Connection asks, after a schema change)."""
        for con in self._connections():
            con._drop_local_statement_cache()

    def _drop_type_cache(self) -> None:
        """Drop every connection's type codec cache (asyncpg's Connection asks)."""
        for con in self._connections():
            con._drop_local_type_cache()

    # -- acquiring -----------------------------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> AcquireContext:  # type: ignore[override]
        """A connection: ``async with pool.acquire() as con:``, or ``con = await pool.acquire()``.

        ``timeout`` (default ``acquire_timeout``, 30 s) bounds every phase: the wait,
        a connect, a health check and ``setup``; past it ``AcquireTimeout`` (an
        ``asyncio.TimeoutError``) is raised.  It also bounds the connection's reset
        at release, unless ``release(timeout=)`` says otherwise.
        """
        return self._path.acquire(timeout)

    def connection(self, timeout: float | None = None) -> AcquireContext:
        """The same as ``acquire(timeout=timeout)`` (fastpool's spelling)."""
        return self._path.acquire(timeout)

    async def getconn(self, timeout: float | None = None) -> PoolConnectionProxy:
        """The same as ``await acquire(timeout=timeout)`` (fastpool's spelling)."""
        return await self._lend(timeout)

    async def putconn(self, conn: Any) -> None:
        """The same as :meth:`release` (fastpool's spelling)."""
        await self.release(conn)

    async def _lend(self, timeout: float | None) -> PoolConnectionProxy:
        r = self._path.take(timeout)
        return r if type(r) is PoolConnectionProxy else await r

    async def _take_slow(self, r: Any, timeout: float | None) -> PoolConnectionProxy:
        """The borrow path's ``take`` when it must wait (a queue, a connect, a check) or ``setup`` runs."""
        start = monotonic()
        try:
            e = r if type(r) is self._entry_cls else await r
        except PoolTimeout as exc:
            raise AcquireTimeout(str(exc)) from exc.__cause__
        except PoolClosed:
            raise asyncpg.InterfaceError("pool is closing") from None
        if self._setup is None:
            return self._path.lend(e, timeout, True)  # type: ignore[no-any-return]
        proxy: PoolConnectionProxy = self._path.lend(e, timeout, False)
        await self._run_setup(proxy, e, start + (self._acquire_timeout if timeout is None else timeout))
        proxy._in_use = True
        return proxy

    async def _run_setup(self, proxy: PoolConnectionProxy, e: Any, deadline: float) -> None:
        """``setup(proxy)`` by ``deadline``; if it fails the connection is closed and the error goes on."""
        con = e.conn
        try:
            await self._phase(con, deadline, self._setup, proxy)  # type: ignore[arg-type]  # (not None)
        except BaseException as exc:
            await self._driver.close(con)  # (the proxy keeps it, closed: as asyncpg's does)
            self._discard(e)
            if isinstance(exc, Exception) and monotonic() >= deadline:
                raise AcquireTimeout(f"setup did not finish within the acquire timeout: {exc}") from exc
            raise

    # -- releasing -----------------------------------------------------------------------------------

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        """Give back a connection from :meth:`acquire`; releasing it twice does nothing.

        The connection is usable by others once asyncpg's reset has run (an open
        transaction rolled back, then ``reset=`` or ``Connection.reset()``), but
        the caller does not wait for it: the reset runs in the background, within
        ``timeout`` (default: the acquire's timeout, else ``release_timeout``).
        If it fails or runs out of time the connection is closed and logged.  There
        is no reset at all when it has provably nothing to undo: no ``reset=``
        hook, and the borrower sent no query (asyncpg's protocol counts each one
        as it is sent), ran no COPY, left no listener or transaction, and never
        reached past the proxy (``con._con``, a ``connection_class``'s own methods).
        """
        if type(connection) is not PoolConnectionProxy or connection._pool is not self:
            raise asyncpg.InterfaceError(
                f"Pool.release() received invalid connection: {connection!r} is not a member of this pool"
            )
        self._path.give_back(connection, timeout)

    def _reset_later(self, e: Any, con: Any, timeout: float | None) -> None:
        """Reset ``con`` then give ``e`` back, as far as possible right here, the rest in a task."""
        if con._protocol.queries_count >= self._max_queries:
            self._discard(e)
            return
        self._track(
            run_eagerly(asyncio.get_running_loop(), self._reset_and_return(e, con, None)), con, timeout
        )

    def _hook_later(self, e: Any, con: Any, coro: Any, waiting_on: Any, timeout: float | None) -> None:
        """The rest of a ``reset=`` hook that waits, then hand-off (the borrow path started it;
        ``coro`` None: ``waiting_on`` is the awaitable the hook returned)."""
        rest = waiting_on if coro is None else resume(coro, waiting_on)
        self._track(
            asyncio.get_running_loop().create_task(self._reset_and_return(e, con, rest)), con, timeout
        )

    def _track(self, task: asyncio.Task[Any] | None, con: Any, timeout: float | None) -> None:
        """Bound a reset under way by ``timeout`` (else ``release_timeout``); ``close()`` waits for it."""
        if task is not None:
            budget = self._release_timeout if timeout is None else timeout
            alarm = self._alarm(budget, self._driver.interrupt, con)
            self._settling.add(task)
            task.add_done_callback(partial(self._settled, alarm))

    def _settled(self, alarm: Any, task: asyncio.Task[Any]) -> None:
        alarm.cancel()
        self._settling.discard(task)
        if not task.cancelled():
            task.exception()  # (never one: _reset_and_return keeps its errors)

    async def _reset_and_return(self, e: Any, con: Any, hook_rest: Any) -> None:
        """asyncpg's release-time reset (or the rest of a ``reset=`` hook, ``hook_rest``), then
        hand-off; on any failure the connection is closed."""
        try:
            if hook_rest is not None:
                await hook_rest
            else:
                proto = con._protocol
                if proto._is_cancelling():
                    await proto._wait_for_cancellation()
                hook = self._reset_hook
                if hook is None:
                    await con.reset()
                else:
                    await con._reset()
                    await maybe_await(hook(con))
        except (Exception, asyncio.CancelledError) as exc:
            self._reset_failed(e, con, exc)
            return
        self._fast.release(e, monotonic())

    def _reset_failed(self, e: Any, con: Any, exc: BaseException) -> None:
        """A reset that raised or was interrupted: the connection is closed, and why is logged."""
        con.terminate()
        self._discard(e)
        if not isinstance(exc, asyncio.CancelledError):
            self._log.warning(
                "%s: resetting a released connection failed, closing it: %s",
                self.name,
                self._driver.redact(f"{type(exc).__name__}: {exc}"),
            )

    def _closed_while_lent(self, proxy: PoolConnectionProxy) -> None:
        """A lent connection closed (by its borrower, or lost): its slot is free now."""
        if not proxy._in_use:  # in setup: the acquire that runs it ends the borrow
            return
        proxy._in_use = False
        proxy._detach()
        self._discard(proxy._entry)


#: the proxy's slot descriptors, in the order the borrow path takes them
_PROXY_SLOTS = tuple(PoolConnectionProxy.__dict__[name] for name in PoolConnectionProxy._SLOTS)


def _conn_slots() -> tuple[Any, ...]:
    """What the borrow path reads and writes on asyncpg's connections: the descriptors of
    ``Connection._proxy``, ``._pool_holder`` (asyncpg 0.32+, else None), ``._protocol``,
    ``._pool_release_ctr``, ``._listeners``, ``._log_listeners``, and the protocol's ``queries_count``."""
    from asyncpg.protocol import Protocol  # noqa: PLC0415

    slots = asyncpg.Connection.__dict__
    names = ("_proxy", "_pool_holder", "_protocol", "_pool_release_ctr", "_listeners", "_log_listeners")
    queries = next(k.__dict__["queries_count"] for k in Protocol.__mro__ if "queries_count" in k.__dict__)
    return (*(slots.get(name) for name in names), queries)


def create_pool(
    dsn: str | None = None,
    *,
    init_size: int | None = None,
    min_size: int = 10,
    max_size: int = 10,
    max_queries: int = 50000,
    max_inactive_connection_lifetime: float = 300.0,
    connect: Callable[..., Awaitable[Any]] | None = None,
    setup: Callable[[PoolConnectionProxy], Awaitable[Any]] | None = None,
    init: Callable[[Any], Awaitable[Any]] | None = None,
    reset: Callable[[Any], Awaitable[Any]] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    connection_class: type[asyncpg.Connection] = asyncpg.Connection,
    record_class: type[asyncpg.Record] = asyncpg.Record,
    fastpool_options: AsyncpgPoolOptions | None = None,
    **connect_kwargs: Any,
) -> Pool:
    """Create a pool, asyncpg's way: ``pool = await create_pool(dsn, min_size=..., ...)``.

    ``dsn`` and ``connect_kwargs`` go to ``asyncpg.connect()`` (a libpq
    ``key=value`` string is accepted too).  ``init_size`` connections (by default
    ``min_size``) are opened by ``await`` (or ``async with``); ``min_size`` are
    kept open, in the background; ``max_size`` is the cap.  A connection is replaced after ``max_queries``
    queries and closed after ``max_inactive_connection_lifetime`` seconds idle
    (0: never).  ``connect(dsn, **kwargs)`` replaces ``asyncpg.connect``;
    ``init(con)`` runs once per new connection, ``setup(proxy)`` at every
    acquire, ``reset(con)`` at every release instead of ``Connection.reset()``
    (after any open transaction is rolled back); a hook that raises closes the
    connection and the error goes to the caller.  ``loop`` is accepted for
    asyncpg's sake: the pool runs on the loop it is opened in.
    ``fastpool_options``: see :class:`AsyncpgPoolOptions`.
    """
    return Pool(
        dsn,
        init_size=init_size,
        min_size=min_size,
        max_size=max_size,
        max_queries=max_queries,
        max_inactive_connection_lifetime=max_inactive_connection_lifetime,
        connect=connect,
        setup=setup,
        init=init,
        reset=reset,
        loop=loop,
        connection_class=connection_class,
        record_class=record_class,
        fastpool_options=fastpool_options,
        **connect_kwargs,
    )


def _init_size(owner: str, init_size: int | None, config: PoolConfig) -> int:
    """``init_size`` checked against the sizes (asyncpg 0.32's rules); ``min_size`` if None."""
    if init_size is None:
        return int(config.min_size)
    check_count("init_size", init_size, 0, owner=owner)
    if not config.min_size <= init_size <= config.max_size:
        raise ValueError(f"{owner}: init_size must be between min_size ({config.min_size}) and "
                         f"max_size ({config.max_size}), got {init_size}")  # fmt: skip
    return init_size


def _check(
    owner: str,
    max_queries: int,
    connection_class: Any,
    record_class: Any,
    connect: Any,
    setup: Any,
    init: Any,
    reset: Any,
    options: Any,
) -> dict[str, Any]:
    """Check what ``PoolConfig`` does not; return the fastpool options (a new dict)."""
    check_count("max_queries", max_queries, 1, owner=owner)
    if not isinstance(connection_class, type) or not issubclass(connection_class, asyncpg.Connection):
        raise TypeError(f"{owner}: connection_class must be a subclass of asyncpg.Connection, "
                        f"got {connection_class!r}")  # fmt: skip
    if not isinstance(record_class, type) or not issubclass(record_class, asyncpg.Record):
        raise TypeError(f"{owner}: record_class must be a subclass of asyncpg.Record, got {record_class!r}")
    for name, fn in (("connect", connect), ("setup", setup), ("init", init), ("reset", reset)):
        check_callable(name, fn, owner=owner)
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"{owner}: fastpool_options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(AsyncpgPoolOptions.__annotations__))
    if unknown:
        raise TypeError(f"{owner}: unknown fastpool_options {', '.join(map(repr, unknown))} "
                        f"(known: {', '.join(AsyncpgPoolOptions.__annotations__)})")  # fmt: skip
    return dict(options)
