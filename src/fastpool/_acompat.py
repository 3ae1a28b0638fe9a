"""The paired names that let one asyncio source serve the threaded pools too.

fastpool's pool code is written once, for asyncio (``*_async.py``), and
``tools/async_to_sync.py`` generates the threaded modules from it, mapping
``AsyncFoo`` to ``Foo`` and ``foo_async`` to ``foo``.  This module holds both
sides of every pair whose behaviour differs beyond ``await``:

=====================  ========================================================
asyncio                threads
=====================  ========================================================
``AsyncRunner``        ``Runner``: background jobs (tasks / worker threads),
                       timers, and a finalizer-safe ``soon``
``AsyncLock``          ``Lock``: mutual exclusion across waits
``AsyncRLock``         ``RLock``: the same, re-entrant for its holder (task / thread)
``AsyncEvent``         ``Event``
``AsyncHandOff``       ``HandOff``: one value handed to one waiter, with timeout
``sleep_async``        ``sleep``
``wake_async``         ``wake``: wake a waiter of the pool core
``AsyncWaiting``       ``Waiting``: the queued callers of a pool: their handles,
                       their waits, their deadlines
``phase_async``        ``phase``: run one I/O step on a connection by a deadline
``maybe_await(x)``     ``x``: a hook that may be a plain or an async callable
=====================  ========================================================
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from math import inf as INF
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

__all__ = [
    "AsyncEvent",
    "AsyncHandOff",
    "AsyncLock",
    "AsyncRLock",
    "AsyncRunner",
    "AsyncWaiting",
    "Event",
    "HandOff",
    "Lock",
    "RLock",
    "Runner",
    "Waiting",
    "maybe_await",
    "phase",
    "phase_async",
    "sleep",
    "sleep_async",
    "wake",
    "wake_async",
]

logger = logging.getLogger("fastpool")

T = TypeVar("T")
Job = Callable[..., Any]

AsyncLock = asyncio.Lock
Lock = threading.Lock
AsyncEvent = asyncio.Event
Event = threading.Event
sleep_async = asyncio.sleep
sleep = time.sleep
TIMEOUT_MAX = threading.TIMEOUT_MAX  # a lock wait longer than this raises OverflowError


async def maybe_await(value: Any) -> Any:
    """Return ``value``, awaited first if it is awaitable (the result of a plain or async hook)."""
    if inspect.isawaitable(value):
        return await value
    return value


def wake_async(w: Any) -> None:
    """Wake a waiter of the pool core whose handle is a future (served, failed or timed out)."""
    fut = w.handle
    if not fut.done():
        fut.set_result(None)


def wake(w: Any) -> None:
    """Wake a waiter of the pool core whose handle is a held lock."""
    w.handle.release()


def _held_lock() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


class AsyncRLock:
    """A lock that the task holding it may take again (``async with`` nests)."""

    __slots__ = ("_depth", "_lock", "_owner")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    def locked(self) -> bool:
        """True while some task holds it."""
        return self._lock.locked()

    async def acquire(self) -> bool:
        """Take the lock, waiting for another holder to release it."""
        me = asyncio.current_task()
        if self._owner is me and me is not None:
            self._depth += 1
            return True
        await self._lock.acquire()
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        """Release one level; the last one frees the lock."""
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RLock:
    """A lock that the thread holding it may take again (``with`` nests)."""

    __slots__ = ("_depth", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0

    def locked(self) -> bool:
        """True while some thread holds it."""
        return self._depth > 0

    def acquire(self) -> bool:
        """Take the lock, waiting for another holder to release it."""
        self._lock.acquire()
        self._depth += 1
        return True

    def release(self) -> None:
        """Release one level; the last one frees the lock."""
        self._depth -= 1
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- one value handed to one waiter ---------------------------------------------------------


class AsyncHandOff(Generic[T]):
    """One value handed to one waiting task: ``give`` once, ``wait`` with a timeout.

    ``give`` returns False when the waiter already gave up (timed out or
    withdrew with ``withdraw``), so the giver can pass the value on;
    ``withdraw`` returns False when a value was already given, so the
    waiter can pass it on.  Call both on the waiter's loop.
    """

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()

    def give(self, value: T) -> bool:
        """Hand ``value`` over; False if the waiter is gone."""
        if self._fut.done():
            return False
        self._fut.set_result(value)
        return True

    def withdraw(self) -> bool:
        """Stop waiting; False if a value was already given (it is then the caller's)."""
        if self._fut.done():
            return self._fut.result() is None
        self._fut.set_result(None)
        return True

    @property
    def value(self) -> T | None:
        """The value given, or None."""
        return self._fut.result() if self._fut.done() else None

    async def wait(self, timeout: float) -> T | None:
        """Wait up to ``timeout`` seconds for the value; None if none came (the wait is withdrawn)."""
        fut = self._fut
        if not fut.done():
            timer = fut.get_loop().call_later(timeout, self.withdraw) if timeout < float("inf") else None
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()
        return fut.result()


class HandOff(Generic[T]):
    """:class:`AsyncHandOff` for threads: ``give`` may come from any thread."""

    __slots__ = ("_done", "_mutex", "_value", "_wakeup")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._wakeup = _held_lock()
        self._done = False
        self._value: T | None = None

    def give(self, value: T) -> bool:
        """Hand ``value`` over; False if the waiter is gone."""
        with self._mutex:
            if self._done:
                return False
            self._done = True
            self._value = value
        self._wakeup.release()
        return True

    def withdraw(self) -> bool:
        """Stop waiting; False if a value was already given (it is then the caller's)."""
        with self._mutex:
            if self._done:
                return self._value is None
            self._done = True
            return True

    @property
    def value(self) -> T | None:
        """The value given, or None."""
        return self._value

    def wait(self, timeout: float) -> T | None:
        """Wait up to ``timeout`` seconds for the value; None if none came (the wait is withdrawn)."""
        if timeout > 0:
            self._wakeup.acquire(True, min(timeout, TIMEOUT_MAX))
        self.withdraw()
        return self._value


# -- the queued callers of a pool ----------------------------------------------------------------


class AsyncWaiting:
    """The callers queued in a pool's core, on asyncio: a future each, and one timer for them all.

    The core keeps its waiters in deadline order (``Waiter.deadline``); one
    loop timer, set for the earliest deadline, times out every waiter due
    (``core.expire``), wakes them, and is set again for the next.  No waiter
    has a timer handle of its own, so waiting costs the same per caller
    whether 10 or 50,000 wait.  Call everything on the pool's loop.
    """

    __slots__ = ("_at", "_core", "_lock", "_timer", "loop", "new_handle")

    #: the core times these waiters out (``Waiter.deadline``)
    timed = True

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._core: Any = None
        self._lock: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._at = INF  # when the timer fires
        #: a new waiter's handle: a future of the pool's loop (a C call: no Python frame)
        self.new_handle: Callable[[], Any] = asyncio.Future

    def bind(self, runner: AsyncRunner, core: Any, lock: Any) -> None:
        """Serve ``core`` (whose calls ``lock`` serialises) on ``runner``'s loop."""
        self.stop()
        self.loop = runner.loop
        self._core = core
        self._lock = lock
        self.new_handle = partial(asyncio.Future, loop=runner.loop)

    def wait(self, w: Any, until: float) -> Any:
        """What to await until ``w`` is served, failed or timed out (at ``until``, the core's
        ``w.deadline``): its future, once the timer is set for it."""
        if until < self._at:
            self._arm(until)
        return w.handle

    def _arm(self, at: float) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        # (call_later, not call_at: a loop's own clock need not be time.monotonic())
        self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._at = INF
        core = self._core
        if core is None:
            return
        expired = core.expire(time.monotonic())
        for w in expired:
            fut = w.handle
            if not fut.done():
                fut.set_result(None)
        nxt = core.next_deadline()
        if nxt < INF:
            self._arm(nxt)

    def stop(self) -> None:
        """Cancel the timer (the pool closed, or was rebuilt in a forked child)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._at = INF


class Waiting:
    """:class:`AsyncWaiting` for threads: a held lock each, which the waiting thread times itself.

    The core keeps no deadline for these waiters (``INF``): each thread's timed
    wait on its own lock is its timer, and it withdraws itself when it expires.
    """

    __slots__ = ()

    #: the core keeps no deadline for these waiters: each thread times itself out
    timed = False

    def bind(self, runner: Runner, core: Any, lock: Any) -> None:
        """Nothing to bind: threads need no loop."""

    @staticmethod
    def new_handle() -> Any:
        """A new waiter's handle: a lock held until the waiter is woken."""
        return _held_lock()

    def wait(self, w: Any, until: float) -> None:
        """Block until ``w`` is woken or ``until`` passes."""
        remaining = until - time.monotonic()
        if remaining > 0:
            w.handle.acquire(True, min(remaining, TIMEOUT_MAX))

    def stop(self) -> None:
        """Nothing to stop."""


# -- one I/O step on a connection, by a deadline ----------------------------------------------------


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a phase's outcome as retrieved: a caller that was cancelled never awaits it."""
    if not task.cancelled():
        task.exception()


async def phase_async(
    runner: AsyncRunner, interrupt: Callable[[Any], bool], conn: Any, deadline: float, fn: Job, *args: Any
) -> Any:
    """Run ``fn(*args)``, which does I/O on ``conn``, and return its result, by ``deadline``.

    Past the deadline ``interrupt(conn)`` shuts the connection's socket: the I/O
    fails at once, nothing more is sent on a path that may be dead, and the caller
    closes the connection.  ``fn`` runs in a task of its own, so that cancelling
    the caller does not make the driver send a cancel request and wait for its
    answer: the socket is shut instead and the cancellation completes at once.
    The task's outcome is always retrieved, whoever gave up on it.  ``fn`` may be
    a plain or a coroutine function.
    """
    alarm = runner.alarm(deadline - time.monotonic(), interrupt, conn)
    try:
        loop = runner.loop
        assert loop is not None
        task = loop.create_task(maybe_await(fn(*args)))
        task.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                if not interrupt(conn):  # the phase ends at once ...
                    task.cancel()  # (a resource that cannot be interrupted: cancel it)
                await asyncio.wait([task])  # ... and lets go of the connection
            raise
    finally:
        alarm.cancel()


def phase(
    runner: Runner, interrupt: Callable[[Any], bool], conn: Any, deadline: float, fn: Job, *args: Any
) -> Any:
    """Run ``fn(*args)``, which does I/O on ``conn``, and return its result, by ``deadline``.

    Past the deadline ``interrupt(conn)`` (from the timer thread) shuts the
    connection's socket: the I/O fails at once and the caller closes the
    connection.
    """
    alarm = runner.alarm(deadline - time.monotonic(), interrupt, conn)
    try:
        return fn(*args)
    finally:
        alarm.cancel()


# -- background jobs --------------------------------------------------------------------------


class AsyncRunner:
    """The background work of an asyncio pool: tasks and timers on the pool's loop.

    ``start`` binds it to the running loop.  ``spawn`` runs a coroutine
    function in a task; ``later`` runs a function (plain or coroutine) after
    a delay; ``soon`` does the same at once and is safe to call from any
    thread and from finalizers.  ``stop`` cancels what is cancellable and
    waits for the rest; jobs spawned with ``keep=True`` (closing connections)
    are never cancelled, and run even after ``stop`` while the loop lives.
    """

    def __init__(self, name: str, num_workers: int) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.slots = asyncio.Semaphore(num_workers)  # connects at once
        self._tasks: set[asyncio.Task[Any]] = set()
        self._kept: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._stopped = False

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self.loop is not None and not self._stopped

    def start(self, owner: object) -> None:
        """Bind to the running loop."""
        self.loop = asyncio.get_running_loop()

    def started_here(self) -> bool:
        """True when started, on the running loop (the caller's)."""
        return self.loop is not None and self.loop is asyncio.get_running_loop()

    def check_here(self, name: str) -> bool:
        """Whether it is started; ``RuntimeError`` when started on another loop than the caller's."""
        if self.loop is None:
            return False
        if self.loop is not asyncio.get_running_loop():
            raise RuntimeError(
                f"{name} is bound to another event loop: an asyncio pool is used from "
                "the loop it was first used in; create one pool per loop"
            )
        return True

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, keep: bool = False) -> None:
        """Run ``fn(*args)`` in a task of the loop (dropped if the loop is gone)."""
        loop = self.loop
        if loop is None or loop.is_closed() or (self._stopped and not keep):
            return
        task: asyncio.Task[Any] = loop.create_task(fn(*args))  # type: ignore[arg-type]
        tasks = self._kept if keep else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _run(self, fn: Job, args: tuple[Any, ...]) -> None:
        res = fn(*args)
        if inspect.iscoroutine(res):
            if self._stopped:
                res.close()
                return
            assert self.loop is not None
            task = self.loop.create_task(res)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def later(self, delay: float, fn: Job, *args: Any) -> None:
        """Run ``fn(*args)`` after ``delay`` seconds (dropped once stopped)."""
        loop = self.loop
        if loop is None or loop.is_closed() or self._stopped:
            return
        timers = self._timers
        handle: asyncio.TimerHandle

        def fire() -> None:
            timers.discard(handle)
            if not self._stopped:
                self._run(fn, args)

        handle = loop.call_later(delay, fire)
        timers.add(handle)

    def alarm(self, delay: float, fn: Job, *args: Any) -> Any:
        """Call ``fn(*args)`` after ``delay`` seconds unless the returned handle is cancelled first.

        ``fn`` must be quick and never wait: it runs as a loop callback.
        """
        loop = self.loop
        if loop is None or loop.is_closed():
            return _NO_ALARM
        return loop.call_later(delay, fn, *args)

    def soon(self, fn: Job, *args: Any) -> None:
        """Run ``fn(*args)`` on the loop as soon as possible; callable from any thread or finalizer."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._run, fn, args)
        except RuntimeError:  # pragma: no cover - the loop is closing
            pass

    async def stop(self, timeout: float) -> None:
        """Cancel the timers and the cancellable tasks; wait up to ``timeout`` for every task."""
        self._stopped = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        current = asyncio.current_task()
        for t in list(self._tasks):
            if t is not current:
                t.cancel()
        tasks = [t for t in (*self._tasks, *self._kept) if t is not current]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, timeout))

    def cancel(self) -> None:
        """Stop at once, from a plain function: cancel the timers and every task; nothing waits."""
        self._stopped = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        current = asyncio.current_task(loop) if loop.is_running() else None
        for t in (*self._tasks, *self._kept):
            if t is not current:
                t.cancel()


class Runner:
    """The background work of a threaded pool: ``num_workers`` threads and one timer thread.

    Same methods as :class:`AsyncRunner`.  ``spawn`` and ``soon`` only put on
    a ``SimpleQueue``, which takes no lock: safe from finalizers.  Before
    ``start`` and after ``stop``, ``spawn(..., keep=True)`` runs the job in
    the calling thread.  The threads are daemons and hold no reference to
    the pool while idle, so an abandoned pool can be collected.
    """

    def __init__(self, name: str, num_workers: int) -> None:
        self.name = name
        self.slots = threading.Semaphore(num_workers)  # connects at once
        #: a handle for a waiter of the pool core: a lock held until the waiter is woken
        self.new_handle: Callable[[], Any] = _held_lock
        self._num_workers = num_workers
        self._jobs: SimpleQueue[Callable[[], Any] | None] = SimpleQueue()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Timer]] = []
        self._cancelled = 0  # cancelled timers still in the heap (dropped in bulk)
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._started = False

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._started and not self._stopped

    def started_here(self) -> bool:
        """True when started."""
        return self._started

    def check_here(self, name: str) -> bool:
        """Whether it is started (any thread may use a threaded pool)."""
        return self._started

    def start(self, owner: object) -> None:
        """Start the threads (once); they stop when ``owner`` is garbage-collected."""
        if self._started:
            return
        self._started = True
        for i in range(self._num_workers):
            t = threading.Thread(
                target=_work, args=(self._jobs,), name=f"{self.name}-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._timer, name=f"{self.name}-timer", daemon=True)
        t.start()
        self._threads.append(t)
        weakref.finalize(owner, self.stop, 0.0)

    def spawn(self, fn: Job, *args: Any, keep: bool = False) -> None:
        """Run ``fn(*args)`` on a worker thread (in this thread when ``keep`` and no worker runs)."""
        if self.running:
            self._jobs.put(partial(fn, *args))
        elif keep:
            fn(*args)

    def soon(self, fn: Job, *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread; callable from finalizers (no lock is taken)."""
        self._jobs.put(partial(fn, *args))

    def later(self, delay: float, fn: Job, *args: Any) -> None:
        """Run ``fn(*args)`` on a worker after ``delay`` seconds (dropped once stopped)."""
        self._push(delay, _Timer(self, fn, args, False))

    def alarm(self, delay: float, fn: Job, *args: Any) -> _Timer:
        """Call ``fn(*args)`` after ``delay`` seconds unless the returned handle is cancelled first.

        ``fn`` runs on the timer thread itself (never delayed by busy workers), so it must be
        quick and never wait.
        """
        timer = _Timer(self, fn, args, True)
        self._push(delay, timer)
        return timer

    def _push(self, delay: float, timer: _Timer) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), timer))
            self._cond.notify()

    def cancel(self) -> None:
        """Stop without waiting for the threads (the jobs already queued still run)."""
        self.stop(0.0)

    def stop(self, timeout: float) -> None:
        """Stop the threads after the jobs already queued; wait up to ``timeout`` for them."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        for _ in range(self._num_workers):
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(max(0.0, deadline - time.monotonic()))

    def _timer(self) -> None:
        cond = self._cond
        heap = self._heap
        with cond:
            while not self._stopped:
                if self._cancelled > 64 and self._cancelled * 2 > len(heap):
                    heap[:] = [t for t in heap if not t[2].cancelled]
                    heapq.heapify(heap)
                    self._cancelled = 0
                if not heap:
                    cond.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    cond.wait(delay)
                    continue
                timer = heapq.heappop(heap)[2]
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
                timer.cancelled = True  # ran: a late cancel() is a no-op
                fn, args = timer.fn, timer.args
                if fn is None:  # cancelled meanwhile (cancel() takes no lock)
                    continue
                if timer.direct:
                    try:
                        fn(*args)
                    except Exception:  # pragma: no cover - alarms are simple callbacks
                        logger.exception("fastpool: error in a timer callback")
                else:
                    self._jobs.put(partial(fn, *args))


class _Timer:
    """A pending call of :class:`Runner`'s timer thread; ``cancel()`` drops it."""

    __slots__ = ("args", "cancelled", "direct", "fn", "runner")

    def __init__(self, runner: Runner, fn: Job, args: tuple[Any, ...], direct: bool) -> None:
        self.runner = runner
        self.fn: Job | None = fn
        self.args = args
        self.direct = direct
        self.cancelled = False

    def cancel(self) -> None:
        """Drop the call if it has not run yet (and what it refers to: the heap may keep the
        timer a while, and must not keep a pool alive)."""
        if not self.cancelled:
            self.cancelled = True
            self.fn = None
            self.args = ()
            self.runner._cancelled += 1


class _NoAlarm:
    """The handle of an alarm that was never set (no loop)."""

    __slots__ = ()

    def cancel(self) -> None:
        """Nothing to cancel."""


_NO_ALARM = _NoAlarm()


def _work(jobs: SimpleQueue[Callable[[], Any] | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            job()
        except Exception:
            logger.exception("fastpool: error in a background job")
        del job
