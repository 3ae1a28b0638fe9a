"""Pooling any resource: the ``Resource`` protocol and its driver.

A resource class implements four methods:

* ``create(ctx)`` (classmethod) opens a new resource;
* ``needs_health_check(ctx, meta)`` is a cheap test, with no I/O, that says
  whether the expensive check must run before the resource is handed out;
* ``health_check(ctx)`` is the expensive check: it raises to reject;
* ``close()`` releases the resource.

``ctx`` is the same object for every call, passed as given to the pool.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from ._meta import ConnectionMetadata

__all__ = ["AsyncResource", "BaseResource", "Resource"]

Ctx = TypeVar("Ctx", contravariant=True)
R = TypeVar("R")


@runtime_checkable
class Resource(Protocol[Ctx]):
    """What a pooled resource provides; see the module docstring."""

    @classmethod
    def create(cls, ctx: Ctx) -> Any:
        """Open and return a new resource; raise on failure.

        ``OSError`` (refused, reset, timed out) is retried with backoff within
        the acquirer's deadline; any other exception fails the acquirer at once.
        """
        ...

    def needs_health_check(self, ctx: Ctx, meta: ConnectionMetadata) -> bool:
        """Say, cheaply and without I/O, whether ``health_check`` must run now."""
        ...

    def health_check(self, ctx: Ctx) -> None:
        """Check the resource; raise any exception to have it closed and replaced."""
        ...

    def close(self) -> None:
        """Release the resource; called once, when the pool drops it."""
        ...


@runtime_checkable
class AsyncResource(Protocol[Ctx]):
    """:class:`Resource` for the asyncio pools: ``create``, ``health_check`` and ``close`` are async.

    ``needs_health_check`` stays synchronous: it must be cheap and do no I/O.
    """

    @classmethod
    async def create(cls, ctx: Ctx) -> Any:
        """Open and return a new resource; raise on failure (``OSError`` is retried)."""
        ...

    def needs_health_check(self, ctx: Ctx, meta: ConnectionMetadata) -> bool:
        """Say, cheaply and without I/O, whether ``health_check`` must run now."""
        ...

    async def health_check(self, ctx: Ctx) -> None:
        """Check the resource; raise any exception to have it closed and replaced."""
        ...

    async def close(self) -> None:
        """Release the resource; called once, when the pool drops it."""
        ...


class BaseResource(Generic[R]):
    """Convenience base: no health check needed, nothing to close (sync or async pools).

    Subclasses override what they need; the pool skips the call to
    ``needs_health_check`` altogether when it is not overridden.
    """

    def needs_health_check(self, ctx: Any, meta: ConnectionMetadata) -> bool:
        """Never ask for a health check."""
        return False

    def health_check(self, ctx: Any) -> None:
        """Accept the resource."""

    def close(self) -> None:
        """Do nothing."""


class Driver:
    """What the pool shells need from a kind of connection (internal).

    ``has_needs_check`` and ``has_reset`` let the pools skip calls that would
    do nothing, keeping them off the per-borrow path.
    """

    has_needs_check: ClassVar[bool] = True
    has_reset: ClassVar[bool] = False
    has_finish: ClassVar[bool] = False

    def connect(self) -> Any:
        """Open a new connection (awaitable in the asyncio drivers)."""
        raise NotImplementedError

    def close(self, conn: Any) -> Any:
        """Close ``conn``; never raises (awaitable in the asyncio drivers)."""
        raise NotImplementedError

    def needs_check(self, entry: Any, now: float) -> bool:
        """Cheap, I/O-free: must ``check`` run before handing out ``entry.conn``?

        ``entry`` is the core's record of the connection (``conn``,
        ``created_at``, ``last_used``, and ``data`` for the driver's own use).
        """
        return False

    def check(self, conn: Any) -> Any:
        """Expensive health check; raise to reject (awaitable in the asyncio drivers)."""

    def idle_dead(self, entry: Any) -> bool:
        """Cheap, I/O-free, run by the reaper on idle connections: is ``entry.conn`` unusable?"""
        return False

    def forget(self, conn: Any) -> None:
        """In a forked child: let go of an inherited connection without touching the server.

        The parent keeps using the connection; the child must send nothing on it.
        """

    def interrupt(self, conn: Any) -> bool:
        """Make I/O in progress on ``conn`` fail at once (its deadline passed); never blocks.

        Called from a timer thread or loop callback while another thread or task may be
        using ``conn``; the connection is closed afterwards, never reused.  Returns False
        when this kind of connection cannot be interrupted.
        """
        return False

    always_check: bool = False  # check() at every hand-out from idle (VERIFIED)
    transaction_pooling: bool = False  # the server side keeps no session between transactions
    pool: Any = None  # a weak reference to the pool using this driver, set by the pool
    log: logging.Logger = logging.getLogger("fastpool")  # where the driver logs: its pool's logger

    def snapshot(self, conn: Any) -> Any:
        """Return the driver's state for a new connection (stored as ``entry.data``)."""
        return None

    def reset(self, entry: Any) -> Any:
        """Make a returned connection reusable; False (or raising) discards it (awaitable in asyncio)."""
        return True

    def reset_now(self, entry: Any) -> int:
        """The I/O-free part of the reset: 0 discard, 1 done, 2 ``reset`` must run."""
        return 2

    def finish_action(self, conn: Any, ok: bool) -> int:
        """What ending ``pool.connection()`` needs: 0 nothing, 1 commit, 2 roll back."""
        return 0

    def finish(self, conn: Any, ok: bool) -> Any:
        """End the block of ``pool.connection()``: commit if ok, else roll back (awaitable in asyncio)."""

    def connect_error(self, exc: BaseException) -> BaseException:
        """The error an acquirer gets for a failed connect not worth retrying (a new object)."""
        return exc

    def safe_error(self, exc: BaseException | None) -> BaseException | None:
        """``exc``, or a copy of it without secrets in its text, to chain as a cause."""
        return exc

    def retryable(self, exc: BaseException) -> bool:
        """Is a failed connect worth retrying (within the acquirer's deadline)?"""
        return isinstance(exc, OSError)

    def hook_retryable(self, exc: BaseException) -> bool:
        """Is a failure of ``after_connect`` worth a new connect?"""
        return isinstance(exc, OSError)

    def describe(self) -> str:
        """Where connections go, for messages (never a password)."""
        return "resource"

    def redact(self, text: str) -> str:
        """Remove secrets from ``text`` before it is logged or raised."""
        return text


