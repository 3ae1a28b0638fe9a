"""What both kinds of pool do the same way, written once: everything of a pool that needs no I/O.

:class:`PoolCommon` is the base of the asyncio pool base (``base_async``,
written by hand) and of the threaded one (``base``, generated from it).  It
holds the pool's state and the parts that never wait: the options, the core
and its borrow path, the counters and ``stats()``, the bookkeeping of
connects and their failures, the reaper's tick, closing what the core drops,
pausing, resizing, draining, the errors, and what a forked child forgets.
Its collaborators each do one job: :class:`~fastpool._pool.breaker.Breaker`
(backoff and ``fail_fast_after``), :class:`~fastpool._pool.leaks.LeakTracker`
(``leak_timeout``) and :class:`~fastpool._pool.shedding.Shedder`
(``queue_target``); the colour-specific ones (the runner of background
work, the waiting queue, the connector and the returner) are named by the
subclass's class attributes.

Every core call is made under ``self._lock``: a real lock in the threaded
pools, a no-op on asyncio, where the loop runs one call at a time.
"""

from __future__ import annotations

import itertools
import logging
import os
import weakref
from collections.abc import Callable
from math import inf as INF
from time import monotonic
from typing import Any, ClassVar, Generic, TypeVar

from .. import _core_build
from .._drivers.base import Driver
from .._settings import PoolConfig, check_duration, session_needed
from .._types import C, PoolStats
from ..errors import PoolClosed, PoolTimeout, TooManyRequests
from .breaker import Breaker
from .connect_book import ConnectBook
from .leaks import LeakTracker
from .messages import closed_error, timeout_error, wait_error
from .shedding import Shedder
from .stats import stats_of

