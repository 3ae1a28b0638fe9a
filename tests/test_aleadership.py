"""Leadership on the asyncio pool against the real server (SPEC T000, async forms), both twins."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

import fastpool
from fastpool import AsyncLeadership, LeadershipLost, LeadershipNotAcquired, PoolTimeout

from .conftest import backends, check_invariants, wait_until

pytestmark = [pytest.mark.db, pytest.mark.asyncio]

KEY = -(1 << 62) - 777


def locks_of(admin: Any, pid: int) -> list[tuple[Any, ...]]:
    sql = "SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks WHERE locktype='advisory' AND pid=%s"
    return admin.execute(sql, (pid,)).fetchall()


async def gone(admin: Any, pid: int) -> bool:
    return await asyncio.to_thread(wait_until, lambda: not locks_of(admin, pid))


async def test_acquire_release_and_refusals(apool: Any, admin: Any) -> None:
    pool = apool(max_size=2)
    other = apool(max_size=1)
    async with pool.leadership(KEY) as lead:
        assert isinstance(lead, AsyncLeadership)
        assert locks_of(admin, lead.backend_pid) == [((KEY >> 32) & 0xFFFFFFFF, KEY & 0xFFFFFFFF, 1)]
        with pytest.raises(LeadershipNotAcquired):
            await pool.leadership(KEY).acquire()
        assert await other.try_leadership(KEY) is None
        assert await lead.is_held()
    assert await gone(admin, lead.backend_pid)
    with pytest.raises(ZeroDivisionError):
        async with pool.leadership(KEY):
            1 / 0  # noqa: B018
    async with pool.connection() as conn:
        assert conn.autocommit is False


async def test_unlock_all_through_connection_discards(apool: Any, admin: Any, app_name: str) -> None:
    pool = apool(max_size=2)
    async with pool.leadership(KEY) as lead:
        pid = lead.backend_pid
        async with lead.connection() as conn:
            await conn.execute("SELECT pg_advisory_unlock_all()")
    assert lead.lost.is_set()
    assert await asyncio.to_thread(wait_until, lambda: pid not in backends(admin, app_name))


async def test_terminated_backend_heartbeat(apool: Any, admin: Any) -> None:
    pool = apool(max_size=2)
    seen: list[BaseException] = []

    async def on_lost(guard: Any, exc: BaseException) -> None:
        seen.append(exc)

    lead = await pool.leadership(KEY, heartbeat=0.2, on_lost=on_lost).acquire()
    admin.execute("SELECT pg_terminate_backend(%s)", (lead.backend_pid,))
    await asyncio.wait_for(lead.lost.wait(), 1.5)
    assert len(seen) == 1 and isinstance(seen[0], LeadershipLost)
    with pytest.raises(LeadershipLost):
        await lead.check()
    await lead.release()
    assert await pool.try_leadership(KEY) is not None
    check_invariants(pool)


async def test_cancelled_after_try_lock_closes_the_connection(apool: Any, admin: Any) -> None:
    pool = apool(max_size=1)
    lead = pool.leadership(KEY)

    def boom() -> None:
        raise asyncio.CancelledError

    lead._after_try_lock = boom
    with pytest.raises(asyncio.CancelledError):
        await lead.acquire()
    await asyncio.sleep(0.05)
    assert check_invariants(pool)["size"] == 0
    async with pool.leadership(KEY):
        pass


async def test_cancelled_release_closes_hard(apool: Any, admin: Any) -> None:
    pool = apool(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    async with lead.connection() as conn:
        pass
    task = asyncio.create_task(lead.release())
    await asyncio.sleep(0)  # let it send the unlock, then cancel it while it waits for the answer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lead.lost.is_set(), "interrupted mid-unlock: the connection is closed, never returned"
    assert await gone(admin, pid)
    assert check_invariants(pool)["in_use"] == 0
    assert conn is not None


async def test_dropped_guard_and_close(apool: Any, admin: Any) -> None:
    pool = apool(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del lead
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    await asyncio.sleep(0.05)
    assert await gone(admin, pid)
    lead2 = await pool.leadership(KEY).acquire()
    await pool.close(timeout=0.3)
    assert lead2.lost.is_set()
    assert await gone(admin, lead2.backend_pid)


async def test_max_size_one_and_dedicated(apool: Any) -> None:
    pool = apool(max_size=1)
    async with pool.leadership(KEY):
        with pytest.raises(PoolTimeout):
            await pool.acquire(timeout=0.2)
    async with pool.leadership(KEY, dedicated=True) as lead:
        assert pool.stats()["dedicated"] == 1
        async with pool.connection(timeout=2) as conn:
            assert conn.info.backend_pid != lead.backend_pid
    assert pool.stats()["dedicated"] == 0


async def test_stacked_lock_released(apool: Any) -> None:
    pool = apool(max_size=2)
    async with pool.leadership(KEY) as lead, lead.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s::int8)", (KEY,))
    other = apool(max_size=1)
    assert await other.try_leadership(KEY) is not None
    assert fastpool.AsyncLeadership is AsyncLeadership
