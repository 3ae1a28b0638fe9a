"""asyncio-only helpers of the async sources (the threaded modules have no counterpart).

``tools/async_to_sync.py`` drops the imports of this module from the sync
output and turns ``AwaitableContext(fn, *args)`` into ``fn(*args)``.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["AwaitableContext", "resume", "run_eagerly"]

T = TypeVar("T")


class AwaitableContext(Generic[T]):
    """Both spellings of one call: ``await x`` gives ``await make(*args)``; ``async with x`` enters it.

    ``async with pool.acquire() as conn`` therefore means ``async with (await
    pool.acquire()) as conn``, as the threaded ``with pool.acquire() as conn``.
    """

    __slots__ = ("_args", "_make", "_obj")

    def __init__(self, make: Callable[..., Awaitable[T]], *args: Any) -> None:
        self._make = make
        self._args = args
        self._obj: Any = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._make(*self._args).__await__()

    async def __aenter__(self) -> Any:
        obj: Any = await self._make(*self._args)
        self._obj = obj
        return await obj.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        obj, self._obj = self._obj, None
        if obj is not None:
            return await obj.__aexit__(exc_type, exc, tb)
        return None


def run_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` here until it first waits; None if it finished, else a task running the rest.

    What ``asyncio``'s eager tasks (3.12) do, on every version: a coroutine that
    never waits (a reset with nothing to send, a no-op hook) costs no task and no
    loop turn, and the part before its first wait runs in the caller's turn, in
    order.  An exception raised before that first wait propagates to the caller.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return loop.create_task(_rest(coro, waiting_on))


async def _rest(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """A native coroutine for the task: since 3.12, tasks refuse generator-based coroutines."""
    return await resume(coro, waiting_on)


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """The rest of a coroutine started by hand, which now waits on ``waiting_on``, as an
    awaitable: whoever awaits it (a task) waits for that, resumes the coroutine as a task would
    (``send(None)``), and throws a cancellation into it."""
    while True:
        try:
            yield waiting_on
        except BaseException as exc:  # (the task was cancelled): the coroutine gets it where it waits
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            return done.value
