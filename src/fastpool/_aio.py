"""asyncio-only helpers of the async sources (the threaded modules have no counterpart).

``tools/async_to_sync.py`` drops the imports of this module from the sync
output and turns ``AwaitableContext(fn, *args)`` into ``fn(*args)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["AwaitableContext"]

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
