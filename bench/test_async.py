"""asyncio pools side by side: borrow + return with no query (1 task, and 64 tasks on 4 connections).

Each timed call runs a batch of borrows on one persistent event loop; the ratio
table reports time per borrow.  asyncpg is measured with its default reset
query on release (what an asyncpg user gets).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import fastpool
from fastpool import _core_select

GROUP_1 = "async borrow+return, no query, 1 task (4 connections)"
GROUP_64 = "async borrow+return, no query, 64 tasks on 4 connections"
OPS = 100
TASKS = 64
OPS_PER_TASK = 10

IMPLS = ["fastpool[c]", "fastpool[python]", "psycopg_pool async", "asyncpg", "floor: asyncio hand-off"]


def _floor() -> Callable[[], Awaitable[None]]:
    """A minimal FIFO hand-off pool on asyncio: the floor any asyncio pool can reach."""
    idle: deque[object] = deque(object() for _ in range(4))
    waiters: deque[asyncio.Future[object]] = deque()

    async def borrow() -> None:
        if idle and not waiters:
            c = idle.pop()
        else:
            fut = asyncio.get_running_loop().create_future()
            waiters.append(fut)
            c = await fut
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(c)
                return
        idle.append(c)

    return borrow


@pytest.fixture(params=IMPLS)
def aborrow(request: pytest.FixtureRequest, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(loop, borrow) where ``await borrow()`` is one borrow + return."""
    name = request.param
    loop = asyncio.new_event_loop()
    cleanup: Callable[[], Awaitable[None]] | None = None
    if name.startswith("fastpool"):
        try:
            monkeypatch.setattr(
                _core_select, "core", _core_select.load("c" if name == "fastpool[c]" else "python")
            )  # type: ignore[arg-type]
        except ImportError:
            pytest.skip("compiled core not built")
        pool = fastpool.AsyncPool(dsn, min_size=4, max_size=4)
        loop.run_until_complete(pool.open())

        async def borrow() -> None:
            async with pool.connection():
                pass

        cleanup = pool.close
    elif name == "psycopg_pool async":
        psycopg_pool = pytest.importorskip("psycopg_pool")
        ppool = psycopg_pool.AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False)
        loop.run_until_complete(ppool.open(wait=True))

        async def borrow() -> None:
            async with ppool.connection():
                pass

        cleanup = ppool.close
    elif name == "asyncpg":
        asyncpg = pytest.importorskip("asyncpg")
        from psycopg.conninfo import conninfo_to_dict

        p = conninfo_to_dict(dsn)

        async def make() -> Any:  # created inside the loop it will run on
            return await asyncpg.create_pool(
                host=p.get("host"),
                port=int(p.get("port", 5432)),
                user=p.get("user"),
                database=p.get("dbname"),
                min_size=4,
                max_size=4,
            )

        apool = loop.run_until_complete(make())

        async def borrow() -> None:
            async with apool.acquire():
                pass

        cleanup = apool.close
    else:
        borrow = _floor()
    yield loop, borrow
    if cleanup is not None:
        loop.run_until_complete(cleanup())
    loop.close()


@pytest.mark.benchmark(group=GROUP_1)
def test_async_borrow_one_task(benchmark: Any, aborrow: Any) -> None:
    loop, borrow = aborrow

    async def run() -> None:
        for _ in range(OPS):
            await borrow()

    benchmark.extra_info["ops"] = OPS
    benchmark(lambda: loop.run_until_complete(run()))


@pytest.mark.benchmark(group=GROUP_64)
def test_async_borrow_64_tasks(benchmark: Any, aborrow: Any) -> None:
    loop, borrow = aborrow

    async def worker() -> None:
        for _ in range(OPS_PER_TASK):
            await borrow()

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(TASKS)))

    benchmark.extra_info["ops"] = TASKS * OPS_PER_TASK
    benchmark(lambda: loop.run_until_complete(run()))
