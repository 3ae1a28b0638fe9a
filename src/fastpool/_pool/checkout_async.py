"""A checked-out connection of an asyncio pool: what ``acquire()`` returns.

The threaded pool's ``PooledConnection`` is generated from this module.
"""

from __future__ import annotations

import warnings
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic

from .._meta import ConnectionMetadata
from .._types import C
from ..errors import WrongPoolError

if TYPE_CHECKING:
    from .base_async import AsyncBasePool

__all__ = ["AsyncPooledConnection"]


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
        self._pool._detach(self._take())
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


AsyncPooledConnection.__module__ = "fastpool"
