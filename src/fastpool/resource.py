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

from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

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