__all__ = ["PoolCommon", "borrow_path", "reap_tick"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("fastpool")

_names = itertools.count(1)
_GAUGES = frozenset({"size", "idle", "in_use", "connecting", "waiting"})
_COUNTERS = (
    "timeouts",
    "health_checks",
    "health_check_failures",
    "before_acquire_rejections",
    "after_release_rejections",
    "returns_bad",
    "dead_idle_closed",
    "wait_ms",
    "connect_ms",
    "shed",
)


def borrow_path(fn: F) -> F:
    """Mark a pool method that the core's borrow path stands in for on each pool (bound over
    at construction, so that a borrow runs no Python frame); a surface that defines its own
    method of that name keeps it."""
    fn._borrow_path = True  # type: ignore[attr-defined]
    return fn


class PoolCommon(ConnectBook, Generic[C]):
    """The I/O-free part of every pool (see the module docstring); not used on its own."""

    #: where the pool logs (the psycopg_pool surface logs where psycopg_pool did)
    _log: ClassVar[logging.Logger] = logger
    #: how loud a rollback at return is (see ``Driver.rollback_level``)
    _rollback_level: ClassVar[int] = logging.INFO
    #: ``close()`` waits for borrowed connections (psycopg_pool's does not)
    _close_waits: ClassVar[bool] = True
    #: a psycopg connection's ``_pool`` is the pool itself while lent, as psycopg_pool's is
    #: (the driver otherwise: it has what psycopg calls there, and holds the pool weakly)
    _lend_as_pool: ClassVar[bool] = False
    # -- set by each kind of pool: the names of its colour's parts --------------------------
    _runner_cls: ClassVar[type[Any]]  # background work: tasks, or worker threads
    _queue_cls: ClassVar[type[Any]]  # the queued callers: futures, or held locks
    _checkout_cls: ClassVar[type[Any]]  # what acquire() and try_acquire() return
    _fast_path: ClassVar[str]  # the core's borrow path class ("AsyncFastPath" or "FastPath")
    _lock_kind: ClassVar[str]  # the core's lock class ("NoLock" or "Lock")

    # -- set by each kind of pool in its constructor ---------------------------------------
    _connector: Any  # opens connections in the background (connecting_async / connecting)
    _release_block: Callable[[Any, bool], Any]  # the returner's: the end of a connection() block
    _release: Callable[[Any], Any]  # the returner's: give a borrowed entry back

    @staticmethod
    def _wake(w: Any) -> None:
        """Wake a waiter the core served or failed (each kind of pool sets its own)."""
        raise NotImplementedError

    def __init__(self, make_driver: Callable[[float], Driver], config: PoolConfig) -> None:
        self._closed = True  # until started: __del__/close stay harmless
        self._opened = False
        self._terminated = False  # terminate(): connections are aborted, never closed politely
        self._eager_waiting = False  # an eager open waits and no connect has failed yet
        self._config = config
        self._acquire_timeout = config.acquire_timeout
        self._release_timeout = config.release_timeout
        self._name = config.name if config.name is not None else f"pool-{next(_names)}"
        self._driver = driver = make_driver(config.acquire_timeout)
        self._ref = weakref.ref(self)
        driver.pool = self._ref
        driver.log = self._log
        driver.rollback_level = self._rollback_level
        self._after_connect = config.after_connect
        self._before_acquire = config.before_acquire
        self._after_release = config.after_release
        self._eager = config.open
        self._auto_start = config.start
        self._keep_idle = config.keep_idle
        core_mod = _core_build.core
        self._core_mod = core_mod
        self._waiter_cls = core_mod.Waiter
        self._entry_cls = core_mod.Entry
        self._in_use_state = core_mod.ENTRY_IN_USE
        self._on_wait: Callable[[float], Any] | None = None  # metrics observers (fastpool.metrics)
        self._on_use: Callable[[float], Any] | None = None
        self._on_connect: Callable[[float], Any] | None = None
        self._leaks = (
            None
            if config.leak_timeout is None
            else LeakTracker(self._name, config.leak_timeout, self._in_use_state)
        )
        self._shedder = (
            None if config.queue_target is None else Shedder(config.queue_target, config.queue_interval)
        )
        self._breaker = Breaker(config.fail_fast_after, config.reconnect_timeout)
        self._has_reset = driver.has_reset
        self._has_finish = driver.has_finish
        self._has_needs_check = driver.has_needs_check
        # _admit must run for every hand-out from idle when a probe, a hook or
        # VERIFIED exists; otherwise only when the core's gate says a check is due
        self._check_always = driver.always_check
        self._runner = self._runner_cls(self._name, config.num_workers)
        self._queue = self._queue_cls()
        self._counters = dict.fromkeys(_COUNTERS, 0)
        reap_every = [t for t in (config.idle_timeout, config.max_lifetime) if t is not None]
        self._reap_interval = max(0.5, min(reap_every) / 2) if reap_every else None
        if config.leak_timeout is not None:  # the reaper's tick also looks for leaks
            leak_every = max(0.01, min(1.0, config.leak_timeout / 4))
            self._reap_interval = min(self._reap_interval or leak_every, leak_every)
        self._dedicated = 0  # connections opened outside max_size (leadership)
        self._closers: weakref.WeakSet[Any] = weakref.WeakSet()  # surfaces to stop at close
        self._pid = os.getpid()
        self._forked = False  # set in a forked child until its first use starts the pool afresh
        self._conns: dict[int, Any] = {}  # every open connection, to forget after a fork
        self._build_core(config)
        _pools.add(self)

    def _build_core(self, config: PoolConfig) -> None:
        """(Re)build the lock, the core and the borrow path: at construction and in a forked child."""
        core_mod = self._core_mod
        self._lock = getattr(core_mod, self._lock_kind)()
        self._core = core_mod.PoolCore(config, id(self) ^ int(monotonic() * 1e9))
        self._doomed = self._core.doomed
        get_mode, put_mode = self._fast_modes()
        fast_cls = getattr(core_mod, self._fast_path)
        gates = self._driver.make_gates(core_mod)
        self._fast = fast_cls(
            self._ref, self._core, self._lock, gates, get_mode, put_mode, config.test_before_acquire
        )
        if self._lend_as_pool:
            self._fast.unlent = self._driver  # conn._pool: the pool while lent, the driver when back
        self._set_fast_hooks()
        self._bind_fast()

    def _bind_fast(self) -> None:
        """Let ``connection()``, ``getconn()`` and ``putconn()`` be the compiled borrow path's
        (no Python frame per borrow), unless a surface defines its own."""
        fast = self._fast
        cls = type(self)
        for name in ("connection", "getconn", "putconn"):
            if getattr(getattr(cls, name, None), "_borrow_path", False):
                setattr(self, name, getattr(fast, name))

    def _fast_modes(self) -> tuple[int, int]:
        """Which gates the borrow path must run itself, from the options and the driver."""
        core_mod = self._core_mod
        driver = self._driver
        if self._check_always or self._before_acquire is not None:
            get_mode = core_mod.GET_ADMIT
        elif self._has_needs_check:
            get_mode = core_mod.GET_GATE if driver.ready_gate else core_mod.GET_ADMIT
        else:
            get_mode = core_mod.GET_PLAIN
        if self._after_release is not None or not self._keep_idle:
            put_mode = core_mod.PUT_SLOW
        elif self._has_finish or self._has_reset:
            put_mode = core_mod.PUT_GATE if driver.return_gate else core_mod.PUT_SLOW
        else:
            put_mode = core_mod.PUT_PLAIN
        return get_mode, put_mode

    def _set_fast_hooks(self) -> None:
        """Hand the borrow path its observers (metrics) and, with leak_timeout, the leak tracker;
        again after a rebuild (in a forked child) or when an observer is added."""
        fast = self._fast
        fast.on_wait = self._on_wait
        fast.on_use = self._on_use
        if self._leaks is not None:  # who took each connection, from the compiled path too
            fast.on_lend = self._leaks.note_lent

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

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return bool(self._core.paused)

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
        return stats_of(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._core.size}"
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} {self._name!r} {state} at 0x{id(self):x}>"

    # -- managing the pool (no I/O here: closes run in the background) --------------------------

    def drain(self, spread: float = 0.0) -> None:
        """Replace every connection: close the idle ones now, the borrowed ones when they come back.

        New connections replace them (``min_size`` is kept); use it to make every
        connection pick up a change of configuration.  With ``spread`` (seconds),
        each connection is retired at its own moment within that interval instead
        of all at once, so the server sees no burst of new connections.
        """
        spread = (
            check_duration("spread", spread, allow_none=False, allow_zero=True, owner=self._owner()) or 0.0
        )
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
            self._wake(w)
        if n:
            self._start_connects(n)
        self._close_doomed()

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change ``min_size`` and ``max_size`` (``max_size`` defaults to ``min_size``).

        Shrinking closes idle connections beyond the new maximum at once and
        borrowed ones as they come back; growing opens connections up to the
        new ``min_size``.
        """
        if max_size is None:
            max_size = min_size
        self._config = self._config.with_sizes(min_size, max_size)
        with self._lock:
            self._core.resize(max_size, min_size)
        self._close_doomed()

    def try_acquire(self) -> Any:
        """Return an idle connection at once, or None; never waits nor connects.

        The expiry gate and the driver's I/O-free probe apply; no health-check
        round trip is made.  Raises ``PoolClosed`` on a closed pool.
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
        if self._leaks is not None:
            self._leaks.note_lent(e)
        return self._checkout_cls(self, e)

    # -- the interface of the surfaces (see fastpool._pool.interface) ----------------------------

    def _owner(self) -> str:
        """The class the user called, as errors name it."""
        return self._config.owner

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

    def _gauge(self, name: str) -> int:
        """A gauge of the core now: ``size``, ``idle``, ``in_use``, ``connecting`` or ``waiting``."""
        if name not in _GAUGES:
            raise ValueError(f"no gauge {name!r}")
        return int(getattr(self._core, name))

    def _count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one of the pool's counters (see ``stats()``)."""
        with self._lock:
            self._counters[counter] += n

    # -- dropping connections ----------------------------------------------------------------------

    def _reject(self, e: Any, why: str, exc: BaseException, level: int = logging.INFO) -> None:
        """Close a connection that failed a check.

        A failed health check is logged at INFO: the caller gets another connection and
        sees nothing; a hook that raised is a bug worth a warning.
        """
        self._log.log(
            level, "%s: %s, closing the connection: %s", self._name, why, self._driver.redact(str(exc))
        )
        self._discard(e)

    def _alarm(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` after ``delay`` seconds unless the handle's ``cancel()`` comes first."""
        return self._runner.alarm(delay, fn, *args)

    def _connections(self) -> list[Any]:
        """Every open connection of the pool: idle, borrowed, or being reset."""
        return list(self._conns.values())

    def _close_begin(self) -> bool:
        """The I/O-free start of a close: waiters get ``PoolClosed``, returns close their
        connections from now on.  False when the pool was closed already."""
        with self._lock:
            if self._closed:
                self._opened = True  # a pool closed before it was opened stays closed
                return False
            self._closed = True
            waiters = self._core.close()
            for w in waiters:
                w.error = self._closed_while_waiting()
        self._fast.put_mode = self._core_mod.PUT_SLOW  # a return now closes its connection at once
        for w in waiters:
            self._wake(w)
        self._queue.stop()
        return True

    def _terminate(self) -> None:
        """Close the pool at once, from a plain function (asyncpg's ``terminate()``).

        Waiters get ``PoolClosed``, the background work is cancelled, and every
        connection, idle, borrowed or being reset, is aborted by the driver: its
        socket is closed without a goodbye, and a borrower's next call on it fails.
        Nothing waits and nothing is left to run.
        """
        self._close_begin()
        self._terminated = True
        self._runner.cancel()
        with self._lock:
            self._core.take_doomed()
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            try:
                self._driver.abort(conn)
            except Exception as exc:  # pragma: no cover - an abort is best effort
                self._log.debug("%s: error aborting a connection: %s", self._name, exc)

    def _closed_while_waiting(self) -> BaseException:
        return PoolClosed(f"{self._name} was closed while waiting for a connection")

    def _take_idle(self) -> list[Any]:
        """Check out every idle connection (expired ones are closed on the way)."""
        now = monotonic()
        taken = []
        with self._lock:
            while (e := self._core.acquire(now)) is not None:
                taken.append(e)
        return taken

    def _discard(self, e: Any) -> None:
        """Drop an in-use entry now and close its connection (in the background)."""
        if e.owner is not self._core:  # borrowed before a fork, in the parent: forgotten here
            return
        with self._lock:
            n = self._core.discard(e)
        self._close_later([e.conn])
        if n:
            self._start_connects(n)

    def _detach(self, e: Any) -> None:
        """Drop an in-use entry whose connection the caller keeps (and closes)."""
        with self._lock:
            n = self._core.discard(e)
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
        raise NotImplementedError

    def _orphaned(self, e: Any) -> None:
        """A borrowed entry's owner was garbage-collected: discard it in the background.

        Called from finalizers: no I/O, no lock here.
        """
        self._soon(self._discard_orphan, e)

    def _discard_orphan(self, e: Any) -> None:
        if e.state == self._in_use_state:  # still in use: nobody released it
            self._discard(e)

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
        if self._leaks is not None:
            self._leaks.scan(monotonic())

    # -- queueing: a caller's turn (the waiting itself is the queue's: _acompat) ------------------

    def _enqueue(self, deadline: float) -> Any:
        """An idle entry at once, or a turn in the queue: ``(waiter, now, until)``; else raise.

        ``until`` is ``deadline``, or earlier while the pool sheds load (``queue_target``).
        Raises the breaker's error while it is open, ``PoolClosed``, or ``TooManyRequests``
        past ``max_waiting``.
        """
        now = monotonic()
        core = self._core
        lock = self._lock  # acquire/release, not `with`: no bound methods made per wait
        queue = self._queue
        handle = queue.new_handle()
        until = deadline
        refused = False
        w = None
        n = 0
        lock.acquire()
        try:
            e = core.acquire(now)
            if e is None and not self._closed:
                if self._breaker.failing_since is not None and self._breaker.is_open(now):
                    refused = True
                else:
                    if self._shedder is not None and self._shedder.shedding(now, core.n_hits):
                        # overloaded: wait at most twice queue_target, then be shed (TooManyRequests)
                        until = min(deadline, now + 2 * self._shedder.target)
                    w = self._waiter_cls(handle, until if queue.timed else INF)
                    n = core.enqueue(w, now)
        finally:
            lock.release()
        if e is not None:
            return e
        if refused:
            self._breaker.demand_at = now
            self._kick_reconnect()
            self._count("timeouts")
            raise self._breaker.error(now, self._name, self._driver)
        if w is None:
            raise self._closed_error()
        if n < 0:
            raise TooManyRequests(
                f"{self._name}: {core.max_waiting} requests are already waiting (max_waiting)"
            )
        if n:
            self._start_connects(n)
        return (w, now, until)

    def _withdraw(self, w: Any) -> None:
        """A queued caller was cancelled: leave the queue; an entry handed over meanwhile goes on."""
        with self._lock:
            e = self._core.cancel_wait(w)
        if e is not None:  # served in the same instant: pass it on
            self._fast.release(e, monotonic())

    def _turn_taken(self, w: Any, start: float, until: float, deadline: float, timeout: float) -> Any:
        """A queued caller woke: its entry, or its error raised (failed, timed out, shed)."""
        e = w.entry  # set by the core before it wakes the waiter it serves
        if e is None:  # not served: withdraw, unless an entry came in the meantime
            shed = until < deadline
            with self._lock:
                e = self._core.cancel_wait(w, True)  # (nothing to do for one the core timed out)
                if e is None and w.error is None:
                    self._counters["shed" if shed else "timeouts"] += 1
            if e is None:
                raise wait_error(self, w, shed, start, timeout)
        waited = monotonic() - start
        with self._lock:
            self._counters["wait_ms"] += int(waited * 1000)
            self._core.observe_wait(waited)
        if self._shedder is not None:
            self._shedder.observe(start, waited, self._core.n_hits)
        return e

    # -- after a fork ----------------------------------------------------------------------------------

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
        self._breaker.reset()
        self._runner = self._runner_cls(self._name, self._config.num_workers)
        self._queue = self._queue_cls()
        self._build_core(self._config.with_sizes(int(core.min_size), int(core.max_size)))
        for surface in list(self._closers):
            surface._pool_forked()
        self._closers = weakref.WeakSet()
        if self._opened and not self._closed:
            self._forked = True

    # -- errors (worded in fastpool._pool.messages) -------------------------------------------------

    def _closed_error(self) -> PoolClosed:
        return closed_error(self._name, self._opened)

    def _timeout_error(self, timeout: float, started: float) -> PoolTimeout:
        return timeout_error(self, timeout, started)


_pools: weakref.WeakSet[PoolCommon[Any]] = weakref.WeakSet()  # every pool, for fork


def _after_fork_in_child() -> None:
    for pool in list(_pools):
        pool._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reap_tick(ref: weakref.ReferenceType[PoolCommon[Any]]) -> None:
    """The reaper's tick, rescheduled while the pool lives and is open (holds it weakly)."""
    pool = ref()
    if pool is None or pool._closed:
        return
    try:
        pool._reap()
    finally:
        if pool._reap_interval is not None:
            pool._runner.later(pool._reap_interval, reap_tick, ref)
