"""What the threaded and the asyncio pools share: options, core, counters, errors.

Everything here is bookkeeping: no waiting, no I/O.  ``self._lock`` is a
``threading.Lock`` in the threaded pool and a no-op in the asyncio pool
(where the event loop serialises every core call).
"""

from __future__ import annotations

import itertools
import logging
import warnings
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any, Generic, Literal, TypeVar

from . import _impl
from ._meta import ConnectionMetadata
from ._validate import check_count, check_options
from .errors import PoolClosed, PoolTimeout, WrongPoolError
from .resource import Driver

__all__ = ["BACKOFF_INITIAL", "BACKOFF_MAX", "C", "Hook", "NoLock", "PoolBase", "PooledBase"]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
Hook = Callable[[Any, ConnectionMetadata], Any]

BACKOFF_INITIAL = 0.01
BACKOFF_MAX = 1.0
_names = itertools.count(1)


class NoLock:
    """A lock that does nothing: the asyncio pool's core calls never interleave."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Return True at once."""
        return True

    def release(self) -> None:
        """Do nothing."""

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None


class PoolBase(Generic[C]):
    """State and bookkeeping common to every pool shell (internal)."""

    _fast: Any  # the core's FastPath / AsyncFastPath, made by the subclass

    def __init__(
        self,
        make_driver: Callable[[float], Driver],
        lock: Any,
        *,
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
        name: str | None = None,
    ) -> None:
        self._closed = True  # until started: __del__/close stay harmless
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
        )
        check_count("num_workers", num_workers, 1)
        self._name = str(name) if name is not None else f"pool-{next(_names)}"
        self._driver = driver = make_driver(self._acquire_timeout)
        driver.pool = weakref.ref(self)
        self._test_before_acquire = bool(test_before_acquire)
        self._after_connect = after_connect
        self._before_acquire = before_acquire
        self._after_release = after_release
        self._lock = lock
        self._num_workers = num_workers
        core_mod = _impl.core
        self._core_mod = core_mod
        self._waiter_cls = core_mod.Waiter
        self._core = core_mod.PoolCore(
            max_size,
            min_size,
            max_lifetime,
            idle_timeout,
            verify_after,
            queue_mode == "lifo",
            max_waiting,
            id(self) ^ int(monotonic() * 1e9),
        )
        self._doomed = self._core.doomed
        self._has_reset = driver.has_reset
        self._has_finish = driver.has_finish
        self._has_needs_check = driver.has_needs_check
        self._fast_probe = bool(getattr(driver, "fast_probe", False))  # needs_check is the socket probe
        # _admit must run for every hand-out from idle when a probe, a hook or
        # VERIFIED exists; otherwise only when the core's gate says a check is due
        self._check_always = driver.always_check
        self._lent: dict[int, Any] = {}
        self._backoff = BACKOFF_INITIAL
        self._last_error: BaseException | None = None
        self._last_error_at = 0.0
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
            ),
            0,
        )
        reap_every = [t for t in (idle_timeout, max_lifetime) if t is not None]
        self._reap_interval = max(0.5, min(reap_every) / 2) if reap_every else None
        self._reconnect_timeout: float | None = None
        self._reconnect_failed: Callable[[Any], None] | None = None
        self._failing_since: float | None = None
        self._opened = False
        self._leaders: dict[Any, weakref.ReferenceType[Any]] = {}  # live leadership guards by key
        self._dedicated = 0  # connections opened for leadership outside max_size
        self._ownerships: weakref.WeakSet[Any] = weakref.WeakSet()  # revoked when the pool closes

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
        if self._after_release is not None:
            put_mode = core_mod.PUT_SLOW
        elif self._has_finish or self._has_reset:
            put_mode = core_mod.PUT_PSYCOPG if getattr(driver, "fast_return", False) else core_mod.PUT_SLOW
        else:
            put_mode = core_mod.PUT_PLAIN
        return get_mode, put_mode

    def _must_admit(self, e: Any, now: float) -> bool:
        """Whether ``_admit`` has anything to do for ``e``: the fast path's gates, no I/O but a probe."""
        return not self._fast.ready(e, now)

    @property
    def name(self) -> str:
        """The pool's name (for logs and reprs)."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def max_size(self) -> int:
        """The most connections the pool will hold at once."""
        return int(self._core.max_size)

    @property
    def min_size(self) -> int:
        """The number of connections the pool keeps open."""
        return int(self._core.min_size)

    def stats(self) -> dict[str, Any]:
        """Return a snapshot of gauges and counters (a new dict each call).

        Gauges: ``size`` (idle + in use + connecting, never above
        ``max_size``), ``idle``, ``in_use``, ``connecting``, ``waiting``.
        Counters: ``hits`` (served from idle without waiting), ``waits``,
        ``handoffs``, ``connects``, ``connect_failures``, ``expired``,
        ``discarded``, ``returns``, ``timeouts``, ``health_checks``... and
        ``requests`` (hits + waits).
        """
        with self._lock:
            s: dict[str, Any] = self._core.stats()
            s.update(self._counters)
        s["requests"] = s["hits"] + s["waits"]
        s["dedicated"] = self._dedicated
        s["name"] = self._name
        s["closed"] = self._closed
        return s

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._core.size}"
        return f"<fastpool.{type(self).__qualname__} {self._name!r} {state} at 0x{id(self):x}>"

    def _take_idle(self) -> list[Any]:
        """Check out every idle connection (expired ones are closed on the way)."""
        now = monotonic()
        taken = []
        with self._lock:
            while (e := self._core.acquire(now)) is not None:
                taken.append(e)
        return taken

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
        err.__cause__ = cause
        return err

    def _leaders_claim(self, lead: Any) -> bool:
        """Register ``lead`` as this process's holder of its key; False if another live guard is."""
        with self._lock:
            if self._closed and self._opened:
                raise self._closed_error()
            ref = self._leaders.get(lead.key)
            other = ref() if ref is not None else None
            if other is not None and other is not lead and other._state in (0, 1):
                return False
            self._leaders[lead.key] = weakref.ref(lead)
            return True

    def _leaders_drop(self, lead: Any) -> None:
        with self._lock:
            ref = self._leaders.get(lead.key)
            if ref is not None and ref() in (lead, None):
                del self._leaders[lead.key]

    def _note_connect_failure(self, exc: BaseException, retry: bool) -> tuple[Any, int, float, bool]:
        """Book a failed connect: (waiter to fail or None, connects to retry, backoff delay, gave up).

        ``gave up`` is True once per streak of failures longer than
        ``reconnect_timeout``.
        """
        now = monotonic()
        self._last_error, self._last_error_at = exc, now
        gave_up = False
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            elif self._reconnect_timeout is not None and now - self._failing_since > self._reconnect_timeout:
                self._failing_since = None  # a new streak starts; we keep trying with backoff
                gave_up = True
            w = None if retry else self._core.fail_waiter()
            if w is not None:
                w.error = exc
            n = self._core.connect_failed()
            delay = self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        logger.info(
            "%s: connecting to %s failed (%s): %s",
            self._name,
            self._driver.describe(),
            "will retry" if retry else "not retryable",
            self._driver.redact(str(exc).strip()),
        )
        if gave_up:
            logger.warning(
                "%s: connecting to %s has failed for more than %s s",
                self._name,
                self._driver.describe(),
                self._reconnect_timeout,
            )
        return w, n, delay, gave_up

    def _note_connect_done(self, conn: Any, data: Any, started: float) -> Any:
        """Book a new connection; return the waiter it was handed to, or None."""
        done = monotonic()
        with self._lock:
            w = self._core.connect_done(conn, done, data)
            self._backoff = BACKOFF_INITIAL
            self._failing_since = None
            self._counters["connect_ms"] += int((done - started) * 1000)
        return w

    def _mark_reapable(self) -> None:
        """Reaper tick, bookkeeping part: expired and dead idle entries go to ``doomed``."""
        probe = self._driver.idle_dead
        with self._lock:
            core = self._core
            core.reap(monotonic())
            dead = [e for e in core.idle_entries() if probe(e)]
            if dead:
                core.evict(dead)
                self._counters["dead_idle_closed"] += len(dead)
        if dead:
            logger.info("%s: closing %d idle connection(s) found dead", self._name, len(dead))

    def _eager_open_error(self, exc: PoolTimeout, want: int) -> PoolTimeout:
        """The error of an eager open that timed out: target, timeout and cause, no password."""
        cause = exc.__cause__
        detail = f": {self._driver.redact(str(cause).strip())}" if cause is not None else ""
        err = PoolTimeout(
            f"{self._name}: could not open {want} connection(s) to {self._driver.describe()} "
            f"within acquire_timeout={self._acquire_timeout:.3g} s{detail}"
        )
        err.__cause__ = cause
        return err


class PooledBase(Generic[C]):
    """What a checked-out connection object is, in both kinds of pool (internal base).

    A checked-out connection that is garbage-collected without being released
    frees its slot: the pool's own worker (thread or loop) closes the
    connection, and a ``ResourceWarning`` is emitted.  The finalizer does no
    I/O and takes no lock (R4).
    """

    __slots__ = ("_entry", "_pool", "connection")

    def __init__(self, pool: Any, entry: Any) -> None:
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

    def detach(self) -> C:
        """Take the connection out of the pool for good; the caller must close it."""
        e = self._take()
        pool = self._pool
        with pool._lock:
            n = pool._core.discard(e)
        if n:
            pool._start_connects(n)
        return self.connection

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
