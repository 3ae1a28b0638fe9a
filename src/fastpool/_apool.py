"""The asyncio pools: :class:`AsyncPool` (psycopg) and :class:`AsyncResourcePool` (any resource).

Same core, options and behaviour as the threaded pools (the bookkeeping is
shared through :class:`~fastpool._base.PoolBase`); what differs is how they
wait (futures), who opens connections (pool-owned tasks on the running loop)
and that no lock is taken: the event loop runs one core call at a time.

Cancellation safety, point by point:

* a waiter cancelled or timed out while queued is withdrawn from the core; if
  it had been handed a connection in the same instant, the connection goes to
  the next waiter at once (synchronously, in the ``except`` path);
* a health check, hook, reset or commit interrupted by cancellation leaves the
  connection in an unknown state: it is discarded (R1), its slot freed
  synchronously, and the close runs in a pool-owned task;
* connects run in pool-owned tasks, never in the acquirer: an acquirer that
  gives up abandons only its wait, and the new connection serves the next one;
* nothing is shielded: cancelling a releaser can never lose a slot, because
  the slot is given back before the first await of the release path fails.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from queue import SimpleQueue
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic

import psycopg

from ._base import C, NoLock, PoolBase, PooledBase
from ._meta import META_NEW, ConnectionMetadata
from ._psycopg import AsyncPsycopgDriver
from ._validate import check_sizes
from .errors import PoolClosed, PoolTimeout, TooManyRequests, WrongPoolError
from .leadership import AsyncLeadership, LeadershipNotAcquired, LockKey
from .recycle import Recycle
from .resource import AsyncResourceDriver, Driver

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._pool import PoolSettings

__all__ = ["AsyncBasePool", "AsyncPool", "AsyncPooledConnection", "AsyncResourcePool"]

logger = logging.getLogger("fastpool")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


_running_loop = asyncio.get_running_loop
_Future = asyncio.Future


def _wake(w: Any) -> None:
    fut = w.handle
    if not fut.done():
        fut.set_result(None)


class AsyncBasePool(PoolBase[C]):
    """Everything the asyncio pools share; see :class:`AsyncPool` for the options."""

    _driver: Any  # an async driver: connect, close, check, reset and finish are awaitable

    def __init__(self, make_driver: Callable[[float], Driver], *, open: bool = True, **options: Any) -> None:
        super().__init__(make_driver, NoLock(), **options)
        self._eager = bool(open)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._orphans: SimpleQueue[Any] = SimpleQueue()
        self._connect_slots: asyncio.Semaphore | None = None
        self._deadlines: deque[tuple[float, Any]] = deque()  # queued waiters by deadline (FIFO)
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0  # when the shared timer fires
        self._waiting_state = self._core_mod.WAITER_WAITING
        self._entry_cls = self._core_mod.Entry
        self._fast = self._make_fast_path()
        if type(self).connection is AsyncBasePool.connection:
            self.connection = self._fast.connection  # type: ignore[method-assign]

    def _make_fast_path(self) -> Any:
        """The compiled (or pure-twin) borrow path, told which gates the options call for."""
        get_mode, put_mode = self._fast_modes()
        return self._core_mod.AsyncFastPath(
            weakref.ref(self), self._core, self._driver, get_mode, put_mode, self._test_before_acquire
        )

    # -- life cycle ------------------------------------------------------------------

    def _bind(self) -> None:
        """Bind the pool to the running loop and start it (first use); check the loop after."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            if self._opened and self._closed:
                raise self._closed_error()
            self._loop = loop
            self._fast.loop = loop
            self._connect_slots = asyncio.Semaphore(self._num_workers)
            self._opened = True
            self._closed = False
            if self._reap_interval is not None:
                self._spawn(self._reaper())
            self._start_connects(self._core.plan_connects())
        elif loop is not self._loop:
            raise RuntimeError(
                f"{self._name} is bound to another event loop: an asyncio pool is used from the loop "
                "it was first used in; create one pool per loop"
            )

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the pool on the running loop; with ``wait``, open ``max(1, min_size)`` connections.

        Raises ``PoolTimeout`` (with the host, port and cause) or the connect
        error, and closes the pool, if they cannot be opened within
        ``timeout`` (default ``acquire_timeout``).
        """
        self._bind()
        if wait:
            await self._open_eager(self._acquire_timeout if timeout is None else timeout)

    async def _open_eager(self, timeout: float) -> None:
        want = max(1, self._core.min_size)
        held: list[Any] = []
        deadline = monotonic() + timeout
        try:
            for _ in range(want):
                held.append(await self._get(max(0.0, deadline - monotonic())))
        except BaseException as exc:
            for e in held:
                self._put_raw(e)
            await self.close(0)
            if isinstance(exc, PoolTimeout):
                raise self._eager_open_error(exc, want) from exc.__cause__
            raise
        for e in held:
            self._put_raw(e)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool; idempotent.  Same contract as the threaded ``close()``."""
        if self._closed:
            self._opened = True
            return
        self._closed = True
        for w in self._core.close():
            w.error = PoolClosed(f"{self._name} was closed while waiting for a connection")
            _wake(w)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        for own in list(self._ownerships):  # owners lose their pinned connections (SPEC 2.4.8)
            await own._stop_all()
        self._close_doomed()
        deadline = monotonic() + max(0.0, timeout)
        while self._core.in_use and monotonic() < deadline:
            await asyncio.sleep(0.005)
        for lead in [ref() for ref in list(self._leaders.values())]:
            if lead is not None:  # still leading after the timeout: close their sessions, set lost
                lead._force_lost()
        if self._core.in_use:
            logger.warning(
                "%s closed with %d connection(s) still in use; they will be closed when returned",
                self._name,
                self._core.in_use,
            )
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            if not t.done() and not getattr(t, "_fastpool_closer", False):
                t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, deadline - monotonic()))
        self._close_doomed()

    async def __aenter__(self) -> AsyncBasePool[C]:
        await self.open(wait=self._eager)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- public API --------------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[C]:
        """Borrow a connection for an ``async with`` block (commit on success, roll back on error).

        Same deadline and errors as the threaded ``connection()``.
        """
        return self._fast.connection(timeout)  # type: ignore[no-any-return]

    def acquire(self, timeout: float | None = None) -> _AcquireContext[C]:
        """Check out a connection: ``await pool.acquire()`` or ``async with pool.acquire() as conn``.

        ``await`` gives an :class:`AsyncPooledConnection` to ``release()``;
        ``async with`` yields the raw connection and releases it at the end.
        """
        return _AcquireContext(self, timeout)

    def try_acquire(self) -> AsyncPooledConnection[C] | None:
        """Return an idle connection at once, or None; never waits nor connects."""
        if self._closed:
            raise self._closed_error()
        e = self._core.acquire(monotonic())
        if self._doomed:
            self._close_doomed()
        return None if e is None else AsyncPooledConnection(self, e)

    async def getconn(self, timeout: float | None = None) -> C:
        """Check out a connection to give back with :meth:`putconn`."""
        e = await self._get(timeout)
        self._lent[id(e.conn)] = e
        return e.conn  # type: ignore[no-any-return]

    async def putconn(self, conn: C) -> None:
        """Give back a connection from :meth:`getconn`; ``WrongPoolError`` if it is not ours."""
        e = self._lent.pop(id(conn), None)
        if e is None or e.conn is not conn:
            if e is not None:
                self._lent[id(conn)] = e
            raise WrongPoolError(f"this connection was not lent by {self._name} (or was already returned)")
        await self._put(e)

    async def wait(self, timeout: float = 30.0) -> None:
        """Wait until ``min_size`` connections are open; ``PoolTimeout`` (and close) after ``timeout``."""
        self._bind()
        deadline = monotonic() + timeout
        core = self._core
        while core.size - core.connecting < core.min_size:
            if monotonic() >= deadline:
                await self.close()
                raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from self._last_error
            await asyncio.sleep(0.005)

    def drain(self) -> None:
        """Close every idle connection now and every borrowed one when it comes back."""
        self._core.drain(monotonic())
        self._close_doomed()

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change ``min_size`` and ``max_size`` (see the threaded ``resize()``)."""
        if max_size is None:
            max_size = min_size
        check_sizes("min_size", min_size, "max_size", max_size)
        self._core.resize(max_size, min_size)
        self._close_doomed()

    async def check(self) -> None:
        """Check every idle connection now; close and replace broken ones."""
        for e in self._take_idle():
            try:
                await self._driver.check(e.conn)
            except Exception as exc:
                self._counters["health_check_failures"] += 1
                self._reject(e, "check() found a broken connection", exc)
            except BaseException:
                self._discard(e)
                raise
            else:
                self._put_raw(e)

    # -- leadership ----------------------------------------------------------------------

    def leadership(
        self,
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[AsyncLeadership, BaseException], Any] | None = None,
        timeout: float | None = None,
    ) -> AsyncLeadership:
        """Return a guard on the advisory lock ``key``, taken by ``async with`` (as ``Pool.leadership``)."""
        if not isinstance(self._driver, AsyncPsycopgDriver):
            raise TypeError("leadership needs a pool of psycopg connections")
        return AsyncLeadership(
            self, key, dedicated=dedicated, heartbeat=heartbeat, on_lost=on_lost, timeout=timeout
        )

    async def try_leadership(self, key: LockKey, **options: Any) -> AsyncLeadership | None:
        """Return an acquired guard on ``key``, or None if another session leads."""
        lead = self.leadership(key, **options)
        try:
            return await lead.acquire()
        except LeadershipNotAcquired:
            return None

    async def _open_dedicated(self) -> Any:
        if self._loop is not _running_loop():
            self._bind()
        conn = await self._driver.connect()
        try:
            if self._after_connect is not None:
                await _maybe_await(self._after_connect(conn, META_NEW))
        except BaseException:
            self._close_later([conn])
            raise
        self._dedicated += 1
        return conn

    def _close_dedicated(self, conn: Any) -> None:
        self._dedicated -= 1
        self._close_later([conn])

    # -- acquire ---------------------------------------------------------------------------

    async def _get(self, timeout: float | None) -> Any:
        if self._loop is not _running_loop():
            self._bind()  # first use starts the pool; another loop is an error
        r = self._fast.get(timeout)  # bound now: an entry, or the slow path's coroutine
        return r if type(r) is self._entry_cls else await r

    async def _admit_or_slow(self, e: Any, now: float, timeout: float | None) -> Any:
        """The fast path popped ``e`` but a gate must run: admit it, or take the slow path."""
        if await self._admit(e, now):
            return e
        return await self._get_slow(now, timeout)

    async def _get_slow(self, start: float, timeout: float | None) -> Any:
        """Queue for a connection (one coroutine: no per-wait frame of its own).

        Callers have bound the pool to the running loop (``_get``, or the fast
        path's loop check).
        """
        if not self._orphans.empty():
            self._drain_orphans()
        if timeout is None:
            timeout = self._acquire_timeout
        elif timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        deadline = start + timeout
        core = self._core
        loop = self._loop
        assert loop is not None
        while True:
            if self._doomed:
                self._close_doomed()
            now = monotonic()
            e = core.acquire(now)
            if e is None:
                if self._closed:
                    raise self._closed_error()
                fut: asyncio.Future[None] = _Future(loop=loop)  # create_future() adds a Python frame
                w = self._waiter_cls(fut)
                n = core.enqueue(w, now)
                if n < 0:
                    raise TooManyRequests(
                        f"{self._name}: {core.max_waiting} requests are already waiting (max_waiting)"
                    )
                if n:
                    self._start_connects(n)
                # -- wait: served (w.entry), failed (w.error), or woken at the deadline
                remaining = deadline - now
                if remaining > 0:
                    dq = self._deadlines
                    timer = None
                    if dq and deadline < dq[-1][0]:  # shorter than the queue's last: its own timer
                        timer = loop.call_later(remaining, _wake, w)
                    else:  # FIFO with one timeout: deadlines come in order, one timer serves all
                        dq.append((deadline, w))
                        if self._deadline_timer is None or deadline < self._deadline_at:
                            if self._deadline_timer is not None:
                                self._deadline_timer.cancel()
                            self._deadline_at = deadline
                            self._deadline_timer = loop.call_later(remaining, self._expire_waiters)
                    try:
                        await fut
                    except BaseException:  # cancelled (or interrupted) while queued
                        if timer is not None:
                            timer.cancel()
                        e = core.cancel_wait(w)
                        if e is not None:  # served in the same instant: pass it on
                            self._put_raw(e)
                        raise
                    finally:
                        waiting = self._waiting_state
                        while dq and dq[0][1].state != waiting:
                            dq.popleft()  # served or cancelled: FIFO service keeps them at the head
                    if timer is not None:
                        timer.cancel()
                e = w.entry
                if e is not None:  # served (the core sets the entry when it hands one over)
                    self._counters["wait_ms"] += int((monotonic() - now) * 1000)
                else:
                    if w.error is not None:
                        raise w.error
                    core.cancel_wait(w)  # still queued: the deadline passed
                    self._counters["timeouts"] += 1
                    raise self._timeout_error(timeout, now)
            if e.fresh or not self._must_admit(e, now) or await self._admit(e, now):
                e.fresh = False
                return e
            if monotonic() >= deadline:
                self._counters["timeouts"] += 1
                raise PoolTimeout(
                    f"couldn't get a connection after {timeout:.3g} s: timed out checking connections"
                ) from self._last_error

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
                _wake(w)  # its _wait sees no entry and no error: a timeout
            else:
                break
        if dq and self._loop is not None and not self._loop.is_closed():
            self._deadline_at = dq[0][0]
            self._deadline_timer = self._loop.call_later(max(0.0, dq[0][0] - now), self._expire_waiters)

    async def _admit(self, e: Any, now: float) -> bool:
        conn = e.conn
        need = self._check_always or (self._test_before_acquire and e.check_due)
        if not need and self._has_needs_check:
            try:
                need = self._driver.needs_check(e, now)
            except Exception as exc:
                self._reject(e, "needs_health_check raised", exc)
                return False
        try:
            if need:
                try:
                    await self._driver.check(conn)
                except Exception as exc:
                    self._counters["health_checks"] += 1
                    self._counters["health_check_failures"] += 1
                    self._last_error, self._last_error_at = exc, monotonic()
                    self._reject(e, "health check failed", exc)
                    return False
                e.flagged = False
                self._counters["health_checks"] += 1
            hook = self._before_acquire
            if hook is not None:
                try:
                    ok = await _maybe_await(
                        hook(conn, ConnectionMetadata(now - e.created_at, now - e.last_used))
                    )
                except Exception as exc:
                    self._reject(e, "before_acquire raised", exc)
                    return False
                if not ok:
                    self._counters["before_acquire_rejections"] += 1
                    self._discard(e)
                    return False
        except BaseException:  # cancelled mid-check: the connection's state is unknown (R1)
            self._discard(e)
            raise
        return True

    def _reject(self, e: Any, why: str, exc: BaseException) -> None:
        logger.warning("%s: %s, closing the connection: %s", self._name, why, self._driver.redact(str(exc)))
        self._discard(e)

    # -- release -----------------------------------------------------------------------------

    async def _finish_put(self, e: Any, ok: bool) -> None:
        """The end of a ``connection()`` block off the fast path: commit or roll back, then ``_put``."""
        if self._has_finish and self._driver.finish_action(e.conn, ok):
            try:
                await self._driver.finish(e.conn, ok)
            except Exception as fexc:
                await self._put(e)
                if ok:
                    raise
                logger.debug("%s: rollback after an error failed: %s", self._name, fexc)
                return
            except BaseException:  # cancelled mid-commit: unknown state (R1)
                self._discard(e)
                raise
        await self._put(e)

    async def _put(self, e: Any) -> None:
        conn = e.conn
        now = monotonic()
        keep = now < e.expires_at
        try:
            if keep and self._has_reset:
                fast = self._driver.reset_now(e)  # no coroutine at all when nothing is to be done
                keep = fast == 1 or (fast == 2 and await self._driver.reset(e))
            hook = self._after_release
            if keep and hook is not None:
                keep = bool(await _maybe_await(hook(conn, ConnectionMetadata(now - e.created_at, 0.0))))
                if not keep:
                    self._counters["after_release_rejections"] += 1
        except Exception as exc:
            logger.warning(
                "%s: resetting a returned connection failed, closing it: %s",
                self._name,
                self._driver.redact(str(exc)),
            )
            keep = False
        except BaseException:  # cancelled mid-reset: unknown state (R1); the slot is freed now
            self._discard(e)
            raise
        if not keep:
            self._counters["returns_bad"] += 1
            self._discard(e)
            return
        self._put_raw(e, now)

    def _put_raw(self, e: Any, now: float | None = None) -> None:
        w = self._core.release(e, monotonic() if now is None else now)
        if w is not None:
            _wake(w)
        if self._doomed:
            self._close_doomed()

    def _discard(self, e: Any) -> None:
        """Drop an in-use entry now (synchronously) and close its connection in a task."""
        n = self._core.discard(e)
        self._close_later([e.conn])
        if n:
            self._start_connects(n)

    def _close_doomed(self) -> None:
        doomed = self._core.take_doomed()
        n = self._core.plan_connects()
        if doomed:
            for e in doomed:
                if e.locks_held:
                    logger.error("%s: closing a connection that still holds a lock", self._name)
            self._close_later([e.conn for e in doomed])
        if n:
            self._start_connects(n)

    def _close_later(self, conns: list[Any]) -> None:
        async def close_all() -> None:
            for conn in conns:
                try:
                    await self._driver.close(conn)
                except Exception as exc:
                    logger.debug(
                        "%s: error closing a connection: %s", self._name, self._driver.redact(str(exc))
                    )

        if self._loop is None or self._loop.is_closed():
            return  # nothing was ever opened on a loop, or the loop is gone
        task = self._spawn(close_all())
        task._fastpool_closer = True  # type: ignore[attr-defined]  # close() lets closers finish

    def _orphaned(self, e: Any) -> None:
        """Finalizer path (R4): no I/O, no lock; the loop discards the entry."""
        self._orphans.put(e)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._drain_orphans)
            except RuntimeError:  # pragma: no cover - loop closing
                pass

    def _drain_orphans(self) -> None:
        while not self._orphans.empty():
            e = self._orphans.get_nowait()
            if e.state == 1:  # still in use: nobody released it
                self._discard(e)

    # -- tasks ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_connects(self, n: int) -> None:
        if self._closed or self._loop is None:
            for _ in range(n):
                self._core.connect_failed()
            return
        for _ in range(n):
            self._spawn(self._connect_task())

    async def _connect_task(self) -> None:
        """Open one connection for a reservation of the core, which is always settled once."""
        driver = self._driver
        slots = self._connect_slots
        assert slots is not None
        settled = False
        try:
            async with slots:
                if self._closed:
                    return
                started = monotonic()
                try:
                    conn = await driver.connect()
                except Exception as exc:
                    settled = True
                    self._connect_failed(exc, driver.retryable(exc))
                    return
                try:
                    hook = self._after_connect
                    if hook is not None:
                        await _maybe_await(hook(conn, META_NEW))
                    data = driver.snapshot(conn)
                except Exception as exc:
                    settled = True
                    self._close_later([conn])
                    self._connect_failed(exc, driver.hook_retryable(exc))
                    return
                except BaseException:
                    self._close_later([conn])
                    raise
            settled = True
            w = self._note_connect_done(conn, data, started)
        finally:
            if not settled:  # cancelled, interrupted, or the pool closed: give the reservation back
                self._core.connect_failed()
        if w is not None:
            _wake(w)
        if self._doomed:
            self._close_doomed()

    def _connect_failed(self, exc: BaseException, retry: bool) -> None:
        w, n, delay, gave_up = self._note_connect_failure(exc, retry)
        if gave_up and self._reconnect_failed is not None:
            try:
                result = self._reconnect_failed(self)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                logger.exception("%s: error in reconnect_failed", self._name)
        if w is not None:
            _wake(w)
        if n and not self._closed:
            self._spawn(self._connect_later(delay, n))

    async def _connect_later(self, delay: float, n: int) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            for _ in range(n):
                self._core.connect_failed()
            raise
        self._start_connects(n)

    async def _reaper(self) -> None:
        assert self._reap_interval is not None
        while not self._closed:
            await asyncio.sleep(self._reap_interval)
            self._drain_orphans()
            self._mark_reapable()
            self._close_doomed()


class AsyncPooledConnection(PooledBase[C]):
    """A checked-out connection of an asyncio pool; ``await release()`` gives it back.

    One garbage-collected without release is reclaimed by the pool's loop
    (``ResourceWarning``).
    """

    __slots__ = ()

    async def release(self) -> None:
        """Give the connection back to the pool (reset, then reuse)."""
        await self._pool._put(self._take())

    def close(self) -> None:
        """Close the connection instead of returning it; its slot is freed now."""
        self._pool._discard(self._take())


class _AcquireContext(Generic[C]):
    """``pool.acquire()``: awaitable (a pooled connection) and an async context manager."""

    __slots__ = ("_pc", "_pool", "_timeout")

    def __init__(self, pool: AsyncBasePool[C], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._pc: AsyncPooledConnection[C] | None = None

    async def _acquire(self) -> AsyncPooledConnection[C]:
        return AsyncPooledConnection(self._pool, await self._pool._get(self._timeout))

    def __await__(self) -> Generator[Any, None, AsyncPooledConnection[C]]:
        return self._acquire().__await__()

    async def __aenter__(self) -> C:
        self._pc = pc = await self._acquire()
        return pc.connection

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pc = self._pc
        self._pc = None
        if pc is not None and pc._entry is not None:
            await pc.release()


class AsyncPool(AsyncBasePool[psycopg.AsyncConnection[Any]]):
    """An asyncio pool of psycopg ``AsyncConnection`` objects: :class:`fastpool.Pool` on asyncio.

    Same options (hooks may be plain or ``async`` callables).  Creating the
    pool does no I/O and needs no running loop: ``await pool.open()`` (or
    ``async with AsyncPool(...) as pool``, or :meth:`connect`) opens
    ``max(1, min_size)`` connections and fails clearly if it cannot; or just
    use it, and it starts on the loop of its first use (``connect_lazy``).
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        kwargs: dict[str, Any] | None = None,
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
        recycle: Recycle = Recycle.FAST,
        **options: Unpack[PoolSettings],
    ) -> None:
        if not isinstance(recycle, Recycle):
            raise TypeError(f"recycle must be a fastpool.Recycle, got {type(recycle).__name__}")
        super().__init__(partial(AsyncPsycopgDriver, conninfo, kwargs, connection_class, recycle), **options)

    @classmethod
    async def connect(cls, conninfo: str = "", **options: Any) -> AsyncPool:
        """Create a pool and open ``max(1, min_size)`` connections now (sqlx ``connect``)."""
        pool = cls(conninfo, **options)
        await pool.open(wait=True)
        return pool

    @classmethod
    def connect_lazy(cls, conninfo: str = "", **options: Any) -> AsyncPool:
        """Create a pool that starts on the loop of its first use (sqlx ``connect_lazy``)."""
        options["open"] = False
        return cls(conninfo, **options)

    @property
    def recycle(self) -> Recycle:
        """The recycling method."""
        return self._driver.recycle  # type: ignore[no-any-return]

    async def clear_prepared(self) -> None:
        """Deallocate prepared statements on every connection (see ``Pool.clear_prepared``)."""
        self._driver.epoch += 1
        self._fast.epoch = self._driver.epoch
        for e in self._take_idle():
            await self._put(e)

    async def __aenter__(self) -> AsyncPool:
        await self.open(wait=self._eager)
        return self

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow a connection inside ``conn.transaction()`` (commit or roll back)."""
        async with self.connection(timeout) as conn, conn.transaction():
            yield conn


class AsyncResourcePool(AsyncBasePool[C]):
    """An asyncio pool of any :class:`fastpool.AsyncResource` (async create, health_check, close)."""

    def __init__(self, resource_cls: Any, ctx: Any = None, **options: Unpack[PoolSettings]) -> None:
        super().__init__(lambda _timeout: AsyncResourceDriver(resource_cls, ctx), **options)

    async def __aenter__(self) -> AsyncResourcePool[C]:
        await self.open(wait=self._eager)
        return self


for _cls in (AsyncBasePool, AsyncPool, AsyncResourcePool, AsyncPooledConnection):
    _cls.__module__ = "fastpool"
