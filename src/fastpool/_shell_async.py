"""The pool shell of the asyncio pools: waiting, connecting, hooks, returns, close.

The shell drives the core (the bookkeeping: idle queue, size cap, FIFO
waiters with hand-off, expiry and health-check gates) and does everything
the core must not: it waits (a future per waiter on asyncio, a held lock per
waiter in threads), runs the hooks and the driver's I/O, and owns the
background work (tasks on the pool's loop, or worker threads) that opens
connections with backoff, reaps expired idle ones, keeps ``min_size`` and
closes what is dropped.  Every core call is made under ``self._lock``: a real
lock in the threaded pools, a no-op on asyncio, where the loop runs one call
at a time.  The per-borrow path (``connection()``, and most acquires) runs in
the core's compiled fast path, which calls back into the shell only when a
gate, a wait or a reset is needed.

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
  because the slot is given back before anything on the release path waits.

Internal interface for the surfaces (``leadership``, ``ownership``,
``sandbox``, the psycopg_pool surface), and nothing else of the shell:
``_get`` (borrow a raw core entry), ``_release`` (give it back through the
reset), ``_discard`` (close it instead), ``_orphaned`` (the same from a
finalizer), ``_open_dedicated``/``_close_dedicated`` (a connection outside
``max_size``), ``_later``/``_soon`` (background work), ``_on_close`` (a
surface to stop when the pool closes) and ``_acquire_timeout``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import linecache
import logging
import os
import random
import sys
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from math import inf as INF
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal

from . import _core_select
from ._acompat import TIMEOUT_MAX, AsyncRunner, maybe_await, sleep_async, wake_async
from ._aio import AwaitableContext
from ._meta import META_NEW, ConnectionMetadata
from ._types import C, Hook, PoolSettings, PoolStats
from ._validate import (
    check_bool,
    check_count,
    check_duration,
    check_options,
    check_seconds,
    check_sizes,
    session_needed,
)
from .errors import PoolClosed, PoolTimeout, TooManyRequests, WrongPoolError
from .resource import AsyncResourceDriver, Driver

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncBasePool", "AsyncPooledConnection", "AsyncResourcePool"]

logger = logging.getLogger("fastpool")

BACKOFF_INITIAL = 0.01
BACKOFF_MAX = 1.0
_names = itertools.count(1)
_running_loop = asyncio.get_running_loop
_Future = asyncio.Future
_TIMEOUT_MAX = TIMEOUT_MAX  # used by the threaded wait
_leak_log = logging.getLogger("fastpool")  # leak reports, whichever logger the pool's other messages use
_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # fastpool's frames, left out of leak stacks


class AsyncBasePool(Generic[C]):
    """Everything the asyncio pools share; see :class:`fastpool.AsyncPool` for the options.

    ``start=False`` keeps the pool closed until :meth:`open` is called (the
    psycopg_pool surface's ``open=False``); otherwise the pool starts at
    once (threads) or on the loop of its first use (asyncio).  ``keep_idle=False``
    keeps no idle connection: one that nobody waits for is closed (the null pools).
    """

    #: where the pool logs (the psycopg_pool surface logs where psycopg_pool did)
    _log: ClassVar[logging.Logger] = logger
    #: ``close()`` waits for borrowed connections (psycopg_pool's does not)
    _close_waits: ClassVar[bool] = True
    #: a psycopg connection's ``_pool`` is the pool itself while lent, as psycopg_pool's is
    #: (the driver otherwise: it has what psycopg calls there, and holds the pool weakly)
    _lend_as_pool: ClassVar[bool] = False

    def __init__(
        self,
        make_driver: Callable[[float], Driver],
        *,
        open: bool = True,
        start: bool = True,
        min_size: int = 0,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        max_lifetime: float | None = 1800.0,
        idle_timeout: float | None = 600.0,
        test_before_acquire: bool = True,
        verify_after: float = 1.0,
        after_connect: Hook | None = None,
        before_acquire: Hook | None = None,
        after_release: Hook | None = None,
        queue_mode: Literal["lifo", "fifo"] = "lifo",
        max_waiting: int = 0,
        num_workers: int = 3,
        release_timeout: float = 5.0,
        fail_fast_after: float | None = 10.0,
        name: str | None = None,
        reconnect_timeout: float | None = None,
        reconnect_failed: Callable[[Any], Any] | None = None,
        keep_idle: bool = True,
        max_uses: int = 0,
        leak_timeout: float | None = None,
        queue_target: float | None = None,
        queue_interval: float = 1.0,
    ) -> None:
        self._closed = True  # until started: __del__/close stay harmless
        self._opened = False
        self._acquire_timeout = check_options(
            min_size=min_size,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            max_lifetime=max_lifetime,
            idle_timeout=idle_timeout,
            verify_after=verify_after,
            after_connect=after_connect,
            before_acquire=before_acquire,
            after_release=after_release,
            queue_mode=queue_mode,
            max_waiting=max_waiting,
            test_before_acquire=test_before_acquire,
            release_timeout=release_timeout,
            fail_fast_after=fail_fast_after,
        )
        check_count("num_workers", num_workers, 1, 1000)
        check_count("max_uses", max_uses, 0)
        self._leak_timeout = check_duration("leak_timeout", leak_timeout, allow_none=True)
        self._queue_target = check_duration("queue_target", queue_target, allow_none=True)
        self._queue_interval = check_seconds("queue_interval", queue_interval)
        check_bool("open", open)
        self._release_timeout = check_seconds("release_timeout", release_timeout)
        self._name = str(name) if name is not None else f"pool-{next(_names)}"
        self._driver = driver = make_driver(self._acquire_timeout)
        self._ref = weakref.ref(self)
        driver.pool = self._ref
        driver.log = self._log
        self._test_before_acquire = test_before_acquire
        self._after_connect = after_connect
        self._before_acquire = before_acquire
        self._after_release = after_release
        self._reconnect_timeout = reconnect_timeout
        self._reconnect_failed = reconnect_failed
        self._eager = bool(open)
        self._auto_start = bool(start)
        core_mod = _core_select.core
        self._core_mod = core_mod
        self._waiter_cls = core_mod.Waiter
        self._entry_cls = core_mod.Entry
        self._in_use_state = core_mod.ENTRY_IN_USE
        self._core_args = (max_lifetime, idle_timeout, verify_after, queue_mode == "lifo", max_waiting)
        self._keep_idle = keep_idle
        self._max_uses = max_uses
        self._on_wait: Callable[[float], Any] | None = None  # metrics observers (fastpool.metrics)
        self._on_use: Callable[[float], Any] | None = None
        self._on_connect: Callable[[float], Any] | None = None
        self._lent_stacks: dict[int, list[Any]] = {}  # id(entry) -> [entry, lent_at, stack, warned]
        self._codel_next = 0.0  # the end of the current queue_interval
        self._codel_min = INF  # the least wait seen in it
        self._codel_hits = 0  # the core's hits when it began (a hit waited 0 s)
        self._codel_slow = False  # the last interval's least wait was above queue_target
        self._has_reset = driver.has_reset
        self._has_finish = driver.has_finish
        self._has_needs_check = driver.has_needs_check
        self._fast_probe = bool(getattr(driver, "fast_probe", False))  # needs_check is the socket probe
        # _admit must run for every hand-out from idle when a probe, a hook or
        # VERIFIED exists; otherwise only when the core's gate says a check is due
        self._check_always = driver.always_check
        self._num_workers = num_workers
        self._runner = AsyncRunner(self._name, num_workers)
        self._backoff = BACKOFF_INITIAL
        self._last_error: BaseException | None = None
        self._last_error_at = 0.0
        self._failing_since: float | None = None  # the first failed connect of the current streak
        self._reconnect_since = 0.0  # the start of the current reconnect_timeout round
        self._fail_fast_after = check_duration(
            "fail_fast_after", fail_fast_after, allow_none=True, allow_zero=True
        )
        self._demand_at = -1e9  # when an acquire was last refused by the breaker
        self._reconnect_planned = False
        self._counters = dict.fromkeys(
            (
                "timeouts",
                "health_checks",
                "health_check_failures",
                "before_acquire_rejections",
                "after_release_rejections",
                "returns_bad",
                "dead_idle_closed",
                "wait_ms",
                "connect_ms",
                "usage_ms",
                "leaks",
                "shed",
            ),
            0,
        )
        reap_every = [t for t in (idle_timeout, max_lifetime) if t is not None]
        self._reap_interval = max(0.5, min(reap_every) / 2) if reap_every else None
        if self._leak_timeout is not None:  # the reaper's tick also looks for leaks
            leak_every = max(0.01, min(1.0, self._leak_timeout / 4))
            self._reap_interval = min(self._reap_interval or leak_every, leak_every)
        self._dedicated = 0  # connections opened outside max_size (leadership)
        self._closers: weakref.WeakSet[Any] = weakref.WeakSet()  # surfaces to stop at close
        self._pid = os.getpid()
        self._forked = False  # set in a forked child until its first use starts the pool afresh
        self._conns: dict[int, Any] = {}  # every open connection, to forget after a fork
        self._build_core(max_size, min_size)
        _pools.add(self)
        if True:  # ASYNC
            pass  # an asyncio pool starts on the loop of its first use
        elif start:
            self._start()
            if open:
                self._open_eager(None)

    def _build_core(self, max_size: int, min_size: int) -> None:
        """(Re)build the lock, the core and the borrow path: at construction and in a forked child."""
        core_mod = self._core_mod
        self._lock = core_mod.NoLock()
        self._core = core_mod.PoolCore(
            max_size,
            min_size,
            *self._core_args,
            id(self) ^ int(monotonic() * 1e9),
            self._keep_idle,
            self._max_uses,
        )
        self._doomed = self._core.doomed
        get_mode, put_mode = self._fast_modes()
        self._fast = core_mod.AsyncFastPath(
            self._ref,
            self._core,
            self._lock,
            self._driver,
            get_mode,
            put_mode,
            self._test_before_acquire,
        )
        if self._lend_as_pool:
            self._fast.unlent = self._driver  # conn._pool: the pool while lent, the driver when back
        self._set_fast_hooks()
        self._bind_fast()
        if True:  # ASYNC
            self._deadlines: deque[tuple[float, Any]] = deque()  # queued waiters by deadline (FIFO)
            self._deadline_timer: asyncio.TimerHandle | None = None
            self._deadline_at = 0.0  # when the shared timer fires
            self._waiting_state = core_mod.WAITER_WAITING
        else:
            self._get = self._fast.get  # type: ignore[method-assign]  # compiled: no Python frame per acquire

    def _bind_fast(self) -> None:
        """Let ``connection()``, ``getconn()`` and ``putconn()`` be the compiled borrow path's
        (no Python frame per borrow), unless a surface defines its own."""
        fast = self._fast
        cls = type(self)
        if cls.connection is AsyncBasePool.connection:
            self.connection = fast.connection  # type: ignore[method-assign]
        if cls.getconn is AsyncBasePool.getconn:
            self.getconn = fast.getconn  # type: ignore[method-assign]
        if cls.putconn is AsyncBasePool.putconn:
            self.putconn = fast.putconn  # type: ignore[method-assign]

    def _fast_modes(self) -> tuple[int, int]:
        """Which gates the borrow path must run itself, from the options and the driver."""
        core_mod = self._core_mod
        driver = self._driver
        if self._check_always or self._before_acquire is not None:
            get_mode = core_mod.GET_ADMIT
        elif self._has_needs_check:
            get_mode = core_mod.GET_PROBE if self._fast_probe else core_mod.GET_ADMIT
        else:
            get_mode = core_mod.GET_PLAIN
        if self._after_release is not None or not self._keep_idle:
            put_mode = core_mod.PUT_SLOW
        elif self._has_finish or self._has_reset:
            put_mode = core_mod.PUT_PSYCOPG if getattr(driver, "fast_return", False) else core_mod.PUT_SLOW
        else:
            put_mode = core_mod.PUT_PLAIN
        return get_mode, put_mode

    # -- properties ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name (for logs and reprs)."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (and before the pool is opened)."""
        return self._closed

    @property
    def max_size(self) -> int:
        """The most connections the pool will hold at once."""
        return int(self._core.max_size)

    @property
    def min_size(self) -> int:
        """The number of connections the pool keeps open."""
        return int(self._core.min_size)

    def stats(self) -> PoolStats:
        """Return a snapshot of gauges, counters and histograms (a new dict each call).

        Gauges: ``size`` (idle + in use + connecting, never above
        ``max_size``), ``idle``, ``in_use``, ``connecting``, ``waiting``.
        Counters: ``hits`` (served from idle without waiting), ``waits``,
        ``handoffs``, ``connects``, ``connect_failures``, ``expired``,
        ``discarded``, ``returns``, ``timeouts``, ``leaks``, ``shed``... and
        ``requests`` (hits + waits).  Histograms (seconds, fixed buckets):
        ``wait_time``, ``use_time``, ``connect_time``.  See :class:`PoolStats`.
        """
        with self._lock:
            s: dict[str, Any] = self._core.stats()
            s.update(self._counters)
            hists = self._core.histograms()
        s["requests"] = s["hits"] + s["waits"]
        now = monotonic()
        s["breaker_open"] = self._breaker_open(now)
        s["failing_for"] = 0.0 if self._failing_since is None else now - self._failing_since
        s["dedicated"] = self._dedicated
        s["name"] = self._name
        s["closed"] = self._closed
        s["paused"] = self._core.paused
        bounds = self._core_mod.HIST_BOUNDS
        for key, (counts, total) in hists.items():
            s[f"{key}_time"] = {"bounds": bounds, "counts": counts, "sum": total, "count": sum(counts)}
        return s  # type: ignore[return-value]  # (built from the core's plain dict)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._core.size}"
        return f"<fastpool.{type(self).__qualname__} {self._name!r} {state} at 0x{id(self):x}>"

    # -- life cycle ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the background work (once): the runner, the reaper, the ``min_size`` top-up."""
        self._opened = True
        self._closed = False
        self._runner.start(self)
        if self._reap_interval is not None:
            self._runner.later(self._reap_interval, _reap, self._ref)
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
            if True:  # ASYNC
                self._fast.loop = _running_loop()
            return
        if True:  # ASYNC
            loop = _running_loop()
            started = self._runner.loop is not None
            if started and loop is not self._runner.loop:
                raise RuntimeError(
                    f"{self._name} is bound to another event loop: an asyncio pool is used from "
                    "the loop it was first used in; create one pool per loop"
                )
        else:
            started = self._opened
        if started or self._opened:
            if self._closed:
                raise PoolClosed(f"{self._name} was closed and cannot be opened again")
            return
        self._auto_start = True
        self._start()
        if True:  # ASYNC
            self._fast.loop = loop

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
        try:
            for _ in range(want):
                held.append(await self._get(max(0.0, deadline - monotonic())))
        except BaseException as exc:
            for e in held:
                self._fast.release(e, monotonic())
            await self.close(0)
            if isinstance(exc, PoolTimeout):
                raise self._eager_open_error(exc, want) from self._driver.safe_error(exc.__cause__)
            raise
        for e in held:
            self._fast.release(e, monotonic())

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
                cause = self._driver.safe_error(self._last_error)
                raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from cause
            await sleep_async(0.005)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool; idempotent.

        Waiters get ``PoolClosed`` at once, idle connections are closed,
        later acquires raise ``PoolClosed``.  Waits up to ``timeout`` seconds
        for borrowed connections to come back; any returned later is closed.
        """
        with self._lock:
            if self._closed:
                self._opened = True  # a pool closed before it was opened stays closed
                return
            self._closed = True
            waiters = self._core.close()
            for w in waiters:
                w.error = PoolClosed(f"{self._name} was closed while waiting for a connection")
        self._fast.put_mode = self._core_mod.PUT_SLOW  # a return now closes its connection at once
        for w in waiters:
            wake_async(w)
        if True:  # ASYNC
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
                self._deadline_timer = None
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

    def _forget_after_fork(self) -> None:
        """In a forked child: forget the parent's connections and start afresh at the first use.

        Nothing is sent on an inherited connection and nothing is closed on the server:
        each socket is replaced, in this process only, by ``/dev/null``, so that the parent
        keeps its sessions.  The lock, the core, the borrow path and the background work
        are made anew (the parent's threads and loop do not exist here).
        """
        self._pid = os.getpid()
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            try:
                self._driver.forget(conn)
            except Exception:  # pragma: no cover - best effort
                pass
        core = self._core
        self._dedicated = 0
        self._backoff = BACKOFF_INITIAL
        self._failing_since = None
        self._reconnect_planned = False
        self._runner = AsyncRunner(self._name, self._num_workers)
        self._build_core(core.max_size, core.min_size)
        for surface in list(self._closers):
            surface._pool_forked()
        self._closers = weakref.WeakSet()
        if self._opened and not self._closed:
            self._forked = True

    # -- public API ----------------------------------------------------------------------

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
        gives the connection itself and
        releases it at the end.  Unlike :meth:`connection`, nothing is
        committed: an open transaction is rolled back when the connection
        comes back.  Same errors as :meth:`connection`.
        """
        return AwaitableContext(self._acquire, timeout)

    async def _acquire(self, timeout: float | None) -> AsyncPooledConnection[C]:
        return AsyncPooledConnection(self, await self._get(timeout))

    def try_acquire(self) -> AsyncPooledConnection[C] | None:
        """Return an idle connection at once, or None; never waits nor connects.

        The expiry gate and the socket probe apply; no health-check round trip is made.
        """
        if self._closed:
            raise self._closed_error()
        now = monotonic()
        while True:
            with self._lock:
                e = self._core.acquire(now)
            if e is None or not self._driver.idle_dead(e):
                break
            self._discard(e)  # found dead by the probe (no I/O): closed; the next idle one is tried
        if self._doomed:
            self._close_doomed()
        if e is None:
            return None
        if self._leak_timeout is not None:
            self._note_lent(e)
        return AsyncPooledConnection(self, e)

    async def getconn(self, timeout: float | None = None) -> C:
        """Check out a connection to give back with :meth:`putconn`."""
        return await self._fast.getconn(timeout)  # type: ignore[no-any-return]  # (bound over: compiled)

    async def putconn(self, conn: C) -> None:
        """Give back a connection obtained from :meth:`getconn`.

        Raises ``WrongPoolError`` if ``conn`` was not lent by this pool's
        ``getconn`` or was already given back.
        """
        await self._fast.putconn(conn)  # (bound over at construction: the compiled return path)

    async def _not_lent(self, conn: Any) -> None:
        raise WrongPoolError(f"this connection was not lent by {self._name} (or was already returned)")

    def drain(self, spread: float = 0.0) -> None:
        """Replace every connection: close the idle ones now, the borrowed ones when they come back.

        New connections replace them (``min_size`` is kept); use it to make every
        connection pick up a change of configuration.  With ``spread`` (seconds),
        each connection is retired at its own moment within that interval instead
        of all at once, so the server sees no burst of new connections.
        """
        spread = check_duration("spread", spread, allow_none=False, allow_zero=True) or 0.0
        with self._lock:
            self._core.drain(monotonic(), spread)
        self._close_doomed()
        if spread and not self._closed:  # retire the idle ones as their turns come (eight ticks)
            for k in range(1, 9):
                self._later(spread * k / 8 + 0.001, self._reap)

    def pause(self) -> None:
        """Hand out no connection until :meth:`resume`.

        Callers queue (and time out as usual); borrowed connections can still
        come back.  For maintenance windows and credential switches.
        """
        with self._lock:
            self._core.pause()

    def resume(self) -> None:
        """Serve the queued callers again, in order (see :meth:`pause`)."""
        with self._lock:
            served = self._core.resume(monotonic())
            n = self._core.plan_connects()
        for w in served:
            wake_async(w)
        if n:
            self._start_connects(n)
        self._close_doomed()

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return bool(self._core.paused)

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change ``min_size`` and ``max_size`` (``max_size`` defaults to ``min_size``).

        Shrinking closes idle connections beyond the new maximum at once and
        borrowed ones as they come back; growing opens connections up to the
        new ``min_size``.
        """
        if max_size is None:
            max_size = min_size
        check_sizes("min_size", min_size, "max_size", max_size)
        with self._lock:
            self._core.resize(max_size, min_size)
        self._close_doomed()

    async def check(self) -> None:
        """Check every idle connection now (the driver's health check); close and replace broken ones."""
        taken = self._take_idle()
        try:
            while taken:
                e = taken.pop()
                try:
                    await self._driver.check(e.conn)
                except Exception as exc:
                    with self._lock:
                        self._counters["health_check_failures"] += 1
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

    # -- the internal interface of the surfaces --------------------------------------------

    def _on_close(self, surface: Any) -> None:
        """Stop ``surface`` when the pool closes (held weakly).

        ``surface._pool_closing()`` is awaited before the pool waits for its
        borrowed connections, ``surface._pool_closed()`` after that wait.
        """
        self._closers.add(surface)

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the background after ``delay`` seconds (dropped once closed)."""
        self._runner.later(delay, fn, *args)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the background soon; safe from any thread and from finalizers."""
        self._runner.soon(fn, *args)

    def _require_sessions(self, what: str, why: str) -> None:
        """Refuse ``what``, which needs the same server session across transactions, under
        ``transaction_pooling``; ``ValueError`` says why."""
        if self._driver.transaction_pooling:
            raise ValueError(session_needed(what, why, self._name))

    async def _phase(self, conn: Any, deadline: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)``, which does I/O on ``conn``, and return its result, by ``deadline``.

        Past the deadline the connection's socket is shut down (``driver.interrupt``): the
        I/O fails at once, nothing more is sent on a path that may be dead, and the caller
        closes the connection.  On asyncio ``fn`` runs in a task of its own, so that
        cancelling the caller does not make psycopg send a cancel request and wait for its
        answer: the socket is shut instead and the cancellation completes at once.
        ``fn`` may be a plain or a coroutine function.
        """
        alarm = self._runner.alarm(deadline - monotonic(), self._driver.interrupt, conn)
        try:
            if True:  # ASYNC
                loop = self._runner.loop
                assert loop is not None
                task = loop.create_task(maybe_await(fn(*args)))
                try:
                    return await asyncio.shield(task)
                except asyncio.CancelledError:
                    if not task.done():
                        if not self._driver.interrupt(conn):  # the phase ends at once ...
                            task.cancel()  # (a resource that cannot be interrupted: cancel it)
                        await asyncio.wait([task])  # ... and lets go of the connection
                    raise
            else:
                return fn(*args)
        finally:
            alarm.cancel()

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

    # -- acquire -------------------------------------------------------------------------

    async def _get(self, timeout: float | None) -> Any:
        """Return an in-use core entry (the threaded pool uses the fast path's ``get`` directly)."""
        if True:  # ASYNC
            if self._runner.loop is not _running_loop():
                if not self._auto_start and not self._opened:
                    raise self._closed_error()
                self._ensure_started()  # first use starts the pool; another loop is an error
            r = self._fast.get(timeout)  # an entry, or the slow path's coroutine
            return r if type(r) is self._entry_cls else await r
        else:
            return self._fast.get(timeout)

    async def _admit_or_slow(self, e: Any, now: float, timeout: float | None) -> Any:
        """The fast path popped ``e`` but a gate must run: admit it, or take the slow path."""
        if await self._admit(e, now, timeout):
            if self._leak_timeout is not None:
                self._note_lent(e)
            if self._on_wait is not None:
                self._on_wait(monotonic() - now)
            return e
        return await self._get_slow(now, timeout)

    def _observe(self, kind: str, fn: Callable[[float], Any]) -> None:
        """Call ``fn(seconds)`` for every hand-out (``"wait"``), return (``"use"``) or new
        connection (``"connect"``), after the observers already there (fastpool.metrics)."""
        attr = f"_on_{kind}"
        prev = getattr(self, attr)
        if prev is None:
            setattr(self, attr, fn)
        else:

            def both(seconds: float) -> None:
                prev(seconds)
                fn(seconds)

            setattr(self, attr, both)
        self._set_fast_hooks()

    def _set_fast_hooks(self) -> None:
        """Hand the borrow path its observers (metrics) and, with leak_timeout, the leak tracker;
        again after a rebuild (in a forked child) or when an observer is added."""
        fast = self._fast
        fast.on_wait = self._on_wait
        fast.on_use = self._on_use
        if self._leak_timeout is not None:  # who took each connection, from the compiled path too
            fast.on_lend = partial(_note_lent, self._ref)

    async def _get_slow(self, start: float, timeout: float | None) -> Any:
        """Queue for a connection, within one deadline for every phase."""
        if self._forked or self._pid != os.getpid():  # the first use in a forked child
            self._ensure_started()
        if timeout is None:
            timeout = self._acquire_timeout
        else:
            timeout = check_duration("timeout", timeout, allow_none=False, allow_zero=True)
        assert timeout is not None
        deadline = start + timeout
        core = self._core
        lock = self._lock  # acquire/release, not `with`: no bound methods made per wait
        e: Any
        while True:
            if self._doomed:
                self._close_doomed()
            now = monotonic()
            n = 0
            w = None
            handle: Any
            if True:  # ASYNC  # noqa: SIM108
                handle = _Future(loop=self._runner.loop)  # a C call: no Python frame per waiter
            else:
                handle = self._runner.new_handle()
            refused = False
            lock.acquire()
            try:
                e = core.acquire(now)
                if e is None and not self._closed:
                    if self._failing_since is not None and self._breaker_open(now):
                        refused = True
                    else:
                        w = self._waiter_cls(handle)
                        n = core.enqueue(w, now)
            finally:
                lock.release()
            if e is None:
                if refused:
                    self._demand_at = now
                    self._kick_reconnect()
                    with lock:
                        self._counters["timeouts"] += 1
                    raise self._breaker_error(now)
                if w is None:
                    raise self._closed_error()
                if n < 0:
                    raise TooManyRequests(
                        f"{self._name}: {core.max_waiting} requests are already waiting (max_waiting)"
                    )
                if n:
                    self._start_connects(n)
                wait_until = deadline
                if self._queue_target is not None and self._codel_shedding(now):
                    # overloaded: wait at most twice queue_target, then be shed (TooManyRequests)
                    wait_until = min(deadline, now + 2 * self._queue_target)
                # -- wait (in this coroutine: no frame of its own) for a hand-off, a failure or the deadline
                try:
                    if True:  # ASYNC
                        remaining = wait_until - now
                        if remaining > 0:
                            loop = self._runner.loop
                            assert loop is not None
                            dq = self._deadlines
                            timer = None
                            if dq and wait_until < dq[-1][0]:  # shorter than the queue's last: its own timer
                                timer = loop.call_later(remaining, wake_async, w)
                            else:  # FIFO with one timeout: deadlines come in order, one timer serves all
                                dq.append((wait_until, w))
                                if self._deadline_timer is None or wait_until < self._deadline_at:
                                    if self._deadline_timer is not None:
                                        self._deadline_timer.cancel()
                                    self._deadline_at = wait_until
                                    self._deadline_timer = loop.call_later(remaining, _expire, self._ref)
                            try:
                                await w.handle
                            finally:
                                if timer is not None:
                                    timer.cancel()
                                waiting = self._waiting_state
                                while dq and dq[0][1].state != waiting:
                                    dq.popleft()  # served or cancelled: FIFO service keeps them at the head
                    else:
                        remaining = wait_until - now
                        if remaining > 0:
                            w.handle.acquire(True, min(remaining, _TIMEOUT_MAX))
                except BaseException:  # cancelled or interrupted while queued
                    with self._lock:
                        e = core.cancel_wait(w)
                    if e is not None:  # served in the same instant: pass it on
                        self._fast.release(e, monotonic())
                    raise
                e = w.entry  # set by the core before it wakes the waiter it serves
                if e is None:  # not served: withdraw, unless an entry came in the meantime
                    shed = wait_until < deadline
                    with lock:
                        e = core.cancel_wait(w)
                        if e is None and w.error is None:
                            self._counters["shed" if shed else "timeouts"] += 1
                    if e is None:
                        if w.error is not None:
                            raise w.error
                        if shed:
                            raise TooManyRequests(
                                f"{self._name}: shed after {monotonic() - now:.3g} s: waits for a "
                                f"connection stayed above queue_target ({self._queue_target:g} s) "
                                "for a queue_interval"
                            )
                        raise self._timeout_error(timeout, now)
                waited = monotonic() - now
                lock.acquire()
                self._counters["wait_ms"] += int(waited * 1000)
                core.observe_wait(waited)
                lock.release()
                if self._queue_target is not None:
                    self._codel_observe(now, waited)
            now = monotonic()
            if e.fresh or self._fast.ready(e, now) or await self._admit(e, now, deadline - now):
                e.fresh = False
                if self._leak_timeout is not None:
                    self._note_lent(e)
                if self._on_wait is not None:
                    self._on_wait(monotonic() - start)
                return e
            if monotonic() >= deadline:
                with self._lock:
                    self._counters["timeouts"] += 1
                raise PoolTimeout(
                    f"couldn't get a connection after {timeout:.3g} s: timed out checking connections"
                ) from self._driver.safe_error(self._last_error)

    if True:  # ASYNC

        def _expire_waiters(self) -> None:
            """The shared deadline timer: wake every queued waiter whose deadline passed."""
            self._deadline_timer = None
            dq = self._deadlines
            now = monotonic()
            waiting = self._waiting_state
            while dq:
                deadline, w = dq[0]
                if w.state != waiting:
                    dq.popleft()
                elif deadline <= now:
                    dq.popleft()
                    wake_async(w)  # its _wait sees no entry and no error: a timeout
                else:
                    break
            loop = self._runner.loop
            if dq and loop is not None and not loop.is_closed():
                self._deadline_at = dq[0][0]
                self._deadline_timer = loop.call_later(max(0.0, dq[0][0] - now), _expire, self._ref)

    async def _admit(self, e: Any, now: float, timeout: float | None) -> bool:
        """Run the acquire-time gates on an entry popped from idle, within ``timeout`` (from ``now``).

        False: the entry was discarded (or, with no time left, put back untouched).
        """
        conn = e.conn
        deadline = now + (self._acquire_timeout if timeout is None else timeout)
        if monotonic() >= deadline:  # no time left for any check: put it back as it was
            self._fast.release(e, monotonic())
            return False
        need = self._check_always or (self._test_before_acquire and e.check_due)
        if not need and self._has_needs_check:
            try:
                need = self._driver.needs_check(e, now)
            except Exception as exc:
                self._reject(e, "needs_health_check raised", exc, logging.WARNING)
                return False
        try:
            if need:
                try:
                    await self._phase(conn, deadline, self._driver.check, conn)
                except Exception as exc:
                    with self._lock:
                        self._counters["health_checks"] += 1
                        self._counters["health_check_failures"] += 1
                    self._last_error, self._last_error_at = exc, monotonic()
                    self._reject(e, "health check failed", exc)
                    return False
                e.flagged = False
                with self._lock:
                    self._counters["health_checks"] += 1
            hook = self._before_acquire
            if hook is not None:
                try:
                    meta = ConnectionMetadata(now - e.created_at, now - e.last_used)
                    ok = await self._phase(conn, deadline, hook, conn, meta)
                except Exception as exc:
                    self._reject(e, "before_acquire raised", exc, logging.WARNING)
                    return False
                if not ok:
                    with self._lock:
                        self._counters["before_acquire_rejections"] += 1
                    self._discard(e)
                    return False
        except BaseException:  # interrupted mid-check: the connection's state is unknown
            self._discard(e)
            raise
        return True

    # -- leaks and load shedding -----------------------------------------------------------

    def _note_lent(self, e: Any) -> None:
        """Remember who took ``e`` (leak_timeout is set): the caller's stack, fastpool's frames left out."""
        stack = _caller_frames()
        old = self._lent_stacks.get(id(e))
        if old is not None and old[0] is e and old[1] != e.lent_at and old[3]:
            self._leak_back(old, monotonic())
        self._lent_stacks[id(e)] = [e, e.lent_at, stack, False]

    def _leak_back(self, rec: list[Any], now: float) -> None:
        e, lent_at = rec[0], rec[1]
        back = e.last_used if e.last_used >= lent_at else now
        _leak_log.warning(
            "%s: the connection reported as leaked was given back after %.3g s", self._name, back - lent_at
        )

    def _scan_leaks(self, now: float) -> None:
        """Warn once about each connection held past leak_timeout; say when a reported one came back."""
        limit = self._leak_timeout
        assert limit is not None
        in_use = self._in_use_state
        stacks = self._lent_stacks
        for key, rec in list(stacks.items()):
            e, lent_at, stack, warned = rec
            if e.state != in_use or e.lent_at != lent_at:  # back (or closed) since
                if stacks.get(key) is rec:
                    del stacks[key]
                if warned:
                    self._leak_back(rec, now)
            elif not warned and now - lent_at > limit:
                rec[3] = True
                _leak_log.warning(
                    "%s: a connection has been held for %.3g s (leak_timeout %g s); it was acquired at:\n%s",
                    self._name,
                    now - lent_at,
                    limit,
                    _format_frames(stack),
                )
                with self._lock:  # counted once the report is out (a test may wait for either)
                    self._counters["leaks"] += 1

    def _codel_roll(self, now: float) -> None:
        """At the end of each queue_interval: was every caller's wait in it above queue_target?"""
        if now < self._codel_next:
            return
        hits = self._core.n_hits
        stale = now >= self._codel_next + self._queue_interval  # a whole interval went by unseen
        target = self._queue_target
        assert target is not None
        self._codel_slow = (
            not stale and self._codel_min != INF and self._codel_min > target and hits == self._codel_hits
        )
        self._codel_min = INF
        self._codel_hits = hits
        self._codel_next = now + self._queue_interval

    def _codel_observe(self, start: float, waited: float) -> None:
        """Book a served caller's wait (started at ``start``) for the queue_target check."""
        self._codel_roll(start)
        self._codel_min = min(self._codel_min, waited)

    def _codel_shedding(self, now: float) -> bool:
        """Is the pool overloaded (the last interval's least wait above queue_target)?"""
        self._codel_roll(now)
        return self._codel_slow

    def _reject(self, e: Any, why: str, exc: BaseException, level: int = logging.INFO) -> None:
        """Close a connection that failed a check.

        A failed health check is logged at INFO: the caller gets another connection and
        sees nothing; a hook that raised is a bug worth a warning.
        """
        self._log.log(
            level, "%s: %s, closing the connection: %s", self._name, why, self._driver.redact(str(exc))
        )
        self._discard(e)

    def _take_idle(self) -> list[Any]:
        """Check out every idle connection (expired ones are closed on the way)."""
        now = monotonic()
        taken = []
        with self._lock:
            while (e := self._core.acquire(now)) is not None:
                taken.append(e)
        return taken

    # -- release -----------------------------------------------------------------------------

    async def _release_block(self, e: Any, ok: bool) -> None:
        """The end of a ``connection()`` block off the fast path: commit or roll back, then release.

        The commit or rollback is bounded by ``release_timeout``.
        """
        if e.owner is not self._core:  # borrowed before a fork, in the parent: forgotten here
            return
        if self._has_finish and self._driver.finish_action(e.conn, ok):
            try:
                deadline = monotonic() + self._release_timeout
                await self._phase(e.conn, deadline, self._driver.finish, e.conn, ok)
            except Exception as fexc:
                await self._release(e)
                if ok:
                    raise
                self._log.debug("%s: rollback after an error failed: %s", self._name, fexc)
                return
            except BaseException:  # interrupted mid-commit: unknown state
                self._discard(e)
                raise
        await self._release(e)

    async def _release(self, e: Any) -> None:
        """Give back a borrowed entry: reset, ``after_release``, then hand-off or idle.

        The reset and the hook are bounded by ``release_timeout``: past it the connection
        is closed.
        """
        if e.owner is not self._core:  # borrowed before a fork, in the parent: forgotten here
            return
        conn = e.conn
        if self._closed or not (self._keep_idle or self._core.waiting):
            await self._discard_now(e)  # nobody will use it: closed now, nothing reset
            return
        now = monotonic()
        deadline = now + self._release_timeout
        keep = now < e.expires_at  # past max_lifetime: closed without after_release
        try:
            if keep and self._has_reset:
                fast = self._driver.reset_now(e)  # no round trip at all when nothing is to be done
                keep = fast == 1 or (fast == 2 and await self._phase(conn, deadline, self._driver.reset, e))
            hook = self._after_release
            if keep and hook is not None:
                meta = ConnectionMetadata(now - e.created_at, 0.0)
                keep = bool(await self._phase(conn, deadline, hook, conn, meta))
                if not keep:
                    with self._lock:
                        self._counters["after_release_rejections"] += 1
        except Exception as exc:
            self._log.warning(
                "%s: resetting a returned connection failed, closing it: %s",
                self._name,
                self._driver.redact(str(exc)),
            )
            keep = False
        except BaseException:  # interrupted mid-reset: unknown state; the slot is freed now
            self._discard(e)
            raise
        if not keep:
            with self._lock:
                self._counters["returns_bad"] += 1
            self._discard(e)
            return
        self._fast.release(e, now)

    def _discard(self, e: Any) -> None:
        """Drop an in-use entry now and close its connection."""
        if e.owner is not self._core:  # borrowed before a fork, in the parent: forgotten here
            return
        with self._lock:
            n = self._core.discard(e)
        self._close_later([e.conn])
        if n:
            self._start_connects(n)

    async def _discard_now(self, e: Any) -> None:
        """Drop an in-use entry and close its connection before returning."""
        with self._lock:
            n = self._core.discard(e)
        await self._close_conns([e.conn])
        if n:
            self._start_connects(n)

    def _close_doomed(self) -> None:
        """Close what the core doomed (expired, drained, returned to a closed pool); top up."""
        with self._lock:
            doomed = self._core.take_doomed()
            n = self._core.plan_connects()
        if doomed:
            for e in doomed:
                if e.locks_held:
                    self._log.error("%s: closing a connection that still holds a lock", self._name)
            self._close_later([e.conn for e in doomed])
        if n:
            self._start_connects(n)

    def _close_later(self, conns: list[Any]) -> None:
        """Close ``conns``: in a task on asyncio; right here in threads (a close does not wait)."""
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

    def _orphaned(self, e: Any) -> None:
        """A borrowed entry's owner was garbage-collected: discard it in the background.

        Called from finalizers: no I/O, no lock here.
        """
        self._soon(self._discard_orphan, e)

    def _discard_orphan(self, e: Any) -> None:
        if e.state == self._in_use_state:  # still in use: nobody released it
            self._discard(e)

    # -- connects ----------------------------------------------------------------------------

    def _start_connects(self, n: int) -> None:
        if self._closed or not self._runner.running:
            with self._lock:
                for _ in range(n):
                    self._core.connect_failed()
            return
        for _ in range(n):
            self._runner.spawn(self._connect)

    async def _connect(self) -> None:
        """Open one connection for a reservation of the core, which is always settled once."""
        driver = self._driver
        settled = False
        w = None
        try:
            async with self._runner.slots:
                if self._closed:
                    return
                started = monotonic()
                try:
                    conn = await driver.connect()
                except Exception as exc:
                    settled = True
                    await self._connect_failed(exc, driver.retryable(exc))
                    return
                self._conns[id(conn)] = conn
                try:
                    hook = self._after_connect
                    if hook is not None:
                        await self._phase(conn, started + self._acquire_timeout, hook, conn, META_NEW)
                    data = driver.snapshot(conn)
                except Exception as exc:
                    settled = True
                    self._close_later([conn])
                    await self._connect_failed(exc, driver.hook_retryable(exc), hook=True)
                    return
                except BaseException:
                    self._close_later([conn])
                    raise
            settled = True
            w = self._note_connect_done(conn, data, started)
        finally:
            if not settled:  # interrupted, or the pool closed: give the reservation back
                with self._lock:
                    self._core.connect_failed()
        if w is not None:
            wake_async(w)
        if self._doomed:
            self._close_doomed()

    async def _connect_failed(self, exc: BaseException, retry: bool, hook: bool = False) -> None:
        failed, n, delay, gave_up = self._note_connect_failure(exc, retry, hook)
        if gave_up and self._reconnect_failed is not None:
            try:
                await maybe_await(self._reconnect_failed(self))
            except Exception:
                self._log.exception("%s: error in reconnect_failed", self._name)
        for w in failed:
            wake_async(w)
        if n:
            self._runner.later(delay, self._start_connects, n)
        elif self._closed:
            return
        elif monotonic() - self._demand_at < max(self._fail_fast_after or 0.0, BACKOFF_MAX * 2):
            self._kick_reconnect()  # callers were refused lately: keep trying, rate-limited

    def _note_connect_failure(
        self, exc: BaseException, retry: bool, hook: bool = False
    ) -> tuple[list[Any], int, float, bool]:
        """Book a failed connect: (waiters to wake, connects to retry, backoff delay, gave up).

        A failure not worth retrying (a database that does not exist, a bad password or
        option, a bug in ``after_connect``) fails every queued waiter at once; so does the
        breaker opening (``fail_fast_after``).  ``gave up`` is True once per streak of
        failures longer than ``reconnect_timeout``.
        """
        now = monotonic()
        gave_up = False
        failed: list[Any] = []
        with self._lock:
            self._last_error, self._last_error_at = exc, now
            if self._failing_since is None:
                self._failing_since = self._reconnect_since = now
            elif (
                self._reconnect_timeout is not None and now - self._reconnect_since > self._reconnect_timeout
            ):
                self._reconnect_since = now  # a new round starts; we keep trying with backoff
                gave_up = True
            if not retry or self._breaker_open(now):
                while (w := self._core.fail_waiter()) is not None:  # each its own error object
                    if retry:
                        w.error = self._breaker_error(now)
                    elif hook:  # the hook's own exception
                        w.error = copy.copy(exc) if failed else exc
                    else:
                        w.error = self._driver.connect_error(exc)
                    failed.append(w)
            n = self._core.connect_failed()
            delay = self._backoff * (0.5 + 0.5 * random.random())  # exponential backoff, jittered
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self._log.info(
            "%s: connecting to %s failed (%s): %s",
            self._name,
            self._driver.describe(),
            "will retry" if retry else "not retryable",
            self._driver.redact(str(exc).strip()),
        )
        if gave_up:
            self._log.warning(
                "%s: connecting to %s has failed for more than %s s",
                self._name,
                self._driver.describe(),
                self._reconnect_timeout,
            )
        return failed, n, delay, gave_up

    # -- the breaker (fail_fast_after) ---------------------------------------------------------

    def _breaker_open(self, now: float) -> bool:
        """True once every connect for ``fail_fast_after`` seconds has failed."""
        since = self._failing_since
        after = self._fail_fast_after
        return after is not None and since is not None and now - since >= after

    def _breaker_error(self, now: float) -> PoolTimeout:
        """The error of an acquire refused while the breaker is open (host, port and cause)."""
        since = self._failing_since if self._failing_since is not None else now
        cause = self._last_error
        detail = ""
        if cause is not None:
            text = str(cause).strip()
            detail = (
                f"; last error: {self._driver.redact(text.splitlines()[0] if text else type(cause).__name__)}"
            )
        err = PoolTimeout(
            f"{self._name}: no connection: connecting to {self._driver.describe()} has failed for "
            f"{now - since:.1f} s (fail_fast_after={self._fail_fast_after:g} s){detail}"
        )
        err.__cause__ = self._driver.safe_error(cause)
        return err

    def _kick_reconnect(self) -> None:
        """Try one connect soon (after the backoff), unless one is under way or planned."""
        if self._reconnect_planned or self._closed:
            return
        self._reconnect_planned = True
        delay = self._backoff * (0.5 + 0.5 * random.random())
        self._runner.later(delay, self._reconnect_once)

    def _reconnect_once(self) -> None:
        self._reconnect_planned = False
        with self._lock:
            n = self._core.add_connects(1)
        if n:
            self._start_connects(n)

    def _note_connect_done(self, conn: Any, data: Any, started: float) -> Any:
        """Book a new connection; return the waiter it was handed to, or None."""
        done = monotonic()
        with self._lock:
            w = self._core.connect_done(conn, done, data)
            self._backoff = BACKOFF_INITIAL
            self._failing_since = None  # the breaker closes
            self._counters["connect_ms"] += int((done - started) * 1000)
            self._core.observe_connect(done - started)
        if self._on_connect is not None:
            self._on_connect(done - started)
        return w

    def _reap(self) -> None:
        """Reaper tick: close expired idle connections and dead ones, then top up."""
        probe = self._driver.idle_dead
        with self._lock:
            core = self._core
            core.reap(monotonic())
            dead = [e for e in core.idle_entries() if probe(e)]
            if dead:
                core.evict(dead)
                self._counters["dead_idle_closed"] += len(dead)
        if dead:
            self._log.info("%s: closing %d idle connection(s) found dead", self._name, len(dead))
        self._close_doomed()
        if self._leak_timeout is not None:
            self._scan_leaks(monotonic())

    # -- errors --------------------------------------------------------------------------------

    def _closed_error(self) -> PoolClosed:
        if not self._opened:
            return PoolClosed(f"the pool {self._name!r} is not open yet")
        return PoolClosed(f"the pool {self._name!r} is already closed")

    def _timeout_error(self, timeout: float, started: float) -> PoolTimeout:
        core = self._core
        cause = self._last_error if self._last_error_at >= started - timeout else None
        if cause is not None or (core.connecting and core.in_use < core.max_size):
            phase = f"connecting to {self._driver.describe()}"
            if cause is not None:
                first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
                phase += f" (last error: {self._driver.redact(first)})"
        else:
            phase = f"waiting for a connection (max_size={core.max_size}, in use={core.in_use})"
        err = PoolTimeout(f"couldn't get a connection after {timeout:.3g} s: timed out {phase}")
        err.__cause__ = self._driver.safe_error(cause)
        return err

    def _eager_open_error(self, exc: PoolTimeout, want: int) -> PoolTimeout:
        """The error of an eager open that failed: target, and the cause or the timeout; no password."""
        cause = exc.__cause__
        if cause is not None:
            detail = self._driver.redact(str(cause).strip())
        else:
            detail = f"timed out after acquire_timeout={self._acquire_timeout:.3g} s"
        err = PoolTimeout(
            f"{self._name}: could not open {want} connection(s) to {self._driver.describe()}: {detail}"
        )
        err.__cause__ = self._driver.safe_error(cause)
        return err


_pools: weakref.WeakSet[AsyncBasePool[Any]] = weakref.WeakSet()  # every pool of this kind, for fork


def _note_lent(ref: weakref.ReferenceType[AsyncBasePool[Any]], e: Any) -> None:
    """The fast path's ``on_lend`` (the pool held weakly, as the fast path holds it)."""
    pool = ref()
    if pool is not None:
        pool._note_lent(e)


def _caller_frames(limit: int = 48) -> list[tuple[Any, int]]:
    """The calling code's frames as (code, line) pairs, innermost first, fastpool's own left out.

    Cheap on purpose (no source lines read, no objects per frame but a tuple): it runs at
    every hand-out while ``leak_timeout`` is set; :func:`_format_frames` does the rest, once.
    """
    out: list[tuple[Any, int]] = []
    f: Any = sys._getframe(1)
    while f is not None and len(out) < limit:
        code = f.f_code
        if not code.co_filename.startswith(_PKG_DIR):
            out.append((code, f.f_lineno))
        f = f.f_back
    return out


def _format_frames(frames: list[tuple[Any, int]]) -> str:
    """Frames from :func:`_caller_frames` as a traceback's lines, outermost first."""
    lines = []
    for code, lineno in reversed(frames):
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
        src = linecache.getline(code.co_filename, lineno).strip()
        if src:
            lines.append(f"    {src}")
    return "\n".join(lines)


def _after_fork_in_child() -> None:
    for pool in list(_pools):
        pool._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


if True:  # ASYNC

    def _expire(ref: weakref.ReferenceType[AsyncBasePool[Any]]) -> None:
        """The deadline timer's callback: holds the pool weakly (a pending timer keeps no pool alive)."""
        pool = ref()
        if pool is not None:
            pool._expire_waiters()


def _reap(ref: weakref.ReferenceType[AsyncBasePool[Any]]) -> None:
    """The reaper's tick, rescheduled while the pool lives and is open."""
    pool = ref()
    if pool is None or pool._closed:
        return
    try:
        pool._reap()
    finally:
        if pool._reap_interval is not None:
            pool._runner.later(pool._reap_interval, _reap, ref)


class AsyncPooledConnection(Generic[C]):
    """A checked-out connection: use ``.connection``, give it back with ``release()``.

    As an async context manager it gives the raw connection and releases it
    at the end.  One garbage-collected without release frees its slot: the
    pool closes the connection in the background and a ``ResourceWarning``
    is emitted (the finalizer does no I/O and takes no lock).
    """

    __slots__ = ("_entry", "_pool", "connection")

    def __init__(self, pool: AsyncBasePool[C], entry: Any) -> None:
        self._pool = pool
        self._entry = entry
        self.connection: C = entry.conn

    @property
    def meta(self) -> ConnectionMetadata:
        """Age of the connection (idle time is 0 while borrowed)."""
        e = self._entry
        if e is None:
            raise WrongPoolError("this connection was already released")
        return ConnectionMetadata(monotonic() - e.created_at, 0.0)

    def _take(self) -> Any:
        e = self._entry
        if e is None:
            raise WrongPoolError("this connection was already released")
        self._entry = None
        return e

    async def release(self) -> None:
        """Give the connection back to the pool (reset, then reuse)."""
        if True:  # ASYNC
            r = self._pool._fast.put(self._take())
            if r is not None:
                await r
        else:
            self._pool._fast.put(self._take())

    def close(self) -> None:
        """Close the connection instead of returning it; its slot is freed now."""
        self._pool._discard(self._take())

    def detach(self) -> C:
        """Take the connection out of the pool for good; the caller must close it."""
        e = self._take()
        pool = self._pool
        with pool._lock:
            n = pool._core.discard(e)
        if n:
            pool._start_connects(n)
        return self.connection

    async def __aenter__(self) -> C:
        return self.connection

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._entry is not None:
            await self.release()

    def __del__(self) -> None:
        e = getattr(self, "_entry", None)
        if e is not None:
            self._entry = None
            warnings.warn(
                f"a connection of {self._pool._name} was never released; closing it",
                ResourceWarning,
                stacklevel=1,
            )
            self._pool._orphaned(e)

    def __repr__(self) -> str:
        state = "released" if self._entry is None else "checked out"
        return f"<fastpool.{type(self).__name__} {state} from {self._pool._name!r}>"


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


for _cls in (AsyncBasePool, AsyncResourcePool, AsyncPooledConnection):
    _cls.__module__ = "fastpool"
