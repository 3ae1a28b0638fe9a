"""Leadership on advisory locks against the real server, on both builds of the core."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings
from typing import Any

import psycopg
import pytest

import fastpool
from fastpool import AsyncLeadership, LeadershipLost, LeadershipNotAcquired, PoolTimeout

from .acompat import run_all_async, skip_sync, sleep_async, wait_until_async
from .conftest import backends, check_invariants
from .resources_async import Interrupted

pytestmark = pytest.mark.db

KEY = -(1 << 62) - 12345  # negative int64: sign handling


def advisory_locks(admin: Any, pid: int | None = None) -> list[tuple[int, int, int, int]]:
    sql = (
        "SELECT pid, classid::bigint, objid::bigint, objsubid FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted"
    )
    rows = admin.execute(sql).fetchall()
    return [r for r in rows if pid is None or r[0] == pid]


def lock_gone(admin: Any, pid: int | None) -> bool:
    return all(r[0] != pid for r in advisory_locks(admin))


async def count_locks_async(conn: Any) -> int:
    sql = "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND pid=pg_backend_pid()"
    row = await (await conn.execute(sql)).fetchone()
    return int(row[0])


async def test_acquire_shows_the_lock_with_the_right_split(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=2)
    async with pool.leadership(KEY) as lead:
        assert isinstance(lead, AsyncLeadership)
        locks = advisory_locks(admin, lead.backend_pid)
        assert locks == [(lead.backend_pid, (KEY >> 32) & 0xFFFFFFFF, KEY & 0xFFFFFFFF, 1)]
        assert await lead.is_held()
    assert advisory_locks(admin, lead.backend_pid) == []


async def test_second_guard_is_refused(make_pool_async: Any, dsn: str) -> None:
    # same pool (no round trip), another pool, another process
    pool = await make_pool_async(max_size=2)
    other = await make_pool_async(max_size=1)
    async with pool.leadership("orders") as lead:
        before = pool.stats()["requests"]
        with pytest.raises(LeadershipNotAcquired):
            await pool.leadership("orders").acquire()
        assert pool.stats()["requests"] == before, "the in-process short-cut makes no round trip"
        assert await other.try_leadership("orders") is None
        async with other.connection() as conn:  # the losing connection went back and holds nothing
            assert await count_locks_async(conn) == 0
        code = textwrap.dedent(f"""
            import fastpool, sys
            pool = fastpool.Pool({dsn!r}, max_size=1)
            try:
                with pool.leadership("orders"):
                    sys.exit(3)
            except fastpool.LeadershipNotAcquired:
                sys.exit(7)
        """)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPOOL_")}
        rc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False).returncode
        assert rc == 7
        assert await lead.is_held()


async def test_release_paths(make_pool_async: Any, admin: Any) -> None:
    # clean exit, exception in the body, release twice; the connection comes back clean
    pool = await make_pool_async(max_size=1)
    async with pool.leadership(KEY) as lead:
        pid = lead.backend_pid
    with pytest.raises(ZeroDivisionError):
        async with pool.leadership(KEY) as lead2:
            1 / 0  # noqa: B018
    await lead2.release()
    await lead2.release()
    assert lock_gone(admin, pid)
    async with pool.connection() as conn:
        assert conn.info.backend_pid == pid
        assert conn.autocommit is False, "the guard's autocommit was not left behind"
        assert await count_locks_async(conn) == 0


async def test_unlock_returning_false_discards_the_connection(
    make_pool_async: Any, admin: Any, app_name: str
) -> None:
    pool = await make_pool_async(max_size=2)
    async with pool.leadership(KEY) as lead:
        pid = lead.backend_pid
        async with lead.connection() as conn:
            await conn.execute("SELECT pg_advisory_unlock_all()")
    assert lead.lost.is_set()
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    assert check_invariants(pool)["size"] == 0


async def test_check_and_release_inside_the_lock_session(make_pool_async: Any, admin: Any) -> None:
    # the session is lent re-entrantly to its holder: check() and release() work inside connection()
    pool = await make_pool_async(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    async with lead.connection() as conn:
        await lead.check()
        assert await lead.is_held()
        await conn.execute("SELECT 1")
        await lead.release()
    assert lock_gone(admin, lead.backend_pid)
    assert check_invariants(pool)["in_use"] == 0


async def test_terminated_backend_is_noticed(make_pool_async: Any, admin: Any, dsn: str) -> None:
    # check() and the heartbeat notice, another session can lead, release does not raise
    pool = await make_pool_async(max_size=2)
    lost_calls: list[BaseException] = []

    async def on_lost(guard: Any, exc: BaseException) -> None:
        lost_calls.append(exc)

    lead = await pool.leadership(KEY, heartbeat=0.2, on_lost=on_lost).acquire()
    admin.execute("SELECT pg_terminate_backend(%s)", (lead.backend_pid,))
    assert await wait_until_async(lead.lost.is_set, timeout=1.5), "the heartbeat noticed"
    assert len(lost_calls) == 1 and isinstance(lost_calls[0], LeadershipLost)
    with pytest.raises(LeadershipLost):
        await lead.check()
    other = await make_pool_async(max_size=1)
    assert await other.try_leadership(KEY) is not None
    await lead.release()
    s = check_invariants(pool)
    assert s["in_use"] == 0


async def test_interrupted_try_lock_closes_the_connection(make_pool_async: Any, admin: Any) -> None:
    # fault injection right after the try-lock was sent: the session may hold the lock
    pool = await make_pool_async(max_size=1)
    lead = pool.leadership(KEY)

    def boom() -> None:
        raise Interrupted

    lead._after_try_lock = boom
    with pytest.raises(Interrupted):
        await lead.acquire()
    assert await wait_until_async(
        lambda: not advisory_locks(admin) or all(r[2] != KEY & 0xFFFFFFFF for r in advisory_locks(admin))
    )
    assert check_invariants(pool)["size"] == 0
    async with pool.leadership(KEY):
        pass


async def test_session_stays_idle_not_idle_in_transaction(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1, kwargs={"options": "-c idle_in_transaction_session_timeout=500"})
    async with pool.leadership(KEY) as lead:
        await sleep_async(1.2)
        state = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE pid = %s", (lead.backend_pid,)
        ).fetchone()
        assert state == ("idle",)
        assert await lead.is_held()


async def test_dropped_guard_is_reclaimed(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    lost = lead.lost
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del lead
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert await wait_until_async(lost.is_set), "a collected guard's lost event is set"
    assert await wait_until_async(lambda: lock_gone(admin, pid))
    assert await wait_until_async(lambda: pool.stats()["size"] == 0)
    async with pool.leadership(KEY):
        pass


async def test_dropped_dedicated_guard_closes_its_connection(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1)
    lead = await pool.leadership(KEY, dedicated=True).acquire()
    pid = lead.backend_pid
    lost = lead.lost
    assert pool.stats()["dedicated"] == 1
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        del lead
        gc.collect()
    assert await wait_until_async(lost.is_set)
    assert await wait_until_async(lambda: pool.stats()["dedicated"] == 0), "the dedicated count comes down"
    assert await wait_until_async(lambda: lock_gone(admin, pid))


async def test_key_spaces_and_databases(make_pool_async: Any, dsn: str) -> None:
    pool = await make_pool_async(max_size=4)
    async with pool.leadership((1, 2)), pool.leadership((1 << 32) | 2):
        pass  # the pair and the bigint are different locks
    here = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname")
    elsewhere = psycopg.conninfo.make_conninfo(dsn, dbname="postgres" if here != "postgres" else "template1")
    other = await make_pool_async(max_size=1, conninfo=elsewhere)
    name = f"per-db-{uuid.uuid4().hex}"  # other test runs may share the other database
    async with pool.leadership(name), other.leadership(name):
        pass  # locks are per database


async def test_stacked_lock_is_still_released(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.leadership(KEY) as lead, lead.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s::int8)", (KEY,))  # stacked: held twice
    other = await make_pool_async(max_size=1)
    assert await other.try_leadership(KEY) is not None


async def test_max_size_one_and_dedicated(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.leadership(KEY):
        with pytest.raises(PoolTimeout):
            await pool.acquire(timeout=0.2)
    async with pool.leadership(KEY, dedicated=True) as lead:
        assert pool.stats()["dedicated"] == 1
        async with pool.connection(timeout=2) as conn:
            assert conn.info.backend_pid != lead.backend_pid
        assert check_invariants(pool)["size"] <= 1
    assert pool.stats()["dedicated"] == 0


async def test_close_with_a_live_guard(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=2)
    lead = await pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    await pool.close(timeout=0.5)
    assert lead.lost.is_set()
    assert await wait_until_async(lambda: lock_gone(admin, pid))
    await lead.release()  # no-op, never raises
    with pytest.raises(fastpool.PoolClosed):
        await pool.leadership("after-close").acquire()


async def test_taint_barrier_through_the_internal_return_path(
    make_pool_async: Any, admin: Any, app_name: str
) -> None:
    pool = await make_pool_async(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    e = lead._entry
    pid = lead.backend_pid
    await pool._release(e)  # a bug returning the lock's connection: the core closes it instead
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    lead._entry = None
    lead._state = 2
    async with pool.connection() as conn:
        assert conn.info.backend_pid != pid


async def test_workers_racing_for_one_key(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=8)
    leaders: list[int] = []
    lock = threading.Lock()

    async def contend(i: int) -> None:
        for _ in range(20):
            lead = await pool.try_leadership("race")
            if lead is None:
                await sleep_async(0)
                continue
            with lock:
                leaders.append(1)
                assert len(leaders) == 1, "two leaders at once"
            await sleep_async(0)
            with lock:
                leaders.pop()
            await lead.release()

    await run_all_async(contend, 8)
    assert check_invariants(pool)["in_use"] == 0


@skip_sync
async def test_cancelled_release_closes_hard(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1)
    lead = await pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    task = asyncio.create_task(lead.release())
    await asyncio.sleep(0)  # let it send the unlock, then cancel it while it waits for the answer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lead.lost.is_set(), "interrupted mid-unlock: the connection is closed, never returned"
    assert await wait_until_async(lambda: lock_gone(admin, pid))
    assert check_invariants(pool)["in_use"] == 0
