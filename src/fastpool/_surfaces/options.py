"""``PoolOptions``: sqlx's ``PoolOptions``, with its names, building fastpool pools."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from .._pool.base import ResourcePool
from .._settings import PoolConfig
from .._types import AsyncConninfo, Conninfo, Hook
from .pool import Pool
from .pool_async import AsyncPool

__all__ = ["PoolOptions"]

#: the pools' option names -> sqlx's
_SQLX_NAMES = {"max_size": "max_connections", "min_size": "min_connections"}


@dataclass(frozen=True)
class PoolOptions:
    """Pool settings under sqlx's names, validated when built.

    ``PoolOptions(max_connections=5).connect(dsn)`` builds a :class:`Pool`
    and opens ``max(1, min_connections)`` connections before returning,
    raising a clear error (host, port, cause; never the password) if it
    cannot; :meth:`connect_lazy` returns at once and connects in the
    background.  Defaults are sqlx's: 10 connections, 30 s acquire timeout,
    10 min idle timeout, 30 min lifetime, test before acquire.
    """

    max_connections: int = 10
    min_connections: int = 0
    acquire_timeout: float = 30.0
    max_lifetime: float | None = 1800.0
    idle_timeout: float | None = 600.0
    test_before_acquire: bool = True
    after_connect: Hook | None = None
    before_acquire: Hook | None = None
    after_release: Hook | None = None
    verify_after: float = 1.0
    queue_mode: Literal["lifo", "fifo"] = "lifo"
    max_waiting: int = 0

    def __post_init__(self) -> None:
        # every option is checked where every pool's are, under this class's names
        PoolConfig(**self._pool_kwargs(), owner="PoolOptions", aliases=_SQLX_NAMES)

    def replace(self, **changes: Any) -> PoolOptions:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def _pool_kwargs(self) -> dict[str, Any]:
        return {
            "max_size": self.max_connections,
            "min_size": self.min_connections,
            "acquire_timeout": self.acquire_timeout,
            "max_lifetime": self.max_lifetime,
            "idle_timeout": self.idle_timeout,
            "test_before_acquire": self.test_before_acquire,
            "verify_after": self.verify_after,
            "after_connect": self.after_connect,
            "before_acquire": self.before_acquire,
            "after_release": self.after_release,
            "queue_mode": self.queue_mode,
            "max_waiting": self.max_waiting,
        }

    def connect(self, conninfo: Conninfo = "", **extra: Any) -> Pool:
        """Build a psycopg :class:`Pool` and open ``max(1, min_connections)`` connections now."""
        return Pool(conninfo, open=True, **self._pool_kwargs(), **extra)

    def connect_lazy(self, conninfo: Conninfo = "", **extra: Any) -> Pool:
        """Build a psycopg :class:`Pool` that opens its connections in the background."""
        return Pool(conninfo, open=False, **self._pool_kwargs(), **extra)

    def connect_resource(
        self, resource_cls: Any, ctx: Any = None, *, lazy: bool = False, **extra: Any
    ) -> ResourcePool[Any]:
        """Build a :class:`ResourcePool` of ``resource_cls`` (eager unless ``lazy``)."""
        return ResourcePool(resource_cls, ctx, open=not lazy, **self._pool_kwargs(), **extra)

    async def aconnect(self, conninfo: AsyncConninfo = "", **extra: Any) -> AsyncPool:
        """Build an :class:`AsyncPool` and open ``max(1, min_connections)`` connections now."""
        return await AsyncPool.connect(conninfo, **self._pool_kwargs(), **extra)

    def aconnect_lazy(self, conninfo: AsyncConninfo = "", **extra: Any) -> AsyncPool:
        """Build an :class:`AsyncPool` that starts on the loop of its first use."""
        return AsyncPool.connect_lazy(conninfo, **self._pool_kwargs(), **extra)
