"""asyncio pools side by side: borrow + return with no query (1 task, and 64 tasks on 4 connections).

Each timed call runs a batch of borrows on one persistent event loop; the ratio
table reports time per borrow.  asyncpg is measured with its default reset
query on release (what an asyncpg user gets).  The implementations are the
shapes of ``fastpool._bench.shapes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from fastpool._bench.shapes import ASYNC, Impl, async_pg

from .conftest import built

GROUP_1 = "async borrow+return, no query, 1 task (4 connections)"
GROUP_64 = "async borrow+return, no query, 64 tasks on 4 connections"
OPS = 100
TASKS = 64
OPS_PER_TASK = 10


@pytest.fixture(params=ASYNC)
def aimpl(request: pytest.FixtureRequest, dsn: str, loop: asyncio.AbstractEventLoop) -> Iterator[Impl]:
    yield from built(async_pg, request.param, dsn, loop)


@pytest.mark.benchmark(group=GROUP_1)
def test_async_borrow_one_task(benchmark: Any, aimpl: Impl, loop: asyncio.AbstractEventLoop) -> None:
    cm = aimpl.cm
    assert cm is not None

    async def run() -> None:
        for _ in range(OPS):
            async with cm():
                pass

    benchmark.extra_info["ops"] = OPS
    benchmark(lambda: loop.run_until_complete(run()))


@pytest.mark.benchmark(group=GROUP_64)
def test_async_borrow_64_tasks(benchmark: Any, aimpl: Impl, loop: asyncio.AbstractEventLoop) -> None:
    cm = aimpl.cm
    assert cm is not None

    async def worker() -> None:
        for _ in range(OPS_PER_TASK):
            async with cm():
                pass

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(TASKS)))

    benchmark.extra_info["ops"] = TASKS * OPS_PER_TASK
    benchmark(lambda: loop.run_until_complete(run()))
