"""A cancellation storm on the asyncio pool, on psycopg and on asyncpg: tens of thousands of
callers cancelled at every await.

Callers are cancelled while queued, inside an async ``before_acquire`` that
sleeps on the server, in the middle of a query and while their connection is
being committed and reset at the end of the block; ``drain()`` retires every
connection now and then.  The loop's exception handler is replaced by one that
records every call: a pool must leave no task exception unretrieved and
nothing for the handler, whatever is cancelled and when.  Afterwards nothing
has leaked, nothing was handed out twice, the pool never went past
``max_size`` and no caller that was not cancelled got its answer past its
deadline.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from typing import Any

import pytest

from fastpool import ConnectionMetadata, PoolTimeout, Recycle

from .conftest import backends, check_invariants

pytestmark = pytest.mark.db

#: per test: 20,000 per driver (two recycling methods, two builds); more with FASTPOOL_STORM_CANCELS
CANCELS = int(os.environ.get("FASTPOOL_STORM_CANCELS", "5000"))


STAGES = ("in acquire", "in query", "in release")


async def _storm(pool: Any, rnd: random.Random, cancels: int, leave_open: bool) -> dict[str, int]:
    """Run the storm on ``pool``; return what happened (where the cancels landed, the timeouts).

    Each victim is given the stage it is to be cancelled in: queued or checked (``in
    acquire``), waiting for its query (``in query``), or at the end of its block while its
    connection is committed and reset (``in release``); the storm cancels it when it gets
    there, or after a few loop turns wherever it is.
    """
    in_use: set[int] = set()
    late: list[float] = []
    seen = {"cancelled": 0, "timeouts": 0, "served": 0, **dict.fromkeys(STAGES, 0)}
    at: dict[asyncio.Task[None], str] = {}

    async def victim() -> None:
        me = asyncio.current_task()
        assert me is not None
        at[me] = "in acquire"
        try:
            async with pool.connection(timeout=2.0) as conn:
                assert id(conn) not in in_use, "a connection handed out twice"
                in_use.add(id(conn))
                try:
                    at[me] = "in query"
                    await conn.execute("SELECT pg_sleep(0.0002)" if rnd.random() < 0.5 else "SELECT 1")
                    if leave_open and rnd.random() < 0.5:  # (psycopg's is always open: committed at the end)
                        await conn.execute("BEGIN")  # the return rolls it back: a round trip to cancel
                finally:
                    in_use.discard(id(conn))
                at[me] = "in release"  # the block's end: commit, reset, hand-off
        except asyncio.CancelledError:
            seen[at[me]] += 1
            raise
        finally:
            del at[me]

    async def patient() -> None:  # never cancelled: served, or a timeout on time
        start = time.monotonic()
        try:
            async with pool.connection(timeout=0.5) as conn:
                await conn.execute("SELECT 1")
            seen["served"] += 1
        except PoolTimeout:
            seen["timeouts"] += 1
            late.append(time.monotonic() - start - 0.5)

    background: list[asyncio.Task[None]] = []
    n = 0
    while n < cancels:
        batch = {asyncio.create_task(victim()): rnd.choice(STAGES) for _ in range(rnd.randint(1, 8))}
        until = time.monotonic() + 0.02
        while time.monotonic() < until:  # each loop turn: cancel those that reached their stage
            await asyncio.sleep(0)
            for t, want in list(batch.items()):
                if t.done():
                    del batch[t]
                elif at.get(t) == want:
                    t.cancel()
                    n += 1
                    del batch[t]
            if not batch:
                break
        for t in batch:
            if not t.done():
                t.cancel()
                n += 1
        if rnd.random() < 0.05:
            background.append(asyncio.create_task(patient()))
        if rnd.random() < 0.002:
            pool.drain()
    for t in background:
        await t
    seen["cancelled"] = n
    seen["late_ms"] = int(max(late, default=0.0) * 1000)
    return seen


@pytest.mark.parametrize("recycle", [Recycle.FAST, Recycle.VERIFIED], ids=["FAST", "VERIFIED"])
@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_a_cancellation_storm_leaves_nothing_for_the_loop(
    make_pool_async: Any, make_apg: Any, admin: Any, app_name: str, recycle: Recycle, driver: str
) -> None:
    if driver == "asyncpg":
        pytest.importorskip("asyncpg")
    make = make_apg if driver == "asyncpg" else make_pool_async
    loop = asyncio.get_running_loop()
    handled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: handled.append(context))

    async def sleepy(conn: Any, meta: ConnectionMetadata) -> bool:
        await conn.execute("SELECT pg_sleep(0.0002)")
        return True

    pool = await make(max_size=4, min_size=2, recycle=recycle, before_acquire=sleepy, acquire_timeout=5.0)
    try:
        seen = await _storm(pool, random.Random(7), CANCELS, leave_open=driver == "asyncpg")
        await asyncio.sleep(0.3)  # the phases the storm abandoned end; closes run
        s = check_invariants(pool)
        assert s["in_use"] == 0 and s["size"] <= 4, s
        assert seen["cancelled"] >= CANCELS
        for where in ("in acquire", "in query", "in release"):  # the cancels landed everywhere
            assert seen[where] >= CANCELS // 100, seen
        assert seen["late_ms"] <= 100, f"a timeout {seen['late_ms']} ms past its deadline"
        assert s["cancelled_waits"] > 100 and s["discarded"] > 10, s  # cancels landed everywhere
        held = await asyncio.gather(*(pool.acquire(timeout=10) for _ in range(4)))
        assert len({id(h.connection) for h in held}) == 4
        for h in held:
            await h.connection.execute("SELECT 1")  # (every one works: no "operation in progress")
            await h.release()
    finally:
        await pool.close()
        for _ in range(3):  # unretrieved task exceptions are reported when the task is collected
            gc.collect()
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 5
    while len(backends(admin, app_name)) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # a backend exits a moment after its client's goodbye
    assert len(backends(admin, app_name)) == 0, "a connection outlived its pool"
    assert handled == [], f"{len(handled)} loop exception-handler call(s), first: {handled[:1]}"
