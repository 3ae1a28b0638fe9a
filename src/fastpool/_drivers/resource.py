"""The driver of any :class:`fastpool.Resource` (and :class:`fastpool.AsyncResource`)."""

from __future__ import annotations

from typing import Any

from .._meta import ConnectionMetadata
from ..resource import BaseResource
from .base import Driver

__all__ = ["AsyncResourceDriver", "ResourceDriver"]


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
