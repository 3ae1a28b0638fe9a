"""The base of the asyncio pools: opening, borrowing, waiting, checking, closing.

The pool drives the core (the bookkeeping: idle queue, size cap, FIFO
waiters with hand-off and deadlines, expiry and health-check gates) and a
driver (the I/O), and does what neither may: it waits, runs the hooks and the
driver's I/O under their deadlines, and owns the background work that opens
connections with backoff, reaps expired idle ones, keeps ``min_size`` and
closes what is dropped.  What needs no I/O is :class:`PoolCommon`'s, written
once for both kinds of pool; its parts are the connector (``connecting``),
the returner (``returning``), the waiting queue (``_acompat``), the breaker,
the leak tracker and the shedder.  The threaded pools' base is generated
from this module.

The per-borrow path (``connection()``, and most acquires) runs in the core's
compiled borrow path, which calls back into the pool only when a gate, a
wait or a reset is needed, through the methods ``_core_host.PoolHost``
declares.

Cancellation and interruption safety, point by point:

* a waiter cancelled or timed out while queued is withdrawn from the core;
  if it had been handed a connection in the same instant, the connection
  goes to the next waiter at once;
* a health check, hook, reset or commit interrupted midway leaves the
  connection in an unknown state: it is discarded (never reused), its slot
  freed at once, and the close runs in the background;
* connects run in the pool's background work, never in the acquirer: an
  acquirer that gives up abandons only its wait, and the new connection
  serves the next one;
* nothing is shielded: interrupting a releaser can never lose a slot,
  because the slot is given back before anything on the release path waits;
* no task of the pool's ends with an exception nobody retrieves.

The surfaces use :class:`fastpool._pool.interface.PoolInterface`, and
nothing else of the pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._acompat import AsyncRunner, AsyncWaiting, maybe_await, phase_async, sleep_async, wake_async
from .._aio import AwaitableContext
from .._drivers.base import Driver
from .._drivers.resource import AsyncResourceDriver
from .._meta import META_NEW, ConnectionMetadata
from .._settings import PoolConfig, check_duration, config_of
from .._types import C, PoolSettings
from ..errors import PoolClosed, PoolTimeout, WrongPoolError
from .checkout_async import AsyncPooledConnection
from .common import PoolCommon, borrow_path, reap_tick
from .connecting_async import AsyncConnector
from .messages import eager_open_error
from .returning_async import AsyncReturner

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncBasePool", "AsyncResourcePool"]


class AsyncBasePool(PoolCommon[C]):
    """Everything the asyncio pools share; see :class:`fastpool.AsyncPool` for the options.

    ``start=False`` keeps the pool closed until :meth:`open` is called (the
    psycopg_pool surface's ``open=False``).  Creating an asyncio pool does no
    I/O and needs no running loop: it starts on the loop of its first use, or
    at :meth:`open`.  ``keep_idle=False`` keeps no idle connection: one that
    nobody waits for is closed (the null pools).
    """

    _runner_cls = AsyncRunner
    _queue_cls = AsyncWaiting
    _wake = staticmethod(wake_async)
    _checkout_cls = AsyncPooledConnection
    _fast_path = "AsyncFastPath"
    _lock_kind = "NoLock"

    def __init__(
        self, make_driver: Callable[[float], Driver], config: PoolConfig | None = None, **options: Any
    ) -> None:
        if config is None:
            config = config_of(type(self).__name__, options)
        elif options:
            raise TypeError(f"{type(self).__name__}: options are given in config, not also as keywords")
        super().__init__(make_driver, config)
        self._connector = AsyncConnector(self)
        self._returner = AsyncReturner(self)
        # the return path the borrow path calls (PoolHost), without a frame of the pool's own
        self._release_block = self._returner.release_block
        self._release = self._returner.release
        if False:  # ASYNC
            if config.start:
                self._start()
                if config.open:
                    self._open_eager(None)

    def _build_core(self, config: PoolConfig) -> None:
        super()._build_core(config)
        if False:  # ASYNC
            self._get = self._fast.get  # type: ignore[method-assign]  # compiled: no Python frame per acquire

    # -- life cycle ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the background work (once): the runner, the reaper, the ``min_size`` top-up."""
        self._opened = True
        self._closed = False
        self._runner.start(self)
        self._queue.bind(self._runner, self._core, self._lock)
        if True:  # ASYNC
            self._fast.loop = self._runner.loop
        if self._reap_interval is not None:
            self._runner.later(self._reap_interval, reap_tick, self._ref)
        with self._lock:
            n = self._core.plan_connects()
        self._start_connects(n)

    def _ensure_started(self) -> None:
        """Start the pool unless it runs; a closed pool cannot start again (``PoolClosed``)."""
        if self._pid != os.getpid():  # forked, and the fork hook did not run
            self._forget_after_fork()
        if self._forked:  # the first use in a forked child: a pool of its own, from scratch
            self._forked = False
            self._start()
            return
        if self._runner.check_here(self._name) or self._opened:
            if self._closed:
                raise PoolClosed(f"{self._name} was closed and cannot be opened again")
            return
        self._auto_start = True
        self._start()

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the pool if it is not started (idempotent); with ``wait``, open connections now.

        ``wait`` opens ``max(1, min_size)`` connections within ``timeout``
        (default ``acquire_timeout``) and raises ``PoolTimeout`` (with the
        host, port and cause) or the connect error, closing the pool, if it
        cannot.  A closed pool cannot be opened again (``PoolClosed``).
        """
        self._ensure_started()
        if wait:
            await self._open_eager(timeout)

    async def _open_eager(self, timeout: float | None) -> None:
        """Open ``max(1, min_size)`` connections within ``timeout`` (``acquire_timeout``) or fail."""
        want = max(1, self._core.min_size)
        held: list[Any] = []
        deadline = monotonic() + (self._acquire_timeout if timeout is None else timeout)
        self._eager_waiting = True
        try:
            for _ in range(want):
                held.append(await self._get(max(0.0, deadline - monotonic())))
        except BaseException as exc:
            self._eager_waiting = False
            for e in held:
                self._fast.release(e, monotonic())
            await self.close(0)
            if isinstance(exc, PoolTimeout):
                raise eager_open_error(self, exc, want) from self._driver.safe_error(exc.__cause__)
            raise
        self._eager_waiting = False
        for e in held:
            self._fast.release(e, monotonic())
        with self._lock:
            core = self._core
            if core.n_hits + core.n_waits == len(held):  # nobody else borrowed meanwhile
                core.forget_borrows()  # a pool that was never used reports no request
                self._counters["wait_ms"] = 0

    async def wait(self, timeout: float = 30.0) -> None:
        """Wait until ``min_size`` connections are open.

        Raises ``PoolTimeout`` (and closes the pool) if that takes longer than
        ``timeout`` seconds; ``PoolClosed`` if the pool is not open.
        """
        if True:  # ASYNC
            self._ensure_started()
        if self._closed:
            raise self._closed_error()
        deadline = monotonic() + timeout
        core = self._core
        while core.size - core.connecting < core.min_size:
            if monotonic() >= deadline:
                await self.close()
                cause = self._driver.safe_error(self._breaker.last_error)
                raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from cause
            await sleep_async(0.005)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool; idempotent.

        Waiters get ``PoolClosed`` at once, idle connections are closed,
        later acquires raise ``PoolClosed``.  Waits up to ``timeout`` seconds
        for borrowed connections to come back; any returned later is closed.
        """
        if not self._close_begin():
            return
        surfaces = list(self._closers)
        for s in surfaces:  # owners lose their pinned connections
            await s._pool_closing()
        self._close_doomed()
        deadline = monotonic() + max(0.0, timeout)
        while self._close_waits and self._core.in_use and monotonic() < deadline:
            await sleep_async(0.005)
        for s in surfaces:  # leaders still holding on after the timeout lose their sessions
            await s._pool_closed()
        if self._core.in_use and self._close_waits:
            self._log.warning(
                "%s closed with %d connection(s) still in use; they will be closed when returned",
                self._name,
                self._core.in_use,
            )
        await self._runner.stop(max(0.0, min(1.0, deadline - monotonic())))
        self._close_doomed()

    async def __aenter__(self) -> Self:
        if True:  # ASYNC
            await self.open(wait=self._eager)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- borrowing -------------------------------------------------------------------------

    @borrow_path
    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[C]:
        """Borrow a connection for an ``async with`` block.

        ``async with pool.connection() as conn:`` hands out a connection and
        returns it at the end of the block; a transaction left open is
        committed if the block succeeded and rolled back if it raised
        (psycopg_pool's behaviour).  ``timeout`` (default
        ``acquire_timeout``) bounds every phase: queueing, connecting and
        checking.

        Raises ``PoolTimeout``, ``PoolClosed`` or ``TooManyRequests``, or the
        error of a connect that failed for a reason not worth retrying.
        """
        return self._fast.connection(timeout)  # type: ignore[no-any-return]

    def acquire(self, timeout: float | None = None) -> AwaitableContext[AsyncPooledConnection[C]]:
        """Check out a connection; give it back with ``release()`` or an ``async with`` block.

        ``await pool.acquire()`` gives a pooled connection
        (:class:`AsyncPooledConnection`); ``async with pool.acquire() as conn``
        gives the connection itself and releases it at the end.  Unlike
        :meth:`connection`, nothing is committed: an open transaction is
        rolled back when the connection comes back.  Same errors as
        :meth:`connection`.
        """
        return AwaitableContext(self._acquire, timeout)

    async def _acquire(self, timeout: float | None) -> AsyncPooledConnection[C]:
        return AsyncPooledConnection(self, await self._get(timeout))

    @borrow_path
    async def getconn(self, timeout: float | None = None) -> C:
        """Check out a connection to give back with :meth:`putconn`."""
        return await self._fast.getconn(timeout)  # type: ignore[no-any-return]  # (bound over: compiled)

    @borrow_path
    async def putconn(self, conn: C) -> None:
        """Give back a connection obtained from :meth:`getconn`.

        Raises ``WrongPoolError`` if ``conn`` was not lent by this pool's
        ``getconn`` or was already given back.
        """
        await self._fast.putconn(conn)  # (bound over at construction: the compiled return path)

    async def _not_lent(self, conn: Any) -> None:
        raise WrongPoolError(f"this connection was not lent by {self._name} (or was already returned)")

    async def check(self) -> None:
        """Check every idle connection now (the driver's health check); close and replace broken ones."""
        taken = self._take_idle()
        try:
            while taken:
                e = taken.pop()
                try:
                    await self._driver.check(e.conn)
                except Exception as exc:
                    self._count("health_check_failures")
                    self._reject(e, "check() found a broken connection", exc, logging.WARNING)
                except BaseException:  # interrupted mid-check: the connection's state is unknown
                    self._discard(e)
                    raise
                else:
                    self._fast.release(e, monotonic())
        finally:
            for e in taken:  # interrupted: the ones not checked yet go back as they were
                self._fast.release(e, monotonic())
        if self._doomed:
            self._close_doomed()

    # -- the interface of the surfaces (see fastpool._pool.interface) -------------------------

    def _phase(self, conn: Any, deadline: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)``, which does I/O on ``conn``, by ``deadline`` (``_acompat.phase_async``)."""
        return phase_async(self._runner, self._driver.interrupt, conn, deadline, fn, *args)

    async def _open_dedicated(self) -> Any:
        """Open a connection outside ``max_size`` (``after_connect`` runs on it)."""
        if True:  # ASYNC
            self._ensure_started()
        conn = await self._driver.connect()
        self._conns[id(conn)] = conn
        try:
            if self._after_connect is not None:
                await maybe_await(self._after_connect(conn, META_NEW))
        except BaseException:
            self._close_later([conn])
            raise
        with self._lock:
            self._dedicated += 1
        return conn

    def _close_dedicated(self, conn: Any) -> None:
        """Close a connection from :meth:`_open_dedicated` (in the background)."""
        with self._lock:
            self._dedicated -= 1
        self._close_later([conn])

    def _close_later(self, conns: list[Any]) -> None:
        """Close ``conns``: in a task on asyncio; right here in threads (a close does not wait)."""
        if self._terminated:  # terminate(): aborted, nothing left to run
            for conn in conns:
                self._driver.abort(conn)
            return
        if True:  # ASYNC
            self._runner.spawn(self._close_conns, conns, keep=True)
        else:
            self._close_conns(conns)

    async def _close_conns(self, conns: list[Any]) -> None:
        for conn in conns:
            self._conns.pop(id(conn), None)
            try:
                await self._driver.close(conn)
            except Exception as exc:
                self._log.debug(
                    "%s: error closing a connection: %s", self._name, self._driver.redact(str(exc))
                )

    async def _discard_now(self, e: Any) -> None:
        """Drop an in-use entry and close its connection before returning."""
        with self._lock:
            n = self._core.discard(e)
        await self._close_conns([e.conn])
        if n:
            self._start_connects(n)

    # -- acquire: what the borrow path calls back (PoolHost) ------------------------------------

    async def _get(self, timeout: float | None) -> Any:
        """Return an in-use core entry (the threaded pool uses the borrow path's ``get`` directly)."""
        if not self._runner.started_here():
            if not self._auto_start and not self._opened:
                raise self._closed_error()
            self._ensure_started()  # first use starts the pool; another loop is an error
        r = self._fast.get(timeout)
        if True:  # ASYNC  (an entry, or the slow path's coroutine)
            return r if type(r) is self._entry_cls else await r
        else:
            return r

    async def _admit_or_slow(self, e: Any, now: float, timeout: float | None) -> Any:
        """The borrow path popped ``e`` but a gate must run: admit it, or take the slow path."""
        if await self._admit(e, now, timeout):
            if self._leaks is not None:
                self._leaks.note_lent(e)
            if self._on_wait is not None:
                self._on_wait(monotonic() - now)
            return e
        return await self._get_slow(now, timeout)

    async def _get_slow(self, start: float, timeout: float | None) -> Any:
        """Queue for a connection, within one deadline (``start + timeout``) for every phase.

        One coroutine frame per waiter: taking a turn and its outcome are plain calls
        (``_enqueue``, ``_withdraw``, ``_turn_taken``).
        """
        if self._forked or self._pid != os.getpid():  # the first use in a forked child
            self._ensure_started()
        if timeout is None:
            timeout = self._acquire_timeout
        else:
            timeout = check_duration("timeout", timeout, allow_none=False, allow_zero=True)
        assert timeout is not None
        deadline = start + timeout
        entry_cls = self._entry_cls
        while True:
            if self._doomed:
                self._close_doomed()
            e = self._enqueue(deadline)  # an entry at once, or our turn in the queue
            if type(e) is not entry_cls:
                w, queued_at, until = e
                try:
                    await self._queue.wait(w, until)
                except BaseException:  # cancelled or interrupted while queued
                    self._withdraw(w)
                    raise
                e = self._turn_taken(w, queued_at, until, deadline, timeout)
            now = monotonic()
            # a new connection needs no check, but the I/O-free probe still runs: its backend may
            # have been terminated between the connect and this hand-off
            fresh = e.fresh and not self._driver.idle_dead(e)
            if fresh or self._fast.ready(e) or await self._admit(e, now, deadline - now):
                e.fresh = False
                if self._leaks is not None:
                    self._leaks.note_lent(e)
                if self._on_wait is not None:
                    self._on_wait(monotonic() - start)
                return e
            if monotonic() >= deadline:
                self._count("timeouts")
                raise PoolTimeout(
                    f"couldn't get a connection after {timeout:.3g} s: timed out checking connections"
                ) from self._driver.safe_error(self._breaker.last_error)

    async def _admit(self, e: Any, now: float, timeout: float | None) -> bool:
        """Run the acquire-time gates on an entry popped from idle, within ``timeout`` (from ``now``).

        False: the entry was discarded (or, with no time left, put back untouched).
        """
        deadline = now + (self._acquire_timeout if timeout is None else timeout)
        if monotonic() >= deadline:  # no time left for any check: put it back as it was
            self._fast.release(e, monotonic())
            return False
        need = self._check_always or (self._config.test_before_acquire and e.check_due)
        if not need and self._has_needs_check:
            try:
                need = self._driver.needs_check(e, now)
            except Exception as exc:
                self._reject(e, "needs_health_check raised", exc, logging.WARNING)
                return False
        try:
            if need and not await self._health_check(e, deadline):
                return False
            hook = self._before_acquire
            if hook is not None:
                try:
                    meta = ConnectionMetadata(now - e.created_at, now - e.last_used)
                    ok = await self._phase(e.conn, deadline, hook, e.conn, meta)
                except Exception as exc:
                    self._reject(e, "before_acquire raised", exc, logging.WARNING)
                    return False
                if not ok:
                    self._count("before_acquire_rejections")
                    self._discard(e)
                    return False
        except BaseException:  # interrupted mid-check: the connection's state is unknown
            self._discard(e)
            raise
        return True

    async def _health_check(self, e: Any, deadline: float) -> bool:
        """The driver's check (a round trip) by ``deadline``; False: it failed and ``e`` is closed."""
        try:
            await self._phase(e.conn, deadline, self._driver.check, e.conn)
        except Exception as exc:
            with self._lock:
                self._counters["health_checks"] += 1
                self._counters["health_check_failures"] += 1
            self._breaker.note_error(exc, monotonic())
            self._reject(e, "health check failed", exc)
            return False
        e.flagged = False
        self._count("health_checks")
        return True


class AsyncResourcePool(AsyncBasePool[C]):
    """A pool of any :class:`fastpool.AsyncResource` (``create``, ``health_check``, ``close``).

    ``AsyncResourcePool(MyResource, ctx, max_size=4)``: the pool calls
    ``MyResource.create(ctx)`` from its background work, asks
    ``needs_health_check(ctx, meta)`` (when the class defines it) before each
    hand-out from idle, runs ``health_check(ctx)`` when that says so or when
    ``test_before_acquire`` and ``verify_after`` call for it, and ``close()``
    when a resource is dropped.  Options as :class:`fastpool.AsyncPool`.
    """

    def __init__(self, resource_cls: Any, ctx: Any = None, **options: Unpack[PoolSettings]) -> None:
        super().__init__(lambda _timeout: AsyncResourceDriver(resource_cls, ctx), **options)


for _cls in (AsyncBasePool, AsyncResourcePool):
    _cls.__module__ = "fastpool"
