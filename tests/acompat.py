"""Paired helpers for the tests written once for asyncio (``*_async.py``) and generated for threads.

``tools/async_to_sync.py`` maps each ``foo_async`` to ``foo`` and drops tests
decorated with :func:`skip_sync` (asyncio-only behaviour: cancellation, loops).
Workers are tasks on one side and threads on the other.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = [
    "AsyncEvent",
    "Event",
    "gather",
    "gather_async",
    "off_loop",
    "off_loop_async",
    "run_all",
    "run_all_async",
    "skip_sync",
    "sleep",
    "sleep_async",
    "spawn",
    "spawn_async",
    "wait_until",
    "wait_until_async",
]

F = TypeVar("F", bound=Callable[..., Any])

AsyncEvent = asyncio.Event
Event = threading.Event
sleep_async = asyncio.sleep
sleep = time.sleep


def skip_sync(fn: F) -> F:
    """Mark an async test as asyncio-only: the generator leaves it out of the sync tests."""
    return fn


async def off_loop_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Run the blocking ``fn(*args)`` in a thread, so that the loop keeps running meanwhile."""
    return await asyncio.to_thread(fn, *args)


def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run the blocking ``fn(*args)`` (the threaded counterpart of ``off_loop_async``)."""
    return fn(*args)


def spawn_async(fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Task[Any]:
    """Start ``fn(*args)`` in a task."""
    return asyncio.ensure_future(fn(*args))


class _Worker(threading.Thread):
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self._args = args
        self.error: BaseException | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = self._fn(*self._args)
        except BaseException as exc:
            self.error = exc


def spawn(fn: Callable[..., Any], *args: Any) -> _Worker:
    """Start ``fn(*args)`` in a thread."""
    t = _Worker(fn, args)
    t.start()
    return t


async def gather_async(*tasks: Any, timeout: float = 120.0) -> list[Any]:
    """Wait for every task; re-raise the first error; fail if one is still running at ``timeout``."""
    return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout))


def gather(*threads: _Worker, timeout: float = 120.0) -> list[Any]:
    """Wait for every thread; re-raise the first error; fail if one is still running at ``timeout``."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a worker is stuck"
    for t in threads:
        if t.error is not None:
            raise t.error
    return [t.result for t in threads]


async def run_all_async(fn: Callable[[int], Awaitable[Any]], n: int, timeout: float = 120.0) -> None:
    """Run ``fn(i)`` for ``i`` in ``range(n)`` at once, as tasks."""
    await gather_async(*(spawn_async(fn, i) for i in range(n)), timeout=timeout)


def run_all(fn: Callable[[int], Any], n: int, timeout: float = 120.0) -> None:
    """Run ``fn(i)`` for ``i`` in ``range(n)`` at once, as threads."""
    gather(*(spawn(fn, i) for i in range(n)), timeout=timeout)


async def wait_until_async(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` passes (letting the loop run); its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return bool(v)
        await asyncio.sleep(interval)


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return bool(v)
        time.sleep(interval)
