"""A plain in-process resource for the pool tests, and the fixtures that pool it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from fastpool import AsyncResourcePool, ConnectionMetadata

from .acompat import sleep_async

__all__ = ["AsyncRes", "Ctx", "Interrupted", "ctx", "make_async"]


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt (or a cancellation) arriving in the middle of a call."""


class Ctx:
    """Shared state the test controls and inspects."""

    def __init__(self) -> None:
        self.serial = itertools.count(1)
        self.created: list[Any] = []
        self.closed: list[Any] = []
        self.create_errors: list[BaseException] = []
        self.needs = False
        self.needs_raises = False
        self.check_fails: BaseException | bool = False
        self.check_sleep = 0.0
        self.create_sleep = 0.0
        self.checks = 0
        self.lock = threading.Lock()

    def live(self) -> list[Any]:
        return [r for r in self.created if not r.closed]


class AsyncRes:
    """A counting resource following the resource protocol of the pool kind under test."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.id = next(ctx.serial)
        self.closed = False

    @classmethod
    async def create(cls, ctx: Ctx) -> AsyncRes:
        if ctx.create_sleep:
            await sleep_async(ctx.create_sleep)
        with ctx.lock:
            if ctx.create_errors:
                raise ctx.create_errors.pop(0)
            r = cls(ctx)
            ctx.created.append(r)
        return r

    def needs_health_check(self, ctx: Ctx, meta: ConnectionMetadata) -> bool:
        if ctx.needs_raises:
            raise RuntimeError("needs_health_check exploded")
        return ctx.needs

    async def health_check(self, ctx: Ctx) -> None:
        with ctx.lock:
            ctx.checks += 1
        if ctx.check_sleep:
            await sleep_async(ctx.check_sleep)
        if isinstance(ctx.check_fails, BaseException):
            raise ctx.check_fails
        if ctx.check_fails:
            raise ConnectionError("unhealthy")

    async def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True
        with self.ctx.lock:
            self.ctx.closed.append(self)


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


@pytest_asyncio.fixture
async def make_async(build: str, ctx: Ctx) -> AsyncIterator[Any]:
    """``await make_async(**options)``: a pool of ``AsyncRes``, opened unless ``open=False``."""
    pools: list[AsyncResourcePool[AsyncRes]] = []

    async def make(**kw: Any) -> AsyncResourcePool[AsyncRes]:
        kw.setdefault("acquire_timeout", 5.0)
        p: AsyncResourcePool[AsyncRes] = AsyncResourcePool(AsyncRes, ctx, **kw)
        pools.append(p)
        if True:  # ASYNC
            if kw.get("open", True):
                await p.open()
        return p

    yield make
    for p in pools:
        await p.close(timeout=1.0)
