"""The threaded pools: :class:`Pool` (psycopg) and :class:`ResourcePool` (any resource).

The shell owns one lock that serialises every call into the core (on both
twins: the GIL is never relied upon), waits outside it, runs the hooks, and
drives the pool-owned threads that open connections with backoff, reap expired
idle connections and keep ``min_size``.  An acquirer never opens a connection
itself: it queues, and a worker's finished connection is handed to the oldest
waiter (or idled if that waiter gave up meanwhile).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from time import monotonic, sleep
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import psycopg

from . import _impl
from ._base import C, Hook, PoolBase, PooledBase
from ._maintenance import Maintenance
from ._meta import META_NEW, ConnectionMetadata
from ._psycopg import PsycopgDriver
from ._validate import check_duration, check_sizes
from .errors import PoolClosed, PoolTimeout, TooManyRequests, WrongPoolError
from .leadership import Leadership, LeadershipNotAcquired, LockKey
from .recycle import Recycle
from .resource import Driver, ResourceDriver

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["BasePool", "Pool", "PoolSettings", "PooledConnection", "ResourcePool"]

logger = logging.getLogger("fastpool")

_allocate_lock = threading.Lock
_TIMEOUT_MAX = threading.TIMEOUT_MAX  # a lock wait longer than this raises OverflowError


class BasePool(PoolBase[C]):
    """Everything the threaded pools share; see :class:`Pool` for the options."""

    def __init__(
        self,
        make_driver: Callable[[float], Driver],
        *,
        open: bool = True,
        start: bool = True,
        **options: Any,
    ) -> None:
        # the compiled core's Lock is taken in C by the borrow path; the pure twin uses threading's
        super().__init__(make_driver, getattr(_impl.core, "Lock", threading.Lock)(), **options)
        self._maint = Maintenance(self._name, self._num_workers)
        self._fast = self._make_fast_path()
        self._get = self._fast.get  # type: ignore[method-assign]  # compiled, no Python frame
        if type(self).connection is BasePool.connection:
            self.connection = self._fast.connection  # type: ignore[method-assign]
        if start:
            self._start(eager=open)

    def _make_fast_path(self) -> Any:
        """The compiled (or pure-twin) borrow path, told which gates the options call for."""
        get_mode, put_mode = self._fast_modes()
        return self._core_mod.FastPath(
            weakref.ref(self),
            self._core,
            self._lock,
            self._driver,
            get_mode,
            put_mode,
            self._test_before_acquire,
        )

    def _start(self, eager: bool) -> None:
        """Start the workers, the reaper and the ``min_size`` top-up (once)."""
        if self._opened:
            if self._closed:
                raise PoolClosed(f"{self._name} was closed and cannot be opened again")
            return
        self._opened = True
        self._closed = False
        self._maint.start()
        weakref.finalize(self, self._maint.stop, 0.0)
        if self._reap_interval is not None:
            self._maint.later(self._reap_interval, _reaper_job(weakref.ref(self)))
        with self._lock:
            n = self._core.plan_connects()
        self._start_connects(n)
        if eager:
            self._open_eager()

    # -- public API ----------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> AbstractContextManager[C]:
        """Borrow a connection for a ``with`` block.

        ``with pool.connection() as conn:`` hands out a connection and returns
        it at the end of the block; a transaction left open is committed if
        the block succeeded and rolled back if it raised (psycopg_pool's
        behaviour).  ``timeout`` (default ``acquire_timeout``) bounds every
        phase: queueing, connecting and checking.

        Raises ``PoolTimeout``, ``PoolClosed`` or ``TooManyRequests``, or the
        error of a connect that failed for a reason not worth retrying.
        """
        return self._fast.connection(timeout)  # type: ignore[no-any-return]

    def acquire(self, timeout: float | None = None) -> PooledConnection[C]:
        """Check out a connection; return it with ``.release()`` or a ``with`` block.

        Unlike :meth:`connection`, nothing is committed: an open transaction is
        rolled back when the connection comes back.  Same errors as
        :meth:`connection`.
        """
        return PooledConnection(self, self._get(timeout))

    def try_acquire(self) -> PooledConnection[C] | None:
        """Return an idle connection at once, or None; never waits nor connects.

        The expiry gate applies; no health-check round trip is made.
        """
        if self._closed:
            raise self._closed_error()
        now = monotonic()
        with self._lock:
            e = self._core.acquire(now)
        if self._doomed:
            self._close_doomed()
        return None if e is None else PooledConnection(self, e)

    def getconn(self, timeout: float | None = None) -> C:
        """Check out a connection to give back with :meth:`putconn`."""
        e = self._get(timeout)
        self._lent[id(e.conn)] = e
        return e.conn  # type: ignore[no-any-return]

    def putconn(self, conn: C) -> None:
        """Give back a connection obtained from :meth:`getconn`.

        Raises ``WrongPoolError`` if ``conn`` was not lent by this pool's
        ``getconn`` or was already given back.
        """
        e = self._lent.pop(id(conn), None)
        if e is None or e.conn is not conn:
            if e is not None:
                self._lent[id(conn)] = e
            raise WrongPoolError(f"this connection was not lent by {self._name} (or was already returned)")
        self._put(e)

    def leadership(
        self,
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[Leadership, BaseException], None] | None = None,
        timeout: float | None = None,
    ) -> Leadership:
        """Return a guard on the advisory lock ``key``, acquired by ``with`` (see ``fastpool.leadership``).

        The lock is held on one connection of the pool (counted in
        ``max_size``), or, with ``dedicated=True``, on a connection opened for
        it outside ``max_size``.  ``heartbeat`` seconds: a pool worker checks
        the lock that often and calls ``on_lost(guard, error)`` once if it is
        gone.  ``timeout`` bounds getting the connection.
        """
        if not isinstance(self._driver, PsycopgDriver):
            raise TypeError("leadership needs a pool of psycopg connections")
        return Leadership(
            self, key, dedicated=dedicated, heartbeat=heartbeat, on_lost=on_lost, timeout=timeout
        )

    def try_leadership(self, key: LockKey, **options: Any) -> Leadership | None:
        """Return an acquired guard on ``key``, or None if another session leads (same options)."""
        lead = self.leadership(key, **options)
        try:
            return lead.acquire()
        except LeadershipNotAcquired:
            return None

    def _open_dedicated(self) -> Any:
        """Open a connection outside ``max_size`` (``after_connect`` runs on it)."""
        conn = self._driver.connect()
        try:
            if self._after_connect is not None:
                self._after_connect(conn, META_NEW)
        except BaseException:
            self._close_conn(conn)
            raise
        with self._lock:
            self._dedicated += 1
        return conn

    def _close_dedicated(self, conn: Any) -> None:
        self._close_conn(conn)
        with self._lock:
            self._dedicated -= 1

    def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the pool if it is not started (idempotent); with ``wait``, open connections now.

        ``wait`` opens ``max(1, min_size)`` connections within ``timeout``
        (default ``acquire_timeout``) and raises, closing the pool, if it
        cannot.  A closed pool cannot be opened again (``PoolClosed``).
        """
        self._start(eager=False)
        if wait:
            self._open_eager(timeout)

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until ``min_size`` connections are open.

        Raises ``PoolTimeout`` (and closes the pool) if that takes longer than
        ``timeout`` seconds; ``PoolClosed`` if the pool is not open.
        """
        if self._closed:
            raise self._closed_error()
        deadline = monotonic() + timeout
        core = self._core
        while core.size - core.connecting < core.min_size:
            if monotonic() >= deadline:
                self.close()
                raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from self._last_error
            sleep(0.005)

    def drain(self) -> None:
        """Close every idle connection now, and every borrowed one when it comes back.

        New connections replace them (``min_size`` is kept); use it to make every
        connection pick up a change of configuration.
        """
        with self._lock:
            self._core.drain(monotonic())
        self._close_doomed()

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

    def check(self) -> None:
        """Check every idle connection now (empty query); close and replace broken ones."""
        for e in self._take_idle():
            try:
                self._driver.check(e.conn)
            except Exception as exc:
                with self._lock:
                    self._counters["health_check_failures"] += 1
                self._reject(e, "check() found a broken connection", exc)
            else:
                self._put_raw(e)
        if self._doomed:
            self._close_doomed()

    def close(self, timeout: float = 5.0) -> None:
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
        for w in waiters:
            w.handle.release()
        for own in list(self._ownerships):  # owners lose their pinned connections (SPEC 2.4.8)
            own._stop_all()
        self._close_doomed()
        deadline = monotonic() + max(0.0, timeout)
        while self._core.in_use and monotonic() < deadline:
            sleep(0.005)
        with self._lock:
            leaders = [lead for ref in self._leaders.values() if (lead := ref()) is not None]
        for lead in leaders:  # still leading after the timeout: close their sessions, set lost
            lead._force_lost()
        if self._core.in_use:
            logger.warning(
                "%s closed with %d connection(s) still in use; they will be closed when returned",
                self._name,
                self._core.in_use,
            )
        self._maint.stop(max(0.0, min(1.0, deadline - monotonic())))
        self._close_doomed()

    def __enter__(self) -> BasePool[C]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- acquire -------------------------------------------------------------------

    def _get(self, timeout: float | None) -> Any:
        """Return an in-use core entry (the instance uses the fast path's ``get`` directly)."""
        return self._fast.get(timeout)

    def _get_slow(self, start: float, timeout: float | None) -> Any:
        if timeout is None:
            timeout = self._acquire_timeout
        else:
            timeout = check_duration("timeout", timeout, allow_none=False, allow_zero=True)
        deadline = start + timeout  # type: ignore[operator]
        core = self._core
        lock = self._lock
        while True:
            if self._doomed:
                self._close_doomed()
            now = monotonic()
            n = 0
            w = None
            e: Any
            with lock:
                e = core.acquire(now)
                if e is None:
                    if self._closed:
                        raise self._closed_error()
                    w = self._waiter_cls(_allocate_lock())
                    w.handle.acquire()
                    n = core.enqueue(w, now)
                    if n < 0:
                        raise TooManyRequests(
                            f"{self._name}: {core.max_waiting} requests are already waiting (max_waiting)"
                        )
            if w is not None:
                if n:
                    self._start_connects(n)
                e = self._wait(w, now, deadline, timeout)  # type: ignore[arg-type]
            if e.fresh or not self._must_admit(e, now) or self._admit(e, now):
                e.fresh = False
                return e
            if monotonic() >= deadline:
                with lock:
                    self._counters["timeouts"] += 1
                raise PoolTimeout(
                    f"couldn't get a connection after {timeout:.3g} s: timed out checking connections"
                ) from self._last_error

    def _wait(self, w: Any, now: float, deadline: float, timeout: float) -> Any:
        core = self._core
        try:
            remaining = deadline - now
            got = (
                w.handle.acquire(True, min(remaining, _TIMEOUT_MAX))
                if remaining > 0
                else w.handle.acquire(False)
            )
        except BaseException:
            with self._lock:
                e = core.cancel_wait(w)
            if e is not None:
                self._put_raw(e)
            raise
        if got:
            waited_ms = int((monotonic() - now) * 1000)
            with self._lock:
                self._counters["wait_ms"] += waited_ms
            if w.entry is not None:
                return w.entry
            raise w.error
        with self._lock:
            e = core.cancel_wait(w)
            if e is None and w.error is None:
                self._counters["timeouts"] += 1
        if e is not None:
            return e
        if w.error is not None:
            raise w.error
        raise self._timeout_error(timeout, now)

    def _admit(self, e: Any, now: float) -> bool:
        """Run the acquire-time gates on an entry popped from idle; False = discarded."""
        conn = e.conn
        need = self._check_always or (self._test_before_acquire and e.check_due)
        if not need and self._has_needs_check:
            try:
                need = self._driver.needs_check(e, now)
            except Exception as exc:
                self._reject(e, "needs_health_check raised", exc)
                return False
        if need:
            try:
                self._driver.check(conn)
            except Exception as exc:
                with self._lock:
                    self._counters["health_checks"] += 1
                    self._counters["health_check_failures"] += 1
                self._last_error, self._last_error_at = exc, monotonic()
                self._reject(e, "health check failed", exc)
                return False
            except BaseException:
                self._discard(e)
                raise
            e.flagged = False
            with self._lock:
                self._counters["health_checks"] += 1
        hook = self._before_acquire
        if hook is not None:
            try:
                ok = hook(conn, ConnectionMetadata(now - e.created_at, now - e.last_used))
            except Exception as exc:
                self._reject(e, "before_acquire raised", exc)
                return False
            except BaseException:
                self._discard(e)
                raise
            if not ok:
                with self._lock:
                    self._counters["before_acquire_rejections"] += 1
                self._discard(e)
                return False
        return True

    def _reject(self, e: Any, why: str, exc: BaseException) -> None:
        logger.warning("%s: %s, closing the connection: %s", self._name, why, self._driver.redact(str(exc)))
        self._discard(e)

    # -- release ---------------------------------------------------------------------

    def _finish_put(self, e: Any, ok: bool) -> None:
        """The end of a ``connection()`` block off the fast path: commit or roll back, then ``_put``."""
        if self._has_finish:
            try:
                self._driver.finish(e.conn, ok)
            except Exception as fexc:
                self._put(e)
                if ok:
                    raise
                logger.debug("%s: rollback after an error failed: %s", self._name, fexc)
                return
            except BaseException:
                self._discard(e)
                raise
        self._put(e)

    def _put(self, e: Any) -> None:
        """Return a borrowed entry: reset, after_release, then hand-off or idle."""
        conn = e.conn
        now = monotonic()
        keep = now < e.expires_at  # past max_lifetime: closed without after_release
        try:
            if keep and self._has_reset:
                keep = self._driver.reset(e)
            hook = self._after_release
            if keep and hook is not None:
                keep = bool(hook(conn, ConnectionMetadata(now - e.created_at, 0.0)))
                if not keep:
                    with self._lock:
                        self._counters["after_release_rejections"] += 1
        except Exception as exc:
            logger.warning(
                "%s: resetting a returned connection failed, closing it: %s",
                self._name,
                self._driver.redact(str(exc)),
            )
            keep = False
        except BaseException:
            self._discard(e)
            raise
        if not keep:
            with self._lock:
                self._counters["returns_bad"] += 1
            self._discard(e)
            return
        self._fast.give(e, now)

    def _put_raw(self, e: Any, now: float | None = None) -> None:
        self._fast.give(e, monotonic() if now is None else now)

    def _discard(self, e: Any) -> None:
        with self._lock:
            n = self._core.discard(e)
        self._close_conn(e.conn)
        if n:
            self._start_connects(n)

    def _close_conn(self, conn: Any) -> None:
        try:
            self._driver.close(conn)
        except Exception as exc:
            logger.debug("%s: error closing a connection: %s", self._name, self._driver.redact(str(exc)))

    def _close_doomed(self) -> None:
        with self._lock:
            doomed = self._core.take_doomed()
            n = self._core.plan_connects()
        for e in doomed:
            if e.locks_held:
                logger.error("%s: closing a connection that still holds a lock", self._name)
            self._close_conn(e.conn)
        if n:
            self._start_connects(n)

    def _orphaned(self, e: Any) -> None:
        """Finalizer path (R4): no I/O, no lock; a worker discards the entry."""
        try:
            self._maint.submit(lambda: self._discard(e))
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -- connects ----------------------------------------------------------------------

    def _start_connects(self, n: int) -> None:
        if not self._maint.running:
            with self._lock:
                for _ in range(n):
                    self._core.connect_failed()
            return
        for _ in range(n):
            self._maint.submit(self._connect_job)

    def _connect_job(self) -> None:
        if self._closed:
            with self._lock:
                self._core.connect_failed()
            return
        driver = self._driver
        started = monotonic()
        try:
            conn = driver.connect()
        except BaseException as exc:  # the reservation is given back on every path
            self._connect_failed(exc, driver.retryable(exc))
            if not isinstance(exc, Exception):
                raise
            return
        hook = self._after_connect
        if hook is not None:
            try:
                hook(conn, META_NEW)
            except BaseException as exc:
                self._close_conn(conn)
                self._connect_failed(exc, driver.hook_retryable(exc))
                if not isinstance(exc, Exception):
                    raise
                return
        try:
            data = driver.snapshot(conn)
        except Exception as exc:
            self._close_conn(conn)
            self._connect_failed(exc, False)
            return
        w = self._note_connect_done(conn, data, started)
        if w is not None:
            w.handle.release()
        if self._doomed:
            self._close_doomed()

    def _connect_failed(self, exc: BaseException, retry: bool) -> None:
        w, n, delay, gave_up = self._note_connect_failure(exc, retry)
        if gave_up and self._reconnect_failed is not None:
            try:
                self._reconnect_failed(self)
            except Exception:
                logger.exception("%s: error in reconnect_failed", self._name)
        if w is not None:
            w.handle.release()
        if n:
            self._maint.later(delay, lambda: self._start_connects(n))

    def _open_eager(self, timeout: float | None = None) -> None:
        """Open ``max(1, min_size)`` connections within ``timeout`` (``acquire_timeout``) or fail."""
        want = max(1, self._core.min_size)
        held: list[Any] = []
        deadline = monotonic() + (self._acquire_timeout if timeout is None else timeout)
        try:
            for _ in range(want):
                held.append(self._get(max(0.0, deadline - monotonic())))
        except BaseException as exc:
            for e in held:
                self._put_raw(e)
            self.close(0)
            if isinstance(exc, PoolTimeout):
                raise self._eager_open_error(exc, want) from exc.__cause__
            raise
        for e in held:
            self._put_raw(e)

    def _reap(self) -> None:
        """Reaper tick: close expired idle connections and dead ones, then top up."""
        self._mark_reapable()
        self._close_doomed()


def _reaper_job(ref: weakref.ReferenceType[BasePool[Any]]) -> Callable[[], None]:
    def job() -> None:
        pool = ref()
        if pool is None or pool._closed:
            return
        try:
            pool._reap()
        finally:
            if pool._reap_interval is not None:
                pool._maint.later(pool._reap_interval, job)

    return job


class PooledConnection(PooledBase[C]):
    """A checked-out connection: use ``.connection``, give it back with ``release()``.

    As a context manager it yields the raw connection and releases it on exit.
    One garbage-collected without release is reclaimed (``ResourceWarning``).
    """

    __slots__ = ()

    def release(self) -> None:
        """Give the connection back to the pool (reset, then reuse)."""
        self._pool._put(self._take())

    def close(self) -> None:
        """Close the connection instead of returning it; its slot is freed."""
        self._pool._discard(self._take())

    def __enter__(self) -> C:
        return self.connection

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._entry is not None:
            self.release()


class Pool(BasePool[psycopg.Connection[Any]]):
    """A threaded pool of psycopg 3 connections.

    ``Pool("host=127.0.0.1 dbname=test user=postgres")`` opens at least one
    connection before returning (``open=False``, or :meth:`connect_lazy`,
    returns at once and connects in the background).  Options (sqlx
    ``PoolOptions`` semantics; invalid values raise ``ValueError`` or
    ``TypeError`` naming the option):

    * ``min_size`` / ``max_size``: the floor kept open by the workers and the
      hard cap on idle + in use + connecting;
    * ``acquire_timeout``: one deadline per acquire spanning queueing,
      connecting and checking;
    * ``max_lifetime`` (with -5 % per-connection jitter) and ``idle_timeout``
      (never reaps below ``min_size``); ``None`` disables either;
    * ``test_before_acquire`` with ``verify_after``: an idle connection that
      sat ``verify_after`` seconds or more gets an empty-query round trip
      before it is handed out; a socket-readability probe, with no I/O,
      catches a terminated backend at every hand-out;
    * ``after_connect(conn, meta)``, ``before_acquire(conn, meta) -> bool``,
      ``after_release(conn, meta) -> bool`` hooks;
    * ``queue_mode`` "lifo" (default: a hot set, the cold tail ages out) or
      "fifo"; ``max_waiting`` (0 = unbounded) before ``TooManyRequests``;
    * ``num_workers`` threads open connections, with backoff, for the pool.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        kwargs: dict[str, Any] | None = None,
        connection_class: type[psycopg.Connection[Any]] = psycopg.Connection,
        recycle: Recycle = Recycle.FAST,
        **options: Unpack[PoolSettings],
    ) -> None:
        if not isinstance(recycle, Recycle):
            raise TypeError(f"recycle must be a fastpool.Recycle, got {type(recycle).__name__}")
        if recycle == Recycle.CLEAN and options.get("after_connect") is not None:
            logger.info(
                "recycle=CLEAN runs RESET ALL at every return: settings made with SET in after_connect "
                "are undone; put session settings in the connection parameters instead"
            )
        super().__init__(partial(PsycopgDriver, conninfo, kwargs, connection_class, recycle), **options)

    @property
    def recycle(self) -> Recycle:
        """The recycling method (``Recycle.FAST`` unless given)."""
        return self._driver.recycle  # type: ignore[attr-defined, no-any-return]

    def clear_prepared(self) -> None:
        """Deallocate the prepared statements of every pooled connection.

        Idle connections are cleared now (``DEALLOCATE ALL``, which psycopg
        also applies to its own cache); connections in use are cleared when
        they come back.  Use it after DDL that would make other connections
        fail with "cached plan must not change result type".
        """
        self._driver.epoch += 1  # type: ignore[attr-defined]
        self._fast.epoch = self._driver.epoch  # type: ignore[attr-defined]
        for e in self._take_idle():
            self._put(e)  # the reset sees the new epoch and deallocates
        if self._doomed:
            self._close_doomed()

    @classmethod
    def connect(cls, conninfo: str = "", **options: Any) -> Pool:
        """Create a pool and open ``max(1, min_size)`` connections now (sqlx ``connect``)."""
        options["open"] = True
        return cls(conninfo, **options)

    @classmethod
    def connect_lazy(cls, conninfo: str = "", **options: Any) -> Pool:
        """Create a pool that connects in the background (sqlx ``connect_lazy``)."""
        options["open"] = False
        return cls(conninfo, **options)

    def __enter__(self) -> Pool:
        return self

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection inside ``conn.transaction()`` (commit or roll back)."""
        with self.connection(timeout) as conn, conn.transaction():
            yield conn


class ResourcePool(BasePool[C]):
    """A threaded pool of any :class:`fastpool.Resource` (seed 003).

    ``ResourcePool(MyResource, ctx, max_size=4)``: the pool calls
    ``MyResource.create(ctx)`` from its worker threads, asks
    ``needs_health_check(ctx, meta)`` (when the class defines it) before each
    hand-out from idle, runs ``health_check(ctx)`` when that says so or when
    ``test_before_acquire`` and ``verify_after`` call for it, and ``close()``
    when a resource is dropped.  Options as :class:`Pool`.
    """

    def __init__(self, resource_cls: Any, ctx: Any = None, **options: Unpack[PoolSettings]) -> None:
        super().__init__(lambda _timeout: ResourceDriver(resource_cls, ctx), **options)

    def __enter__(self) -> ResourcePool[C]:
        return self


class PoolSettings(TypedDict, total=False):
    """The options shared by :class:`Pool` and :class:`ResourcePool` (defaults on ``BasePool``)."""

    min_size: int
    max_size: int
    acquire_timeout: float
    max_lifetime: float | None
    idle_timeout: float | None
    test_before_acquire: bool
    verify_after: float
    after_connect: Hook | None
    before_acquire: Hook | None
    after_release: Hook | None
    queue_mode: Literal["lifo", "fifo"]
    max_waiting: int
    num_workers: int
    open: bool
    name: str | None


for _cls in (BasePool, Pool, ResourcePool, PooledConnection):
    _cls.__module__ = "fastpool"