class ResourceDriver(Driver):
    """Adapts a :class:`Resource` class and its context to the pool."""

    def __init__(self, resource_cls: Any, ctx: Any) -> None:
        if not callable(getattr(resource_cls, "create", None)):
            raise TypeError("resource_cls must have a create(ctx) classmethod")
        self.resource_cls = resource_cls
        self.ctx = ctx
        nhc = getattr(resource_cls, "needs_health_check", None)
        self.has_needs_check = nhc is not None and nhc is not BaseResource.needs_health_check  # type: ignore[misc]

    def connect(self) -> Any:
        return self.resource_cls.create(self.ctx)

    def close(self, conn: Any) -> Any:
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    def needs_check(self, entry: Any, now: float) -> bool:
        meta = ConnectionMetadata(now - entry.created_at, now - entry.last_used)
        return bool(entry.conn.needs_health_check(self.ctx, meta))

    def check(self, conn: Any) -> Any:
        conn.health_check(self.ctx)

    def interrupt(self, conn: Any) -> bool:
        fn = getattr(conn, "interrupt", None)
        if fn is None:
            return False
        fn()
        return True

    def describe(self) -> str:
        return getattr(self.resource_cls, "__qualname__", "resource")


class AsyncResourceDriver(ResourceDriver):
    """Adapts an :class:`AsyncResource` class and its context to the asyncio pools."""

    async def connect(self) -> Any:
        return await self.resource_cls.create(self.ctx)

    async def close(self, conn: Any) -> None:
        close = getattr(conn, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result

    async def check(self, conn: Any) -> None:
        result = conn.health_check(self.ctx)
        if hasattr(result, "__await__"):
            await result
